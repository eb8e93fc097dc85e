"""Account mail without a network: the templates, the message, the folder outbox and its
listing, ``moltbot mail``, and the checks of MOLTBOT_SMTP_URL (the SMTP conversation itself
is in tests/integration/test_mail_smtp.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import stat
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import get_args

import aiosmtplib
import pytest
import structlog

from adapters.mail.factory import mailer
from adapters.mail.message import build_message
from adapters.mail.outbox import (
    FolderOutbox,
    StoredMail,
    html_body,
    list_mail,
    outbox_folder,
    read_mail,
    text_body,
)
from adapters.mail.smtp import SmtpMailer, SmtpTarget, is_transient, parse_smtp_url
from adapters.mail.templates import TEMPLATES, render
from domain.mail import Mail, MailKind, MailNotSent
from moltbot.cli import main

SENDER = "Moltbot Cloud <noreply@moltbot.example>"
TO = "ada@example.com"
VALUES: dict[MailKind, dict[str, str]] = {
    "password_reset": {
        "link": "https://app.moltbot.example/reset?token=abc&x=1",
        "minutes": "30",
        "product": "Moltbot Cloud",
    },
    "verify_email": {"link": "https://app.moltbot.example/verify?token=def"},
    "invitation": {
        "link": "https://app.moltbot.example/invite?token=ghi",
        "inviter": "Grace Hopper",
        "inbox": "Support",
        "role": "member",
        "days": "7",
    },
    "password_changed": {"when": "2025-05-01 09:30 UTC"},
    "two_factor_changed": {"state": "turned off", "when": "2025-05-01 09:31 UTC"},
    "digest": {
        "link": "https://app.moltbot.example/#digest",
        "day": "Thursday 26 November",
        "headline": "2 conversations need a reply",
        "items": "Waiting for your reply:\n- Ada (telegram): see you Friday?\n- Bob (slack): the invoice",
    },
}
HOSTILE = "<script>alert(\"x\")</script> & 'quoted'"


def _parse(path: Path) -> EmailMessage:
    return BytesParser(policy=default).parsebytes(path.read_bytes())


# --- templates -------------------------------------------------------------------------


def test_every_kind_has_a_template_and_test_values() -> None:
    assert set(TEMPLATES) == set(get_args(MailKind)) == set(VALUES)
    for kind, template in TEMPLATES.items():
        assert set(template.needs) == set(VALUES[kind])


@pytest.mark.parametrize("kind", list(VALUES))
def test_every_kind_renders_its_values_in_both_bodies(kind: MailKind) -> None:
    mail = render(kind, to=TO, values=VALUES[kind])

    assert (mail.kind, mail.to) == (kind, TO)
    assert mail.subject and "\n" not in mail.subject
    for value in VALUES[kind].values():
        assert value in mail.text
        assert value.replace("&", "&amp;") in mail.html
    assert "$" not in mail.text + mail.html + mail.subject  # nothing left unfilled
    assert mail.html.startswith("<!DOCTYPE html>")
    # what to do if it was not them
    assert "Not you?" in mail.text or "Not expecting this?" in mail.text
    assert "Ignore this mail" in mail.text or "right away" in mail.text


def test_the_subject_names_the_inviter_and_the_inbox() -> None:
    mail = render("invitation", to=TO, values=VALUES["invitation"])
    assert mail.subject == "Grace Hopper invited you to Support on Moltbot Cloud"
    assert render("two_factor_changed", to=TO, values=VALUES["two_factor_changed"]).subject == (
        "Two-factor sign-in was turned off for your Moltbot Cloud account"
    )


def test_values_are_escaped_in_html_and_kept_as_is_in_text() -> None:
    values = {**VALUES["invitation"], "inviter": HOSTILE, "inbox": "<b>Ops</b>"}
    mail = render("invitation", to=TO, values=values)

    assert "<script>" not in mail.html
    assert "<b>Ops</b>" not in mail.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;" in mail.html
    assert "&lt;b&gt;Ops&lt;/b&gt;" in mail.html
    assert HOSTILE in mail.text
    assert f"<title>{'&lt;script&gt;'}" in mail.html  # the subject in the title too


def test_a_link_cannot_break_out_of_its_attribute() -> None:
    link = 'https://app.moltbot.example/verify?t=1"><img src=x onerror=alert(1)>'
    mail = render("verify_email", to=TO, values={"link": link})
    assert "<img" not in mail.html
    assert 'href="https://app.moltbot.example/verify?t=1&quot;&gt;&lt;img' in mail.html


def test_the_subject_stays_one_line() -> None:
    values = {**VALUES["invitation"], "inbox": "Sales\r\nBcc: everyone@example.com"}
    mail = render("invitation", to=TO, values=values)
    assert mail.subject == "Grace Hopper invited you to Sales Bcc: everyone@example.com on Moltbot Cloud"
    assert "\r" not in mail.subject


@pytest.mark.parametrize(
    ("kind", "missing"), [(kind, name) for kind, values in VALUES.items() for name in values]
)
def test_a_missing_value_is_a_key_error(kind: MailKind, missing: str) -> None:
    values = {name: value for name, value in VALUES[kind].items() if name != missing}
    with pytest.raises(KeyError, match=missing):
        render(kind, to=TO, values=values)


@pytest.mark.parametrize("link", ["javascript:alert(1)", "ftp://example.com/x", "app.moltbot.example/x"])
def test_a_link_must_be_a_web_address(link: str) -> None:
    with pytest.raises(ValueError, match="http"):
        render("verify_email", to=TO, values={"link": link})


# --- the message --------------------------------------------------------------------------


def test_the_message_has_the_headers_and_both_parts() -> None:
    mail = render("password_reset", to=TO, values=VALUES["password_reset"])
    message = build_message(mail, SENDER)

    assert message["From"] == SENDER
    assert message["To"] == TO
    assert message["Subject"] == "Reset your Moltbot Cloud password"
    assert message["X-Moltbot-Kind"] == "password_reset"
    assert message["Message-ID"].endswith("@moltbot.example>")
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert text_body(message) == mail.text
    assert html_body(message) == mail.html


def test_a_line_break_in_the_recipient_is_refused() -> None:
    mail = Mail(
        kind="verify_email", to="ada@example.com\nBcc: x@example.com", subject="s", text="t", html="h"
    )
    with pytest.raises(ValueError, match=r"linefeed|carriage"):
        build_message(mail, SENDER)


# --- the folder outbox ---------------------------------------------------------------------


async def test_the_outbox_writes_a_private_eml_file(tmp_path: Path) -> None:
    folder = outbox_folder(tmp_path)
    mail = render("password_reset", to=TO, values=VALUES["password_reset"])

    await FolderOutbox(folder, SENDER).send(mail)

    assert folder == tmp_path / "mail" / "outbox"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (path,) = folder.iterdir()  # no partial file left beside it
    assert re.fullmatch(r"\d{8}T\d{12}-password_reset-[0-9a-f]{6}\.eml", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"\r\n" in path.read_bytes()  # RFC 5322 line ends
    message = _parse(path)
    assert message["To"] == TO
    assert message["From"] == SENDER
    assert message["X-Moltbot-Kind"] == "password_reset"
    assert message["Subject"] == mail.subject
    assert message["Message-ID"]
    assert message.get_content_type() == "multipart/alternative"
    assert text_body(message).replace("\r\n", "\n") == mail.text
    assert html_body(message).replace("\r\n", "\n") == mail.html


async def test_an_outbox_that_cannot_be_written_raises_mail_not_sent(tmp_path: Path) -> None:
    blocked = tmp_path / "outbox"
    blocked.write_text("a file where the folder should be")
    mail = render("verify_email", to=TO, values=VALUES["verify_email"])
    with pytest.raises(MailNotSent, match="cannot keep the verify_email mail") as raised:
        await FolderOutbox(blocked, SENDER).send(mail)
    assert raised.value.retryable is False


async def _send_two(folder: Path) -> list[Mail]:
    outbox = FolderOutbox(folder, SENDER)
    sent = [
        render("verify_email", to="ada@example.com", values=VALUES["verify_email"]),
        render("invitation", to="grace@example.com", values=VALUES["invitation"]),
    ]
    for mail in sent:
        await outbox.send(mail)
    return sent


def test_a_missing_outbox_lists_nothing(tmp_path: Path) -> None:
    assert list_mail(tmp_path / "nowhere") == []


async def test_the_listing_is_oldest_first(tmp_path: Path) -> None:
    await _send_two(tmp_path)
    (tmp_path / "notes.txt").write_text("not a mail")

    listed = list_mail(tmp_path)

    assert [(m.kind, m.to) for m in listed] == [
        ("verify_email", "ada@example.com"),
        ("invitation", "grace@example.com"),
    ]
    assert listed[1].subject == "Grace Hopper invited you to Support on Moltbot Cloud"
    assert all(isinstance(m, StoredMail) for m in listed)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", m.date) for m in listed)
    assert [m.name for m in listed] == sorted(p.name for p in tmp_path.glob("*.eml"))


async def test_a_mail_is_found_by_its_name_or_a_unique_prefix(tmp_path: Path) -> None:
    await _send_two(tmp_path)
    first, second = list_mail(tmp_path)

    assert read_mail(tmp_path, first.name)["To"] == "ada@example.com"
    assert read_mail(tmp_path, second.name.removesuffix(".eml"))["To"] == "grace@example.com"
    prefix = second.name.split("-")[0] + "-inv"
    assert read_mail(tmp_path, prefix)["X-Moltbot-Kind"] == "invitation"


async def test_an_unknown_or_ambiguous_name_is_a_lookup_error(tmp_path: Path) -> None:
    await _send_two(tmp_path)
    with pytest.raises(LookupError, match=r"No mail 'nope'.*moltbot mail list"):
        read_mail(tmp_path, "nope")
    with pytest.raises(LookupError, match="No mail"):
        read_mail(tmp_path, "../" + list_mail(tmp_path)[0].name)
    with pytest.raises(LookupError, match=r"matches 2 mails .*give more of the name"):
        read_mail(tmp_path, list_mail(tmp_path)[0].name[:4])  # the year: both
    with pytest.raises(LookupError, match="No mail"):
        read_mail(tmp_path / "nowhere", "x")


# --- moltbot mail ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures logging onto this test's captured stderr: put the set-up back."""
    root = logging.getLogger()
    handlers, level, config = list(root.handlers), root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def test_mail_list_says_when_there_is_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path), "mail", "list"]) == 0
    assert capsys.readouterr().out == f"No mail yet in {tmp_path.resolve() / 'mail' / 'outbox'}.\n"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    asyncio.run(_send_two(outbox_folder(tmp_path)))
    return tmp_path


def test_mail_list_prints_a_table(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(data_dir), "mail", "list"]) == 0

    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["DATE", "KIND", "TO", "SUBJECT", "NAME"]
    names = [m.name for m in list_mail(outbox_folder(data_dir))]
    assert "verify_email" in first
    assert "ada@example.com" in first
    assert "Confirm your e-mail address for Moltbot Cloud" in first
    assert first.endswith(names[0])
    assert "grace@example.com" in second
    assert second.endswith(names[1])
    assert first.index("ada@") == second.index("grace@") == header.index("TO")  # aligned


def test_mail_show_prints_the_headers_and_the_text(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = list_mail(outbox_folder(data_dir))[1].name

    assert main(["--data", str(data_dir), "mail", "show", name[:26]]) == 0

    out = capsys.readouterr().out
    head, _, body = out.partition("\n\n")
    assert "To: grace@example.com" in head.splitlines()
    assert "From: Moltbot Cloud <noreply@moltbot.example>" in head.splitlines()
    assert "X-Moltbot-Kind: invitation" in head.splitlines()
    assert "Subject: Grace Hopper invited you to Support on Moltbot Cloud" in head.splitlines()
    assert "https://app.moltbot.example/invite?token=ghi" in body
    assert "<p>" not in body


def test_mail_show_html(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = list_mail(outbox_folder(data_dir))[0].name
    assert main(["--data", str(data_dir), "mail", "show", "--html", name]) == 0
    body = capsys.readouterr().out.partition("\n\n")[2]
    assert body.startswith("<!DOCTYPE html>")
    assert '<a href="https://app.moltbot.example/verify?token=def"' in body


def test_mail_show_of_an_unknown_name_fails(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(data_dir), "mail", "show", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "moltbot: No mail 'nope'" in captured.err


def test_mail_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["mail", "show", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--html" in out
    assert "start of it" in out


# --- MOLTBOT_SMTP_URL ------------------------------------------------------------------------


def test_smtp_defaults() -> None:
    assert parse_smtp_url("smtp://mail.example.com") == SmtpTarget(
        host="mail.example.com", port=587, implicit_tls=False, starttls=None, timeout=10.0
    )


def test_smtps_with_a_percent_encoded_login() -> None:
    target = parse_smtp_url("smtps://mailer%40moltbot.example:p%40ss%3Aw%2Frd@Mail.Example.com")
    assert target == SmtpTarget(
        host="mail.example.com",
        port=465,
        implicit_tls=True,
        starttls=False,
        username="mailer@moltbot.example",
        password="p@ss:w/rd",
    )
    assert "p@ss" not in repr(target)
    assert "mailer@moltbot.example:***@" in repr(target)


def test_smtp_options() -> None:
    target = parse_smtp_url("smtp://u:pw@127.0.0.1:2525/?starttls=required&timeout=2.5")
    assert (target.host, target.port, target.starttls, target.timeout) == ("127.0.0.1", 2525, True, 2.5)
    assert (target.username, target.password) == ("u", "pw")
    assert parse_smtp_url("smtp://relay?starttls=off").starttls is False
    assert parse_smtp_url("smtp://relay?starttls=auto").starttls is None
    assert parse_smtp_url("smtp://u:@relay").password == ""


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://user:s3cret@mail.example.com", "must start with smtp:// .* or smtps://.*not http://"),
        ("mail.example.com:587", "must start with smtp://"),
        ("smtp://", "names no host"),
        ("smtp://user:s3cret@:25", "names no host"),
        ("smtp://user@mail.example.com", "has a user but no password"),
        ("smtp://mail.example.com/inbox", "takes no path"),
        ("smtp://user:s3cret@mail.example.com:99999", "not a valid URL"),
        ("smtp://mail.example.com?starttls=maybe", "starttls= must be auto, required or off"),
        ("smtps://mail.example.com?starttls=required", "starttls= is for smtp:// only"),
        ("smtp://mail.example.com?timeout=0", "timeout= must be a number of seconds above 0"),
        ("smtp://mail.example.com?timeout=soon", "timeout= must be"),
        ("smtp://mail.example.com?tls=1", "unknown options tls"),
    ],
)
def test_a_bad_smtp_url_says_what_to_fix(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as raised:
        SmtpMailer(url, SENDER)
    assert str(raised.value).startswith("MOLTBOT_SMTP_URL")
    assert "s3cret" not in str(raised.value)


def test_the_factory_picks_smtp_when_a_url_is_given(tmp_path: Path) -> None:
    assert isinstance(mailer(None, tmp_path, SENDER), FolderOutbox)
    assert isinstance(mailer("", tmp_path, SENDER), FolderOutbox)
    smtp = mailer("smtps://mail.example.com", tmp_path, SENDER)
    assert isinstance(smtp, SmtpMailer)
    assert smtp.target.port == 465
    with pytest.raises(ValueError, match="MOLTBOT_SMTP_URL"):
        mailer("smtp:/mail.example.com", tmp_path, SENDER)
    assert not tmp_path.joinpath("mail").exists()  # choosing writes nothing


def _caused_by(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (aiosmtplib.SMTPResponseException(451, "try again later"), True),
        (aiosmtplib.SMTPDataError(452, "mailbox full for now"), True),
        (aiosmtplib.SMTPConnectResponseError(421, "too busy"), True),
        (aiosmtplib.SMTPResponseException(550, "no such user"), False),
        (aiosmtplib.SMTPConnectResponseError(554, "go away"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), False),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "greylisted", "a@b")]), True),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@b")]), False),
        (aiosmtplib.SMTPConnectError("connection refused"), True),
        (aiosmtplib.SMTPConnectTimeoutError("timed out"), True),
        (aiosmtplib.SMTPServerDisconnected("connection lost"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (
            _caused_by(aiosmtplib.SMTPConnectError("handshake"), ssl.SSLCertVerificationError("bad cert")),
            False,
        ),
        (aiosmtplib.SMTPNotSupported("SMTP STARTTLS extension not supported by server."), False),
        (ValueError("Command arg contains a prohibited control character"), False),
    ],
)
def test_which_failures_are_tried_again(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient
