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

from collections.abc import Callable, Mapping
from pathlib import Path

from adapters.bridge.channels import Report
from adapters.bridge.linked import LinkedChannel, ShowCode
from adapters.bridge.local_store import LocalStore
from adapters.channels.health import stay_linked
from adapters.channels.signal import KIND, normalize
from adapters.channels.signal.config import SignalSetup
from adapters.channels.signal.daemon import forget_folder
from adapters.channels.signal.link import ACCOUNT_CHECK_EVERY, LINK_WINDOW, SignalLink
from domain import tunnel as t
from domain.commands import SendMessage


class SignalDeviceChannel(LinkedChannel):
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
        super().__init__(
            tenant_id=tenant_id, device_id=device_id, connection_id=connection_id, show=show,
            first_backoff=first_backoff,
        )  # fmt: skip
        self._folder = data_dir / "signal" / connection_id
        self._setup = setup
        self._environ = environ
        self._link_window = link_window
        self._check_every = check_every
        self.link: SignalLink | None = None

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        account = await self._open(store, nudge, report)
        self.link = link = SignalLink(
            self, setup=self._setup, folder=self._folder, environ=self._environ, tenant_id=self._tenant_id,
            connection_id=self.connection_id, account=account, backoff=self._backoff, log=self._log,
            actor=self._actor, link_window=self._link_window, check_every=self._check_every,
        )  # fmt: skip
        await stay_linked(
            link.link_once, self, self._backoff, kind=KIND, log=self._log,
            unreachable="signal-cli cannot be reached on this device; the bridge keeps trying.",
        )  # fmt: skip

    # --- the link's outlet (the rest is LinkedChannel's) -------------------------------------------

    async def take(self, delivery: normalize.Delivery) -> None:
        await self._record(delivery)

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
        await self.remember(None)
        if self._setup.rpc is None:
            forget_folder(self._folder)
