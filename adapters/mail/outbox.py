"""The folder outbox: account mail kept as ``.eml`` files instead of sent, for a deployment
without an SMTP server (the embedded default) and for tests; ``moltbot mail`` reads it.

A mail is ``<UTC yyyymmddThhmmssffffff>-<kind>-<random>.eml`` under
``<data dir>/mail/outbox/`` (mode 0700; each file 0600, since the links in it sign people
in), so names sort by time. A file appears whole or not at all (written aside, renamed).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import cast

import msgspec
import structlog

from adapters.mail.message import KIND_HEADER, build_message
from domain.mail import Mail, MailNotSent

log = structlog.get_logger()

SUFFIX = ".eml"


def outbox_folder(data_dir: Path) -> Path:
    """Where the embedded stack in ``data_dir`` keeps the mail it did not send."""
    return data_dir / "mail" / "outbox"


class FolderOutbox:
    """A :class:`~domain.mail.Mailer` that writes each mail from ``sender`` into ``folder``."""

    def __init__(self, folder: Path, sender: str) -> None:
        self._folder = folder
        self._sender = sender

    async def send(self, mail: Mail) -> None:
        written_at = datetime.now(UTC)
        try:
            message = build_message(mail, self._sender, sent_at=written_at)
            name = f"{written_at:%Y%m%dT%H%M%S%f}-{mail.kind}-{secrets.token_hex(3)}{SUFFIX}"
            await asyncio.to_thread(self._write, name, message.as_bytes(policy=SMTP))
        except (OSError, ValueError) as exc:
            raise MailNotSent(
                f"cannot keep the {mail.kind} mail in {self._folder}: {exc}", retryable=False
            ) from exc
        log.info("mail_kept", kind=mail.kind, file=name)

    def _write(self, name: str, content: bytes) -> None:
        if not self._folder.is_dir():
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(dir=self._folder, prefix=".", suffix=".partial")  # 0600
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self._folder / name)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


class StoredMail(msgspec.Struct, frozen=True):
    """One kept mail as ``moltbot mail list`` shows it: its file name, kind, recipient,
    subject, and when it was written (``2025-05-01 09:30:12 UTC``, or the Date header as is)."""

    name: str
    kind: str
    to: str
    subject: str
    date: str


def _parse(path: Path, *, headers_only: bool = False) -> EmailMessage:
    with path.open("rb") as source:
        return BytesParser(policy=default).parse(source, headersonly=headers_only)


def _date(header: str) -> str:
    try:
        return f"{parsedate_to_datetime(header).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    except (TypeError, ValueError):
        return header


def _names(folder: Path) -> list[str]:
    """The kept mails' file names, oldest first (they start with the time)."""
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir() if path.suffix == SUFFIX and path.is_file())


def list_mail(folder: Path) -> list[StoredMail]:
    """Every mail kept in ``folder``, newest last; none when the folder does not exist."""
    listed = []
    for name in _names(folder):
        headers = _parse(folder / name, headers_only=True)
        listed.append(
            StoredMail(
                name=name,
                kind=str(headers.get(KIND_HEADER, "")),
                to=str(headers.get("To", "")),
                subject=str(headers.get("Subject", "")),
                date=_date(str(headers.get("Date", ""))),
            )
        )
    return listed


def read_mail(folder: Path, name: str) -> EmailMessage:
    """The kept mail called ``name``, or the only one whose name starts with it; a
    ``LookupError`` (for a person) when there is none or more than one."""
    names = _names(folder)
    if name in names:
        return _parse(folder / name)
    matching = [candidate for candidate in names if name and candidate.startswith(name)]
    if len(matching) == 1:
        return _parse(folder / matching[0])
    if not matching:
        raise LookupError(f"No mail {name!r} in {folder}; `moltbot mail list` shows their names.")
    shown = ", ".join(matching[:3]) + (", …" if len(matching) > 3 else "")
    raise LookupError(f"{name!r} matches {len(matching)} mails ({shown}); give more of the name.")


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    return cast(str, cast(EmailMessage, part).get_content())


def text_body(message: EmailMessage) -> str:
    """The plain-text part of ``message`` ("" when it has none)."""
    return _body(message, "plain")


def html_body(message: EmailMessage) -> str:
    """The HTML part of ``message`` ("" when it has none)."""
    return _body(message, "html")
