"""A local stand-in for WhatsApp behind the session's client port
(``adapters/channels/whatsapp/client.py``): WhatsApp's Noise protocol cannot be served
locally, so the tests drive the real link, session, LIVE path and web page through this.

:class:`FakeWhatsApp` is the phone and WhatsApp's servers together: ``new_client`` makes the
clients the session asks for; the test scans the QR code (:meth:`scan`), writes messages
(:meth:`write`), removes the linked device (:meth:`log_out`), rotates QR codes, takes the
network away, and reads what was sent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.channels.whatsapp import client as c

NO_NETWORK = (
    "failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send handshake request:"
    ' Get "https://web.whatsapp.com/ws/chat": dial tcp: lookup web.whatsapp.com: no such host'
)


@dataclass
class Sent:
    chat: str
    text: str
    whatsapp_id: str


@dataclass
class FakeWhatsApp:
    number: str = "15551230000"
    push_name: str = "Ada"
    network: bool = True
    clients: list[FakeClient] = field(default_factory=list)
    paired: set[str] = field(default_factory=set)  # linked devices WhatsApp knows
    sent: list[Sent] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # message id -> its file
    phone_codes: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_client(self, config: c.ClientConfig) -> FakeClient:
        client = FakeClient(self, config)
        self.clients.append(client)
        return client

    @property
    def current(self) -> FakeClient:
        live = [client for client in self.clients if client.started and not client.ended]
        assert live, "no client is running"
        return live[-1]

    def qr(self, client: FakeClient, index: int) -> str:
        return f"2@ref{index}-{client.config.connection_id},noise,identity,adv"

    def rotate_qr(self) -> str:
        client = self.current
        client.qr_index += 1
        code = self.qr(client, client.qr_index)
        client.put(c.QrCode(code))
        return code

    def scan(self) -> str:
        """The phone scans the code on screen: the device is linked and online."""
        client = self.current
        jid = f"{self.number}:{next(self._ids) + 10}@s.whatsapp.net"
        self.paired.add(jid)
        client.put(c.Paired(jid))
        client.put(c.Online(jid, self.push_name))
        return jid

    def write(self, message: Any, file: bytes | None = None) -> None:
        if file is not None:
            self.files[message.Info.ID] = file
        self.current.put(c.Received(message))

    def log_out(self) -> None:
        """The phone removes the linked device."""
        client = self.current
        self.paired.discard(client.config.jid or "")
        client.put(c.LoggedOut())

    def happen(self, event: c.ClientEvent) -> None:
        self.current.put(event)


class FakeClient:
    def __init__(self, whatsapp: FakeWhatsApp, config: c.ClientConfig) -> None:
        self.whatsapp = whatsapp
        self.config = config
        self.queue: asyncio.Queue[c.ClientEvent] = asyncio.Queue()
        self.started = False
        self.ended = False
        self.stopped = False
        self.qr_index = 0
        self.online = False

    def put(self, event: c.ClientEvent) -> None:
        if isinstance(event, c.Online):
            self.online = True
            self.config = c.ClientConfig(self.config.database, self.config.connection_id, event.jid)
        self.queue.put_nowait(event)

    async def start(self) -> None:
        self.started = True
        if not self.whatsapp.network:
            self.stopped = True
            self.put(c.Ended(NO_NETWORK))
        elif self.config.jid in self.whatsapp.paired:
            self.put(c.Online(self.config.jid, self.whatsapp.push_name))
        else:
            self.put(c.QrCode(self.whatsapp.qr(self, 0)))

    async def events(self) -> AsyncIterator[c.ClientEvent]:
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, c.Ended):
                self.ended = True
                return

    async def pair_phone(self, phone_number: str) -> str:
        self.whatsapp.phone_codes.append(phone_number)
        return "ABCD-EFGH"

    async def send_text(self, chat: str, text: str) -> c.SentMessage:
        if not self.online:
            raise c.SendFailed("client is nil")
        whatsapp_id = f"3EB0{next(self.whatsapp._ids):08X}"
        self.whatsapp.sent.append(Sent(chat, text, whatsapp_id))
        return c.SentMessage(whatsapp_id, datetime.now(UTC))

    async def send_typing(self, chat: str, typing: bool) -> None:
        if typing:
            self.whatsapp.typing.append(chat)

    async def download(self, message: Any) -> bytes:
        return self.whatsapp.files[message.Info.ID]

    async def stop(self) -> None:
        if self.started and not self.stopped:
            self.stopped = True
            self.put(c.Ended(None))
