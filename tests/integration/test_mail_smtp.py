"""Account mail through a real SMTP conversation: the product's SmtpMailer (aiosmtplib)
against a local aiosmtpd server (tests/fakes/smtp_server.py), with AUTH, temporary and
permanent refusals, an unreachable server and a silent one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import stamina
from structlog.testing import capture_logs

from adapters.mail.outbox import html_body, text_body
from adapters.mail.smtp import ATTEMPTS, SmtpMailer
from adapters.mail.templates import render
from domain.mail import Mail, MailNotSent
from tests.fakes.smtp_server import FakeSmtp, smtp_server

SENDER = "Moltbot Cloud <noreply@moltbot.example>"
USER, PASSWORD = "mailer@moltbot.example", "p@ss:w/rd"  # percent-encoded in the URL
QUOTED_LOGIN = {"user": "mailer%40moltbot.example", "password": "p%40ss%3Aw%2Frd"}


@pytest.fixture(autouse=True)
def no_waits() -> Iterator[None]:
    """stamina without its waits; the mailer's own number of attempts (capped at 10) stays."""
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def _mail_events(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The mailer's own lines (not stamina's ``retry_scheduled``)."""
    return [entry for entry in logs if entry["event"].startswith("mail_")]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSmtp]:
    async with smtp_server() as server:
        yield server


def _reset_mail() -> Mail:
    return render(
        "password_reset",
        to="ada@example.com",
        values={
            "link": "https://app.moltbot.example/reset?t=1&u=2",
            "minutes": "30",
            "product": "Moltbot Cloud",
        },
    )


async def test_a_mail_arrives_with_both_parts_and_its_headers(fake: FakeSmtp) -> None:
    mail = _reset_mail()

    await SmtpMailer(fake.url(), SENDER).send(mail)

    (message,) = fake.messages
    assert fake.recipients == [["ada@example.com"]]
    assert fake.senders == ["noreply@moltbot.example"]
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Reset your Moltbot Cloud password"
    assert message["X-Moltbot-Kind"] == "password_reset"
    assert message["Message-ID"].endswith("@moltbot.example>")
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert message.get_content_type() == "multipart/alternative"
    assert text_body(message).replace("\r\n", "\n") == mail.text
    assert html_body(message).replace("\r\n", "\n") == mail.html
    assert 'href="https://app.moltbot.example/reset?t=1&amp;u=2"' in html_body(message)
    assert fake.logins == []


async def test_the_login_of_the_url_is_used() -> None:
    async with smtp_server(users={USER: PASSWORD}) as fake:
        with capture_logs() as logs:
            await SmtpMailer(fake.url(**QUOTED_LOGIN), SENDER).send(_reset_mail())

    assert fake.logins == [USER]
    assert len(fake.messages) == 1
    assert PASSWORD not in repr(logs)
    assert [entry["event"] for entry in _mail_events(logs)] == ["mail_sent"]


async def test_a_wrong_password_is_final_and_never_shown() -> None:
    async with smtp_server(users={USER: PASSWORD}) as fake:
        with capture_logs() as logs, pytest.raises(MailNotSent, match="refused the login of") as raised:
            await SmtpMailer(fake.url(user=QUOTED_LOGIN["user"], password="wrong-secret"), SENDER).send(
                _reset_mail()
            )

    assert raised.value.retryable is False
    assert "535" in str(raised.value)
    assert fake.messages == []
    assert [entry["event"] for entry in _mail_events(logs)] == ["mail_attempt_failed"]  # tried once
    assert "wrong-secret" not in repr(logs) + str(raised.value)


async def test_a_server_that_wants_a_login_refuses_mail_without_one() -> None:
    async with smtp_server(users={USER: PASSWORD}) as fake:
        with pytest.raises(MailNotSent, match="530") as raised:
            await SmtpMailer(fake.url(), SENDER).send(_reset_mail())
    assert raised.value.retryable is False
    assert fake.messages == []


async def test_a_451_is_tried_again_and_delivered(fake: FakeSmtp) -> None:
    fake.fail_next(451, "Greylisted, try again later")

    with capture_logs() as logs:
        await SmtpMailer(fake.url(), SENDER).send(_reset_mail())

    assert fake.attempts == 2
    assert len(fake.messages) == 1
    assert fake.recipients == [["ada@example.com"]]
    failed, sent = _mail_events(logs)
    assert failed["event"] == "mail_attempt_failed"
    assert failed["retryable"] is True
    assert "451 Greylisted" in failed["error"]
    assert sent["event"] == "mail_sent"


async def test_a_451_to_the_sender_is_tried_again_too(fake: FakeSmtp) -> None:
    fake.fail_next(451, "Local error in processing", at="MAIL")
    await SmtpMailer(fake.url(), SENDER).send(_reset_mail())
    assert len(fake.messages) == 1


async def test_a_550_is_final(fake: FakeSmtp) -> None:
    fake.fail_next(550, "Message rejected as spam")

    with pytest.raises(MailNotSent, match="answered 550 Message rejected as spam") as raised:
        await SmtpMailer(fake.url(), SENDER).send(_reset_mail())

    assert raised.value.retryable is False
    assert "gave up" not in str(raised.value)
    assert fake.attempts == 1
    assert fake.messages == []


async def test_a_refused_recipient_is_final(fake: FakeSmtp) -> None:
    fake.fail_next(550, "No such user here", at="RCPT")
    with pytest.raises(MailNotSent, match="refused the recipient: 550 No such user here") as raised:
        await SmtpMailer(fake.url(), SENDER).send(_reset_mail())
    assert raised.value.retryable is False
    assert fake.attempts == 0


async def test_required_starttls_is_not_given_up(fake: FakeSmtp) -> None:
    """The fake offers no STARTTLS: with starttls=required nothing is sent in clear."""
    with pytest.raises(MailNotSent, match="STARTTLS") as raised:
        await SmtpMailer(fake.url(query="starttls=required"), SENDER).send(_reset_mail())
    assert raised.value.retryable is False
    assert fake.attempts == 0


async def test_an_unreachable_server_is_tried_a_few_times_then_given_up() -> None:
    async with smtp_server() as gone:
        url = gone.url()  # a port nothing listens on any more

    with (
        capture_logs() as logs,
        pytest.raises(MailNotSent, match=f"gave up after {ATTEMPTS} attempts") as raised,
    ):
        await SmtpMailer(url, SENDER).send(_reset_mail())

    assert raised.value.retryable is True
    assert "cannot reach 127.0.0.1" in str(raised.value)
    assert [entry["attempt"] for entry in _mail_events(logs)] == list(range(1, ATTEMPTS + 1))


async def test_a_silent_server_times_out_after_the_url_s_timeout() -> None:
    async def greet_never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    silent = await asyncio.start_server(greet_never, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(MailNotSent, match="gave up") as raised:
            await SmtpMailer(f"smtp://127.0.0.1:{port}?timeout=0.2", SENDER, attempts=2).send(_reset_mail())
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        silent.close()
        await silent.wait_closed()

    assert raised.value.retryable is True
    assert 0.4 <= elapsed < 3
