"""Sending through a fake osascript: what reaches the script's argv, byte for byte, and
what each failure of Messages means."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.channels.imessage.send import (
    SEND_FILE_SCRIPT,
    SEND_TEXT_SCRIPT,
    AutomationPermissionRequired,
    OsascriptSender,
    script_arguments,
)
from domain.connectors import SendDeferred, SendRejected
from tests.fakes import osascript as fake

DIRECT = "iMessage;-;+15551230001"
GROUP = "any;+;chat123456789012345678"
HOSTILE = [
    'say "hi"',
    "back\\slash \\n not a newline",
    "line one\nline two\r\nline three",
    '" & do shell script "touch /tmp/pwned" & "',
    'end tell\nend run\ndo shell script "touch /tmp/pwned"',
    "' ; touch /tmp/pwned ; '",
    "$(touch /tmp/pwned) `touch /tmp/pwned`",
    "-e",
    "--",
    "Grüße 🙂 مرحبا 你好 \u202e\u200d",
    "x" * 10_240,
    'é🙂"\\\n' * 2_000,
]


@pytest.fixture
def osascript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "osascript.jsonl"
    monkeypatch.setenv(fake.LOG_ENV, str(log))
    monkeypatch.delenv(fake.FAIL_ENV, raising=False)
    return fake.install(tmp_path / "bin")


def _log(tmp_path: Path) -> list[list[str]]:
    return fake.recorded(tmp_path / "osascript.jsonl")


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_text_arrives_byte_identical(osascript: Path, tmp_path: Path, text: str) -> None:
    await OsascriptSender(str(osascript)).send_text(GROUP, text)
    [argv] = _log(tmp_path)
    assert argv == [*script_arguments(SEND_TEXT_SCRIPT), GROUP, text]
    assert fake.script_arguments(argv) == [GROUP, text]
    assert fake.script_arguments(argv)[1].encode() == text.encode()
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize(
    "target", [DIRECT, GROUP, "any;-;ada@example.com", "+15551230001", "ada@example.com"]
)
async def test_targets_are_used_verbatim(osascript: Path, tmp_path: Path, target: str) -> None:
    await OsascriptSender(str(osascript)).send_text(target, "hi")
    assert fake.script_arguments(_log(tmp_path)[0]) == [target, "hi"]


def test_the_script_is_a_constant_that_reads_argv() -> None:
    for script in (SEND_TEXT_SCRIPT, SEND_FILE_SCRIPT):
        source = "\n".join(script)
        assert source.startswith("on run argv") and source.endswith("end run")
        assert "item 1 of argv" in source and "item 2 of argv" in source
        assert "chat id targetId" in source  # a chat guid: "chat id"
        assert "participant targetId" in source  # a bare handle: a participant of iMessage
        assert "do shell script" not in source
    assert "send messageText to targetChat" in "\n".join(SEND_TEXT_SCRIPT)
    assert "send theFile to targetChat" in "\n".join(SEND_FILE_SCRIPT)


@pytest.mark.parametrize(
    ("failure", "error", "code"),
    [
        ("1743", AutomationPermissionRequired, None),
        ("1728", SendRejected, "chat_not_found"),
        ("other", SendDeferred, None),
    ],
)
async def test_failures(
    osascript: Path, monkeypatch: pytest.MonkeyPatch, failure: str, error: type[Exception], code: str | None
) -> None:
    monkeypatch.setenv(fake.FAIL_ENV, failure)
    with pytest.raises(error) as caught:
        await OsascriptSender(str(osascript)).send_text(DIRECT, "hi")
    if code is not None:
        assert isinstance(caught.value, SendRejected) and caught.value.code == code
    if isinstance(caught.value, AutomationPermissionRequired):
        assert "Automation" in str(caught.value) and "-1743" in str(caught.value)


async def test_a_hanging_osascript_is_deferred(osascript: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fake.FAIL_ENV, "hang")
    with pytest.raises(SendDeferred, match="did not answer"):
        await OsascriptSender(str(osascript), timeout=0.5).send_text(DIRECT, "hi")


async def test_a_missing_osascript_is_deferred(tmp_path: Path) -> None:
    with pytest.raises(SendDeferred, match="Could not run"):
        await OsascriptSender(str(tmp_path / "no-osascript")).send_text(DIRECT, "hi")


@pytest.mark.parametrize(
    ("target", "text", "code"),
    [
        (DIRECT, "", "empty_text"),
        (DIRECT, "nul \x00 byte", "invalid_text"),
        ("", "hi", "invalid_target"),
        ("-e", "hi", "invalid_target"),  # would read as an osascript option
    ],
)
async def test_refused_before_running(
    osascript: Path, tmp_path: Path, target: str, text: str, code: str
) -> None:
    with pytest.raises(SendRejected) as caught:
        await OsascriptSender(str(osascript)).send_text(target, text)
    assert caught.value.code == code
    assert _log(tmp_path) == []


async def test_send_file_copies_it_where_messages_may_read_it(osascript: Path, tmp_path: Path) -> None:
    original = tmp_path / "outbox" / 'photo with spaces & "quotes".jpg'
    original.parent.mkdir()
    original.write_bytes(b"\xff\xd8jpeg bytes")
    attachments = tmp_path / "Library" / "Messages" / "Attachments" / "Moltbot"
    await OsascriptSender(str(osascript), attachments_dir=attachments).send_file(GROUP, original)
    [argv] = _log(tmp_path)
    assert argv[: len(script_arguments(SEND_FILE_SCRIPT))] == script_arguments(SEND_FILE_SCRIPT)
    target, staged = fake.script_arguments(argv)
    assert target == GROUP
    assert Path(staged).parent.parent == attachments
    assert Path(staged).name == original.name
    assert Path(staged).read_bytes() == original.read_bytes()


async def test_send_file_of_a_missing_file_is_rejected(osascript: Path, tmp_path: Path) -> None:
    sender = OsascriptSender(str(osascript), attachments_dir=tmp_path / "staged")
    with pytest.raises(SendRejected) as caught:
        await sender.send_file(DIRECT, tmp_path / "gone.jpg")
    assert caught.value.code == "file_missing"


async def test_send_file_failure_maps_like_text(
    osascript: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fake.FAIL_ENV, "1728")
    picture = tmp_path / "a.png"
    picture.write_bytes(b"png")
    with pytest.raises(SendRejected, match="no such chat"):
        await OsascriptSender(str(osascript), attachments_dir=tmp_path / "staged").send_file(GROUP, picture)
