"""Which :class:`~domain.mail.Mailer` a deployment uses: its SMTP server when
MOLTBOT_SMTP_URL is set, else the folder outbox (read with ``moltbot mail``)."""

from __future__ import annotations

from pathlib import Path

from adapters.mail.outbox import FolderOutbox
from adapters.mail.smtp import SmtpMailer
from domain.mail import Mailer


def mailer(smtp_url: str | None, outbox_folder: Path, sender: str) -> Mailer:
    """An SMTP mailer for ``smtp_url`` (checked now: a ``ValueError`` naming
    MOLTBOT_SMTP_URL), or the outbox in ``outbox_folder`` when there is no URL."""
    if smtp_url:
        return SmtpMailer(smtp_url, sender)
    return FolderOutbox(outbox_folder, sender)
