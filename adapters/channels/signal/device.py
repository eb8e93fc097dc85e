"""Signal as the Personal Bridge hosts it, when its owner connects it (``POST
/v1/channels/signal/connect {"device_id"}``): the link (``link.py``) with the device's outlet.

The linked account's number is kept in the bridge's local store; a signal-cli the bridge
starts keeps the account's keys in ``<bridge data>/signal/<connection>/`` (a folder only its
user may open). Messages go into the local outbox (recorded by ``device:<id>``, as the cloud
requires of a device); states go up the tunnel as ``state`` frames and the QR code as a
``code`` frame, which the cloud shows on LIVE only. A removed connection forgets the account
and deletes that folder (:meth:`forget`); a daemon the user runs keeps its own data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import structlog

from adapters.bridge.channels import Report
from adapters.bridge.local_store import LocalStore
from adapters.channels.health import MAX_BACKOFF, Backoff, stay_linked
from adapters.channels.signal import KIND, normalize
from adapters.channels.signal.config import SignalSetup
from adapters.channels.signal.daemon import forget_folder
from adapters.channels.signal.link import ACCOUNT_CHECK_EVERY, LINK_WINDOW, SignalLink
from domain import devices
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.connectors import PairingCode

log = structlog.get_logger()

ShowCode = Callable[[t.Code], Awaitable[None]]


class SignalDeviceChannel:
    kind = KIND
    capabilities: tuple[str, ...] = (f"{KIND}.read", f"{KIND}.send")

    def __init__(
        self,
        *,
        tenant_id: str,
        device_id: str,
        connection_id: str,
        data_dir: Path,
        setup: SignalSetup,
        environ: Mapping[str, str],
        show: ShowCode,
        first_backoff: float = 2.0,
        link_window: float = LINK_WINDOW,
        check_every: float = ACCOUNT_CHECK_EVERY,
    ) -> None:
        self.connection_id = connection_id
        self._tenant_id = tenant_id
        self._folder = data_dir / "signal" / connection_id
        self._setup = setup
        self._environ = environ
        self._show = show
        self._backoff = Backoff(first_backoff, MAX_BACKOFF)
        self._link_window = link_window
        self._check_every = check_every
        self._actor = devices.actor(device_id)
        self._log = log.bind(connection_id=connection_id)
        self._store: LocalStore | None = None
        self._nudge: Callable[[], None] = lambda: None
        self._report: Report | None = None
        self.link: SignalLink | None = None

    @property
    def _source(self) -> str:
        return f"{KIND}:{self.connection_id}"  # the linked account's number, in the local store's cursors

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        self._store, self._nudge, self._report = store, nudge, report
        account = (await store.cursor(self._source) or b"").decode() or None
        self.link = link = SignalLink(
            self, setup=self._setup, folder=self._folder, environ=self._environ, tenant_id=self._tenant_id,
            connection_id=self.connection_id, account=account, backoff=self._backoff, log=self._log,
            actor=self._actor, link_window=self._link_window, check_every=self._check_every,
        )  # fmt: skip
        await stay_linked(
            link.link_once, self, self._backoff, kind=KIND, log=self._log,
            unreachable="signal-cli cannot be reached on this device; the bridge keeps trying.",
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

    async def remember(self, account: str | None) -> None:
        assert self._store is not None
        await self._store.record([], self._source, (account or "").encode())

    async def take(self, delivery: normalize.Delivery) -> None:
        assert self._store is not None
        if not delivery.events:
            return
        created = [delivery.created] if delivery.created is not None else []
        await self._store.record([*created, *delivery.events])
        self._nudge()

    # --- what the cloud asks ---------------------------------------------------------------------

    async def execute(self, command: SendMessage) -> t.Result:
        if self.link is None:
            return t.Result(
                id=command.command_id, outcome="deferred", reason="Signal is starting", retry_after=10
            )
        return await self.link.send(command)

    async def read_file(self, file_id: str) -> bytes:
        if self.link is None:
            raise FileNotFoundError("Signal is not running on this device")
        return await self.link.read_file(file_id)

    async def forget(self) -> None:
        """The connection was removed: forget the account, and delete the keys of a signal-cli
        the bridge ran (a daemon the user runs keeps its own)."""
        if self._store is not None:
            await self._store.record([], self._source, b"")
        if self._setup.rpc is None:
            forget_folder(self._folder)
