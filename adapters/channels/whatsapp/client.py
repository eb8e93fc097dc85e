"""The port between a WhatsApp session and the library that speaks WhatsApp's protocol.

The session (``link.py``) drives a :class:`WhatsAppClient` and reads what happens to it as
:data:`ClientEvent` values; ``neonize_client.py`` is the real one (neonize, whatsmeow), and
the tests drive the same session with a fake that emits QR codes, pairing, messages and
logouts. Nothing here imports neonize.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ClientConfig:
    """Which session a client opens."""

    database: str  # where the session keys live: a SQLite file, or a postgres:// DSN
    connection_id: str  # the client's key in the library (unique per process)
    jid: str | None  # the paired device to resume ("user:device@s.whatsapp.net"); None: pair anew


# --- what happens to a client ----------------------------------------------------------------


@dataclass(frozen=True)
class QrCode:
    code: str  # what the QR image encodes: a secret while it is valid (never logged or stored)


@dataclass(frozen=True)
class Paired:
    jid: str  # the new linked device, to resume it later


@dataclass(frozen=True)
class Online:
    jid: str  # the linked device
    push_name: str  # the account's name


@dataclass(frozen=True)
class Received:
    message: Any  # neonize's MessageEv (see normalize.py)


@dataclass(frozen=True)
class Receipt:
    chat: str  # "user@server"
    message_ids: tuple[str, ...]  # WhatsApp's ids of our messages
    status: Literal["delivered", "read"]
    at: datetime


@dataclass(frozen=True)
class LoggedOut:
    """The phone removed the linked device; the library forgot the session."""


@dataclass(frozen=True)
class Banned:
    seconds: int  # how long WhatsApp says to wait


@dataclass(frozen=True)
class Outdated:
    """WhatsApp refuses this version of the library."""


@dataclass(frozen=True)
class Replaced:
    """Another client opened the same session."""


@dataclass(frozen=True)
class Dropped:
    """The socket dropped; the library reconnects by itself."""


@dataclass(frozen=True)
class Ended:
    """The client stopped: ``error`` says why when it was not asked to (a failed dial)."""

    error: str | None = None


ClientEvent = (
    QrCode | Paired | Online | Received | Receipt | LoggedOut | Banned | Outdated | Replaced | Dropped | Ended
)


@dataclass(frozen=True)
class SentMessage:
    whatsapp_id: str
    at: datetime


class SendFailed(Exception):
    """WhatsApp did not take a message (the library's reason)."""


class WhatsAppClient(Protocol):
    """One linked device's connection to WhatsApp."""

    def events(self) -> AsyncIterator[ClientEvent]:
        """What happens to the client, from :meth:`start` until :class:`Ended`."""
        ...

    async def start(self) -> None:
        """Begin connecting (returns at once; pairing or ``Online`` follow as events)."""
        ...

    async def pair_phone(self, phone_number: str) -> str:
        """The 8-character code to type on the phone instead of scanning (after the first QR)."""
        ...

    async def send_text(self, chat: str, text: str) -> SentMessage: ...

    async def send_typing(self, chat: str, typing: bool) -> None: ...

    async def download(self, message: Any) -> bytes:
        """The file of a received ``MessageEv``."""
        ...

    async def stop(self) -> None:
        """Disconnect and end (``Ended`` follows); harmless when not started."""
        ...


NewClient = Callable[[ClientConfig], WhatsAppClient]
