"""Reading the self-hosted assistant's state folder: folders, configs old and new, session
keys, transcripts of each format, and lines that cannot be read (counted, never fatal)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.imports import openclaw_state as state
from adapters.imports import openclaw_transcripts as transcripts
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures"


def test_the_default_folder_is_the_first_that_exists(tmp_path: Path) -> None:
    with pytest.raises(state.StateError, match="pass --from DIR"):
        state.find_folder(None, home=tmp_path)
    (tmp_path / ".clawdbot").mkdir()
    assert state.find_folder(None, home=tmp_path) == tmp_path / ".clawdbot"
    (tmp_path / ".moltbot").mkdir()
    assert state.find_folder(None, home=tmp_path) == tmp_path / ".moltbot"
    (tmp_path / ".openclaw").mkdir()
    assert state.find_folder(None, home=tmp_path) == tmp_path / ".openclaw"
    with pytest.raises(state.StateError, match="is not a folder"):
        state.find_folder(tmp_path / "nowhere")


def test_the_current_config_gives_agents_instructions_and_channels() -> None:
    found = state.read_state(FIXTURES / "openclaw-home", {})
    main, work = found.agents
    assert (main.agent_id, main.name, main.model) == ("main", "Pico", "anthropic/claude-sonnet-4-5")
    assert main.instructions.startswith("## Identity\n\n# Identity\n\n- Name: Pico")  # front matter dropped
    assert "## Soul" in main.instructions and "## User" in main.instructions
    assert (work.model, work.instructions) == ("anthropic/claude-opus-4-5", "")
    kinds = {(c.kind, c.missing is None) for c in found.channels}
    assert kinds == {("telegram", True), ("whatsapp", False), ("imessage", False), ("signal", False)}


def test_the_older_layout_is_read_as_the_newer_one() -> None:
    found = state.read_state(FIXTURES / "clawdbot-user" / ".clawdbot", {})
    [agent] = found.agents
    assert (agent.name, agent.model) == ("Clawd", "anthropic/claude-opus-4-5")
    assert agent.workspace == FIXTURES / "clawdbot-user" / "clawd"  # "~/clawd", from the folder's home
    assert "Be brief." in agent.instructions
    [telegram] = [c for c in found.channels if c.kind == "telegram"]
    assert telegram.secrets == {"bot_token": "7000000654:AAFoldclawbotxxxxxxxxxxxxxxxxxxxxx"}


def test_secrets_from_the_environment_files_and_references(tmp_path: Path) -> None:
    (tmp_path / "tg.token").write_text("111:from-file\n")
    (tmp_path / "openclaw.json").write_text(
        """{
          // every way a secret is written
          channels: {
            telegram: { tokenFile: "tg.token", accounts: { alerts: { botToken: "${ALERTS_TOKEN}" } } },
            discord: { token: { source: "env", provider: "default", id: "DISCORD_SECRET" } },
            slack: { botToken: "xoxb-1", signingSecret: "s3cret", },
            matrix: { homeserver: "https://m.example" },
          },
        }"""
    )
    found = state.read_state(tmp_path, {"ALERTS_TOKEN": "222:from-env", "DISCORD_SECRET": "d-token"})
    secrets = {(c.kind, c.account): (c.secrets, c.missing) for c in found.channels}
    assert secrets[("telegram", "default")] == ({"bot_token": "111:from-file"}, None)
    assert secrets[("telegram", "alerts")] == ({"bot_token": "222:from-env"}, None)
    assert secrets[("discord", "default")] == ({"bot_token": "d-token"}, None)
    assert secrets[("slack", "default")] == ({"bot_token": "xoxb-1", "signing_secret": "s3cret"}, None)
    assert secrets[("matrix", "default")][1] == "matrix is not a channel this product connects (yet)"


def test_a_config_that_is_not_json5_says_where(tmp_path: Path) -> None:
    (tmp_path / "openclaw.json").write_text("{ channels: [ }")
    with pytest.raises(state.StateError, match=r"openclaw\.json is not valid JSON5"):
        state.read_state(tmp_path, {})


@pytest.mark.parametrize(
    ("key", "entry", "expected"),
    [
        ("agent:main:telegram:dm:55501234", {}, ("telegram", "direct", "55501234")),
        ("agent:main:telegram:direct:55501234", {}, ("telegram", "direct", "55501234")),
        ("agent:main:slack:work:dm:u0123", {}, ("slack", "direct", "u0123")),
        ("agent:main:discord:channel:998877:thread:42", {}, ("discord", "thread", "998877")),
        ("agent:main:whatsapp:group:1203@g.us", {}, ("whatsapp", "group", "1203@g.us")),
        ("agent:main:dm:55501234", {"lastChannel": "telegram"}, ("telegram", "direct", "55501234")),
        (
            "agent:main:main",
            {"lastChannel": "msteams", "lastTo": "msteams:29:abc"},
            ("teams", "direct", "29:abc"),
        ),
        ("agent:main:main", {"lastChannel": "webchat"}, ("imported", "direct", "")),
        ("main", {}, ("imported", "direct", "")),
    ],
)
def test_a_session_key_names_its_conversation(
    key: str, entry: dict[str, str], expected: tuple[str, str, str]
) -> None:
    conversation = transcripts.conversation_of(key, entry)
    assert conversation is not None
    assert (conversation.channel, conversation.kind, conversation.peer) == expected


@pytest.mark.parametrize("key", ["agent:main:subagent:0b7e", "agent:ops:cron:nightly", "agent:main:hook:x"])
def test_internal_sessions_are_no_conversation(key: str) -> None:
    assert transcripts.conversation_of(key, {}) is None


def test_the_envelope_and_message_ids_are_taken_off_a_users_text() -> None:
    text = "[Telegram Kim Lee (@kim) id:555 +3h 2026-01-30 10:00 CET] any rain tomorrow?\n[message_id: 4412]"
    assert transcripts.clean_user_text(text) == ("any rain tomorrow?", "Kim Lee (@kim)")
    assert transcripts.clean_user_text("[WhatsApp +351912345678 2026-01-04 09:46 WET] olá") == (
        "olá",
        "+351912345678",
    )
    assert transcripts.clean_user_text("[Mon 2026-01-05 08:00 UTC] cron says hi") == ("cron says hi", "")
    assert transcripts.clean_user_text("[not an envelope] keep me") == ("[not an envelope] keep me", "")


def _session(tmp_path: Path, lines: list[object]) -> transcripts.Session:
    (tmp_path / "s1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    conversation = transcripts.conversation_of("agent:main:telegram:dm:1", {})
    assert conversation is not None
    return transcripts.Session("main", "agent:main:telegram:dm:1", "s1", tmp_path / "s1.jsonl", conversation)


def _entry(id_: str | None, parent: str | None, role: str, text: str, ms: int) -> dict[str, object]:
    ids = {"id": id_, "parentId": parent} if id_ else {}
    return {"type": "message", **ids, "message": {"role": role, "content": text, "timestamp": ms}}


def test_only_the_last_branch_of_a_tree_is_read(tmp_path: Path) -> None:
    session = _session(
        tmp_path,
        [
            {"type": "session", "version": 3, "id": "s1"},
            _entry("a", None, "user", "question", 1_768_000_000_000),
            _entry("b", "a", "assistant", "first try", 1_768_000_001_000),
            _entry("c", "a", "assistant", "second try", 1_768_000_002_000),
        ],
    )
    tally = transcripts.Tally()
    read = [(m.direction, m.text, m.line) for m in transcripts.messages(session, tally)]
    assert read == [("in", "question", "main/s1:a"), ("out", "second try", "main/s1:c")]
    assert tally.skipped["entries on other branches (edited or retried)"] == 1


def test_without_ids_the_file_order_is_the_conversation_and_bad_lines_are_counted(tmp_path: Path) -> None:
    session = _session(
        tmp_path,
        [
            {"type": "session", "id": "s1"},
            _entry(None, None, "user", "hi", 1_768_000_000_000),
            {"no": "type"},
            _entry(None, None, "assistant", "hello", 1_768_000_001_000),
            {"type": "message", "message": {"role": "user", "content": "no time at all"}},
        ],
    )
    with (tmp_path / "s1.jsonl").open("a") as file:
        file.write('{"type": "message", "mess')  # cut by a crash
    tally = transcripts.Tally()
    read = [(m.text, m.line, m.sent_at) for m in transcripts.messages(session, tally)]
    assert read == [
        ("hi", "main/s1:L2", datetime(2026, 1, 9, 23, 6, 40, tzinfo=UTC)),
        ("hello", "main/s1:L4", datetime(2026, 1, 9, 23, 6, 41, tzinfo=UTC)),
    ]
    assert tally.skipped["unreadable lines"] == 3
    assert sorted(where.split(":")[1] for where in tally.unreadable) == ["3", "5", "6"]
