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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.bridge.channels import Report
from adapters.bridge.linked import LinkedChannel, ShowCode
from adapters.bridge.local_store import LocalStore
from adapters.channels.health import stay_linked
from adapters.channels.whatsapp import KIND, normalize
from adapters.channels.whatsapp.client import NewClient
from adapters.channels.whatsapp.link import WhatsAppLink
from domain import tunnel as t
from domain.commands import SendMessage

KEPT_FOR_DOWNLOAD = 64  # received messages whose files the cloud may still fetch


class WhatsAppDeviceChannel(LinkedChannel):
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
        super().__init__(
            tenant_id=tenant_id, device_id=device_id, connection_id=connection_id, show=show,
            first_backoff=first_backoff,
        )  # fmt: skip
        self._folder = data_dir / "whatsapp"
        self._new_client = new_client
        self._phone_number = phone_number
        self._recent: OrderedDict[str, Any] = OrderedDict()  # WhatsApp id -> MessageEv
        self.link: WhatsAppLink | None = None

    @property
    def _database(self) -> Path:
        return self._folder / f"{self.connection_id}.db"

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        jid = await self._open(store, nudge, report)  # the paired device's JID
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._folder, 0o700)
        self.link = link = WhatsAppLink(
            self._new_client, self, database=str(self._database), tenant_id=self._tenant_id,
            connection_id=self.connection_id, jid=jid, backoff=self._backoff, log=self._log,
            phone_number=self._phone_number, actor=self._actor,
        )  # fmt: skip
        await stay_linked(
            link.link_once, self, self._backoff, kind=KIND, log=self._log,
            unreachable="WhatsApp cannot be reached from this device; the bridge keeps trying.",
        )  # fmt: skip

    # --- the link's outlet (the rest is LinkedChannel's) -------------------------------------------

    async def remember(self, linked_as: str | None) -> None:
        await super().remember(linked_as)
        if linked_as is None:
            self._delete_keys()

    async def take(self, delivery: normalize.Delivery, message: Any | None) -> None:
        if delivery.events and message is not None:
            self._recent[str(message.Info.ID)] = message
            while len(self._recent) > KEPT_FOR_DOWNLOAD:
                self._recent.popitem(last=False)
        await self._record(delivery)

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
        await self.remember(None)

    def _delete_keys(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self._database}{suffix}").unlink()
