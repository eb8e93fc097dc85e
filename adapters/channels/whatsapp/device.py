"""WhatsApp as the Personal Bridge hosts it, when the owner connects it with ``"mode":
"bridge"``: the same link as in the cloud (``link.py``), with the device's outlet.

The session's keys stay on the device, in ``<bridge data>/whatsapp/<connection>.db`` (a
folder only its user may open), and the paired device's JID in the bridge's local store;
messages go into the local outbox (recorded by ``device:<id>``, as the cloud requires of a
device); states go up the tunnel as ``state`` frames and pairing codes as ``code`` frames,
which the cloud shows on LIVE only. A removed connection's keys are deleted (:meth:`forget`).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from adapters.bridge.channels import Report
from adapters.bridge.local_store import LocalStore
from adapters.channels.health import MAX_BACKOFF, Backoff, stay_linked
from adapters.channels.whatsapp import KIND, normalize
from adapters.channels.whatsapp.client import NewClient
from adapters.channels.whatsapp.link import WhatsAppLink
from domain import devices
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.connectors import PairingCode

log = structlog.get_logger()

KEPT_FOR_DOWNLOAD = 64  # received messages whose files the cloud may still fetch
ShowCode = Callable[[t.Code], Awaitable[None]]


class WhatsAppDeviceChannel:
    kind = KIND
    capabilities: tuple[str, ...] = (f"{KIND}.read", f"{KIND}.send")

    def __init__(
        self,
        *,
        tenant_id: str,
        device_id: str,
        connection_id: str,
        data_dir: Path,
        new_client: NewClient,
        show: ShowCode,
        phone_number: str | None = None,
        first_backoff: float = 2.0,
    ) -> None:
        self.connection_id = connection_id
        self._tenant_id = tenant_id
        self._folder = data_dir / "whatsapp"
        self._new_client = new_client
        self._show = show
        self._phone_number = phone_number
        self._backoff = Backoff(first_backoff, MAX_BACKOFF)
        self._actor = devices.actor(device_id)
        self._log = log.bind(connection_id=connection_id)
        self._store: LocalStore | None = None
        self._nudge: Callable[[], None] = lambda: None
        self._report: Report | None = None
        self._recent: OrderedDict[str, Any] = OrderedDict()  # WhatsApp id -> MessageEv
        self.link: WhatsAppLink | None = None

    @property
    def _database(self) -> Path:
        return self._folder / f"{self.connection_id}.db"

    @property
    def _source(self) -> str:
        return f"{KIND}:{self.connection_id}"  # the paired device's JID, in the local store's cursors

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        self._store, self._nudge, self._report = store, nudge, report
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._folder, 0o700)
        jid = (await store.cursor(self._source) or b"").decode() or None
        self.link = link = WhatsAppLink(
            self._new_client, self, database=str(self._database), tenant_id=self._tenant_id,
            connection_id=self.connection_id, jid=jid, backoff=self._backoff, log=self._log,
            phone_number=self._phone_number, actor=self._actor,
        )  # fmt: skip
        await stay_linked(
            link.link_once, self, self._backoff, kind=KIND, log=self._log,
            unreachable="WhatsApp cannot be reached from this device; the bridge keeps trying.",
        )  # fmt: skip

    # --- the link's outlet, and its reports ----------------------------------------------------

    async def report(
        self, state: ev.ConnectionState, code: str, message: str, *, action: str | None = None
    ) -> None:
        if self._report is not None:
            await self._report(t.State(kind=KIND, state=state, code=code, message=message, action=action))

    async def show_state(self, shown: ev.ConnectionStateChangedData) -> None:
        await self.report(shown.state, shown.code, shown.message, action=shown.action)

    async def show_code(self, code: PairingCode) -> None:
        with contextlib.suppress(Exception):  # no tunnel now: the next code comes soon enough
            await self._show(t.Code(kind=KIND, code=code))

    async def remember(self, jid: str | None) -> None:
        assert self._store is not None
        await self._store.record([], self._source, (jid or "").encode())
        if jid is None:
            self._delete_keys()

    async def take(self, delivery: normalize.Delivery, message: Any | None) -> None:
        assert self._store is not None
        if not delivery.events:
            return
        if message is not None:
            self._recent[str(message.Info.ID)] = message
            while len(self._recent) > KEPT_FOR_DOWNLOAD:
                self._recent.popitem(last=False)
        created = [delivery.created] if delivery.created is not None else []
        await self._store.record([*created, *delivery.events])
        self._nudge()

    # --- what the cloud asks ---------------------------------------------------------------------

    async def execute(self, command: SendMessage) -> t.Result:
        if self.link is None:
            return t.Result(
                id=command.command_id, outcome="deferred", reason="WhatsApp is starting", retry_after=10
            )
        return await self.link.send(command)

    async def read_file(self, file_id: str) -> bytes:
        whatsapp_id = file_id.split(":", 1)[0]
        message = self._recent.get(whatsapp_id)
        client = self.link.client if self.link is not None else None
        if message is None or client is None:
            raise FileNotFoundError(f"the WhatsApp message {whatsapp_id} is no longer at hand on this device")
        return await client.download(message)

    async def forget(self) -> None:
        """The connection was removed: delete the session's keys from this device."""
        if self._store is not None:
            await self._store.record([], self._source, b"")
        self._delete_keys()

    def _delete_keys(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self._database}{suffix}").unlink()
