"""A :class:`~domain.mail.Mail` as an RFC 5322 message, the same for the SMTP server and the
folder outbox: ``From``, ``To``, ``Subject``, ``Date``, ``Message-ID``,
``X-Moltbot-Kind``, and a multipart/alternative body (plain text first, then HTML)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid, parseaddr

from domain.mail import Mail

KIND_HEADER = "X-Moltbot-Kind"
FALLBACK_DOMAIN = "moltbot.invalid"  # Message-ID's right side when the sender has no domain


def build_message(mail: Mail, sender: str, *, sent_at: datetime | None = None) -> EmailMessage:
    """``mail`` from ``sender`` (``noreply@example.com`` or ``Moltbot Cloud <noreply@…>``),
    dated ``sent_at`` (default: now). A header value with a line break is a ``ValueError``."""
    _, sender_address = parseaddr(sender)
    domain = sender_address.rpartition("@")[2] or FALLBACK_DOMAIN
    message = EmailMessage(policy=default)
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(sent_at or datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=domain)  # our own domain: no DNS lookup of the host
    message[KIND_HEADER] = mail.kind
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message
