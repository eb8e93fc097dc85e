"""A fake mail server: aiosmtpd's SMTP protocol on a free port of 127.0.0.1, so the
product's real SMTP client (aiosmtplib) is exercised, its AUTH and retries included.

It keeps what it accepts: ``messages`` (parsed with ``email.policy.default``) and, for each,
the envelope's recipients in ``recipients``; ``logins`` are the users that signed in.
With ``users``, it asks for AUTH (PLAIN or LOGIN, over plain text: there is no TLS here) and
refuses mail without it (530). :meth:`FakeSmtp.fail_next` makes the next ``MAIL``, ``RCPT``
or ``DATA`` command answer an error once (``451``: try later; ``550``: refused for good);
``attempts`` counts the ``DATA`` commands, answered or failed.

aiosmtpd's ``Controller`` is not used: with ``port=0`` its start-up self-check connects to
port 0 and fails. The protocol is served by the running loop's ``create_server`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import Any, Literal, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["MAIL", "RCPT", "DATA"]


@dataclass
class FakeSmtp:
    """The fake's address and what it received; see the module's docstring."""

    users: dict[str, str] | None = None
    port: int = 0
    host: str = "127.0.0.1"
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    attempts: int = 0
    _failures: dict[Stage, tuple[int, str]] = field(default_factory=dict)

    def url(self, *, user: str | None = None, password: str | None = None, query: str = "") -> str:
        """An ``smtp://`` URL of this server (user and password taken as already quoted)."""
        login = f"{user}:{password}@" if user is not None else ""
        return f"smtp://{login}{self.host}:{self.port}" + (f"?{query}" if query else "")

    def fail_next(self, code: int, text: str, *, at: Stage = "DATA") -> None:
        """Answer the next ``at`` command with ``code text`` (once), instead of accepting it."""
        self._failures[at] = (code, text)

    def _failure(self, stage: Stage) -> str | None:
        failure = self._failures.pop(stage, None)
        return None if failure is None else f"{failure[0]} {failure[1]}"

    # aiosmtpd's handler hooks (its names)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if (failure := self._failure("MAIL")) is not None:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if (failure := self._failure("RCPT")) is not None:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if (failure := self._failure("DATA")) is not None:
            return failure
        content = cast(bytes, envelope.original_content or envelope.content)
        self.messages.append(BytesParser(policy=default).parsebytes(content))
        self.recipients.append(list(envelope.rcpt_tos))
        self.senders.append(str(envelope.mail_from))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.users is not None:
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                self.logins.append(user)
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def protocol(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # AUTH without TLS is deliberate: the fake has no certificate
            return SMTP(
                self,
                hostname="fake-smtp.localhost",
                auth_required=self.users is not None,
                auth_require_tls=False,
                authenticator=self.authenticate if self.users is not None else None,
            )


@contextlib.asynccontextmanager
async def smtp_server(*, users: dict[str, str] | None = None) -> AsyncIterator[FakeSmtp]:
    """Serve a :class:`FakeSmtp` on a free port of 127.0.0.1 for the block's duration;
    ``users`` (name: password) turn on required AUTH."""
    fake = FakeSmtp(users=users)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(fake.protocol, fake.host, 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()
