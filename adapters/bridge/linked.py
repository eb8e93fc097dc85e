"""What a channel the bridge links to its owner's account on a phone (WhatsApp, Signal) does
the same way, whatever the app: the outlet its link writes to.

- **Who it is linked as** (the paired JID, the linked number) is a cursor of the local
  store, under ``<kind>:<connection>``: it outlives a restart of the bridge.
- **States** go up the tunnel as ``state`` frames, **pairing codes** (QR codes) as ``code``
  frames, which the cloud shows on LIVE only.
- **Messages** go into the local outbox in one write with the conversation they open, and
  the uploader is nudged.

Each kind's ``device.py`` adds its link (``produce``), its sends, its files and what removing
the connection deletes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from adapters.bridge.channels import Report
from adapters.bridge.local_store import LocalStore
from adapters.channels.health import MAX_BACKOFF, Backoff
from domain import devices
from domain import events as ev
from domain import tunnel as t
from domain.connectors import PairingCode

log = structlog.get_logger()

ShowCode = Callable[[t.Code], Awaitable[None]]


class Delivery(Protocol):
    """What a link's normalizer makes of one message: its events, and the conversation it
    opens (if it is the first there)."""

    @property
    def events(self) -> Sequence[ev.Event]: ...

    @property
    def created(self) -> ev.Event | None: ...


class LinkedChannel:
    kind: str  # the channel kind, set by each subclass

    def __init__(
        self, *, tenant_id: str, device_id: str, connection_id: str, show: ShowCode, first_backoff: float
    ) -> None:
        self.connection_id = connection_id
        self._tenant_id = tenant_id
        self._show = show
        self._backoff = Backoff(first_backoff, MAX_BACKOFF)
        self._actor = devices.actor(device_id)
        self._log = log.bind(connection_id=connection_id)
        self._store: LocalStore | None = None
        self._nudge: Callable[[], None] = lambda: None
        self._report: Report | None = None

    @property
    def _source(self) -> str:
        return f"{self.kind}:{self.connection_id}"  # who it is linked as, in the local store's cursors

    async def _open(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> str | None:
        """Take the bridge's outlet; who the channel was linked as (None: not yet)."""
        self._store, self._nudge, self._report = store, nudge, report
        return (await store.cursor(self._source) or b"").decode() or None

    async def report(
        self, state: ev.ConnectionState, code: str, message: str, *, action: str | None = None
    ) -> None:
        if self._report is not None:
            shown = t.State(kind=self.kind, state=state, code=code, message=message, action=action)
            await self._report(shown)

    async def show_state(self, shown: ev.ConnectionStateChangedData) -> None:
        await self.report(shown.state, shown.code, shown.message, action=shown.action)

    async def show_code(self, code: PairingCode) -> None:
        with contextlib.suppress(Exception):  # no tunnel now: the next code comes soon enough
            await self._show(t.Code(kind=self.kind, code=code))

    async def remember(self, linked_as: str | None) -> None:
        """Who the channel is linked as now (None: nobody; it links again)."""
        if self._store is not None:
            await self._store.record([], self._source, (linked_as or "").encode())

    async def _record(self, delivery: Delivery) -> None:
        assert self._store is not None
        if not delivery.events:
            return
        created = [delivery.created] if delivery.created is not None else []
        await self._store.record([*created, *delivery.events])
        self._nudge()
