"""The product's own mail to people about their account and their inbox's day (pure): a
rendered mail as a value, and the port that sends one.

Which mail goes out is decided elsewhere (the gateway's account flows); what it says is
rendered by ``adapters/mail/templates.py``; how it leaves is a :class:`Mailer`
(``adapters/mail/``: SMTP, or a folder outbox when no SMTP server is configured).
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

MailKind = Literal[
    "password_reset", "verify_email", "invitation", "password_changed", "two_factor_changed", "digest"
]


class Mail(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered mail to one person: its kind (``X-Moltbot-Kind``), the recipient's
    address, the subject line, and the same content as plain text and as HTML."""

    kind: MailKind
    to: str
    subject: str
    text: str
    html: str


class MailNotSent(Exception):
    """A mail that did not leave; ``str()`` is written for an operator. ``retryable``: the
    mail server may take it later (it was unreachable or answered 4xx); False: it refused
    it for good (5xx, a wrong login) or the outbox could not be written."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Mailer(Protocol):
    """Sends account mail (``adapters/mail/smtp.py``, ``adapters/mail/outbox.py``)."""

    async def send(self, mail: Mail) -> None:
        """Hand ``mail`` on for delivery; raise :class:`MailNotSent` when that fails."""
        ...
