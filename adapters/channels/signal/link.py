"""One Signal connection's life on the device: the state machine over signal-cli's JSON-RPC.

One call of :meth:`SignalLink.link_once` is one conversation with signal-cli, for
:func:`adapters.channels.health.stay_linked`. It opens the daemon (``daemon.py``), asks its
version and accounts, then:

- with the account (the one linked before, or ``MOLTBOT_SIGNAL_ACCOUNT``): says ``connected``
  and hands every ``receive`` notification of that account on, as canonical events, until
  the daemon goes away; every so often it checks the daemon still has the account (a device
  removed on the phone is dropped by signal-cli without a word);
- without one: links this computer as a new device. ``startLink`` gives a
  ``sgnl://linkdevice?…`` address, shown as a QR code (LIVE only); ``finishLink`` waits for
  the phone to scan it. Linked, it returns True: the next call finds the account.

It ends with :class:`~adapters.channels.health.Refused` (``action_required``) when a person
must act (no signal-cli, signal-cli failing at start, the device unlinked, codes not
scanned), with :class:`~adapters.channels.health.Unreachable` (retried with backoff) when
signal-cli or Signal cannot be reached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, Protocol

import msgspec

from adapters.channels.health import Backoff, Refused, Unreachable
from adapters.channels.media import MAX_MEDIA_BYTES
from adapters.channels.signal import daemon, envelopes, normalize, outbound
from adapters.channels.signal import states as s
from adapters.channels.signal.config import SignalSetup
from adapters.channels.signal.rpc import Closed, RpcError, SignalRpc
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.connectors import PairingCode

LINK_WINDOW = 120.0  # seconds a QR code is shown before a new one is asked for
LINK_ATTEMPTS = 3  # codes shown in a row without a scan before the link stops asking
ACCOUNT_CHECK_EVERY = 60.0  # seconds between looks that the daemon still has the account
NOT_ONLINE_RETRY = 30.0  # a send waits this long when Signal is not connected
QUOTABLE_KEPT = 512  # received messages a reply can still quote
METHOD_NOT_FOUND = -32601
DEVICE_NAME = "Moltbot"  # how the phone lists this linked device

OpenDaemon = Callable[
    [SignalSetup, Path, Mapping[str, str]], contextlib.AbstractAsyncContextManager[SignalRpc]
]


class Outlet(Protocol):
    """Where a link's findings go."""

    async def show_state(self, shown: ev.ConnectionStateChangedData) -> None: ...

    async def show_code(self, code: PairingCode) -> None:
        """A QR code to show its owner (kind "none": nothing to show any more)."""
        ...

    async def remember(self, account: str | None) -> None:
        """The linked account to use next time (None: forget it)."""
        ...

    async def take(self, delivery: normalize.Delivery) -> None:
        """Store a delivery's events."""
        ...


class _Version(msgspec.Struct, frozen=True):
    version: str = "?"


class _Account(msgspec.Struct, frozen=True):
    number: str


class _Started(msgspec.Struct, frozen=True, rename="camel"):
    device_link_uri: str


class _Finished(msgspec.Struct, frozen=True):
    number: str | None = None


class _File(msgspec.Struct, frozen=True):
    data: str


def _refused(happening: s.Happening) -> Refused:
    shown = s.state_for(happening)
    return Refused(shown.code, shown.message, action=shown.action)


def _unreachable(detail: str) -> Unreachable:
    shown = s.state_for(s.Unreachable(detail))
    return Unreachable(detail, code=shown.code, message=shown.message)


class SignalLink:
    def __init__(
        self,
        outlet: Outlet,
        *,
        setup: SignalSetup,
        folder: Path,
        environ: Mapping[str, str],
        tenant_id: str,
        connection_id: str,
        account: str | None,
        backoff: Backoff,
        log: Any,
        actor: str | None = None,
        link_window: float = LINK_WINDOW,
        check_every: float = ACCOUNT_CHECK_EVERY,
        open_daemon: OpenDaemon = daemon.open_daemon,
    ) -> None:
        self._outlet = outlet
        self._setup = setup
        self._folder = folder
        self._environ = environ
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self.account = setup.account or account  # the daemon's account to use (None: link one)
        self._backoff = backoff
        self._log = log
        self._actor = actor
        self._link_window = link_window
        self._check_every = check_every
        self._open = open_daemon
        self.rpc: SignalRpc | None = None
        self.online = False
        self._several_accounts = True  # the daemon keeps several accounts: requests name theirs
        self._answered = False  # signal-cli answered this time (else it failed as it started)
        self._unscanned = 0
        self._troubled = False  # a send put the connection in a passing state (rate limited…)
        self._heard: asyncio.Queue[bytes] = asyncio.Queue()
        self._quotable: OrderedDict[str, normalize.Quotable] = OrderedDict()

    @property
    def _started_here(self) -> bool:
        return self._setup.rpc is None

    # --- one life ----------------------------------------------------------------------------

    async def link_once(self) -> bool:
        """One conversation with signal-cli (see the module's docstring for how it ends)."""
        self._answered = False
        try:
            async with self._daemon() as rpc:
                self.rpc = rpc
                try:
                    async with asyncio.TaskGroup() as tasks:
                        pumping = tasks.create_task(rpc.pump(self._hear))
                        consuming = tasks.create_task(self._consume(rpc))
                        at_once = await self._flow(rpc)
                        pumping.cancel()
                        consuming.cancel()
                    return at_once
                except BaseExceptionGroup as group:
                    raise self._why(group) from None
        finally:
            self.rpc = None
            self.online = False

    @contextlib.asynccontextmanager
    async def _daemon(self) -> AsyncIterator[SignalRpc]:
        try:
            async with self._open(self._setup, self._folder, self._environ) as rpc:
                yield rpc
        except daemon.CliMissing as missing:
            raise _refused(s.CliMissing(missing.configured)) from None
        except daemon.Unreachable as exc:
            raise _unreachable(str(exc)) from None

    def _why(self, group: BaseExceptionGroup[Any]) -> BaseException:
        """The one exception a session ends with, of the several its tasks may raise."""
        found = _flat(group)
        for wanted in (Refused, Unreachable):
            for exc in found:
                if isinstance(exc, wanted):
                    return exc
        closed = next((exc for exc in found if isinstance(exc, Closed)), None)
        if closed is not None and self._started_here and not self._answered:
            detail = daemon.log_tail(self._folder) or str(closed)
            return _refused(s.CliFailed(detail))
        if closed is not None:
            return _unreachable(f"signal-cli stopped: {closed}")
        first = next((exc for exc in found if isinstance(exc, Exception)), None)
        if first is None:
            return group
        if isinstance(first, TimeoutError):
            return _unreachable("signal-cli did not answer in time")
        self._log.error("signal_session_failed", error=repr(first))
        return _unreachable(f"signal-cli answered what the bridge did not expect: {first!r}"[:300])

    async def _flow(self, rpc: SignalRpc) -> bool:
        version = msgspec.json.decode(await rpc.request("version"), type=_Version)
        self._answered = True
        self._log.info("signal_cli_answered", version=version.version)
        accounts = await self._accounts(rpc)
        self._several_accounts = accounts is not None
        if accounts is None:  # a daemon of one account (signal-cli -a … daemon): that one
            await self._connected(rpc, check=False)
        if self.account is not None:
            if self.account in (accounts or ()):
                await self._connected(rpc, check=True)
            raise await self._account_gone()
        return await self._link(rpc)

    async def _accounts(self, rpc: SignalRpc) -> list[str] | None:
        """The daemon's accounts; None for a daemon of one account (it has no listAccounts)."""
        try:
            raw = await rpc.request("listAccounts")
        except RpcError as exc:
            if exc.code == METHOD_NOT_FOUND:
                return None
            raise
        return [account.number for account in msgspec.json.decode(raw, type=list[_Account])]

    # --- linking ----------------------------------------------------------------------------

    async def _link(self, rpc: SignalRpc) -> bool:
        """Show QR codes until the phone scans one (True: start over, with the account) or
        :data:`LINK_ATTEMPTS` went unscanned."""
        while True:
            try:
                started = msgspec.json.decode(await rpc.request("startLink"), type=_Started)
            except RpcError as exc:  # no network (-3), or Signal's servers slow to answer (-1)
                raise _unreachable(f"Signal did not give a code to link with: {exc.message}") from None
            expires_at = datetime.now(UTC) + timedelta(seconds=self._link_window)
            await self._outlet.show_code(
                PairingCode(
                    connection_id=self.connection_id,
                    kind="qr",
                    code=started.device_link_uri,
                    expires_at=expires_at,
                )
            )
            await self._outlet.show_state(s.state_for(s.LinkShown()))
            try:
                params = {"deviceLinkUri": started.device_link_uri, "deviceName": DEVICE_NAME}
                raw = await rpc.request("finishLink", params, within=self._link_window)
            except (TimeoutError, RpcError) as exc:
                await self._hide_code()
                if isinstance(exc, RpcError) and exc.code == outbound.IO_ERROR:
                    raise _unreachable(f"linking failed: {exc.message}") from None
                self._unscanned += 1
                self._log.info("signal_link_unscanned", attempts=self._unscanned, error=str(exc)[:200])
                if self._unscanned >= LINK_ATTEMPTS:
                    self._unscanned = 0
                    raise _refused(s.LinkExpired()) from None
                continue
            await self._hide_code()
            finished = msgspec.json.decode(raw, type=_Finished)
            self._unscanned = 0
            self.account = finished.number
            await self._outlet.remember(finished.number)
            self._log.info("signal_linked")
            return True

    async def _hide_code(self) -> None:
        with contextlib.suppress(Exception):
            await self._outlet.show_code(PairingCode(connection_id=self.connection_id, kind="none"))

    async def _account_gone(self) -> Refused:
        """The daemon lacks the account: the configured one is a setting to fix; a linked one
        was removed (on the phone, or by Signal) and is forgotten, to be linked anew."""
        if self._setup.account is not None:
            return _refused(s.Unregistered(self._setup.account))
        self.account = None
        await self._outlet.remember(None)
        return _refused(s.Unregistered())

    # --- connected ---------------------------------------------------------------------------

    async def _connected(self, rpc: SignalRpc, *, check: bool) -> NoReturn:
        """Say so, then watch that the daemon keeps the account, until the session ends."""
        self.online = True
        self._backoff.reset()
        await self._outlet.show_state(s.state_for(s.Connected(self.account)))
        while True:
            await asyncio.sleep(self._check_every)
            if not check:
                continue
            accounts = await self._accounts(rpc)
            if accounts is not None and self.account not in accounts:
                self.online = False
                self._log.warning("signal_account_gone")
                raise await self._account_gone()

    async def _hear(self, method: str, params: bytes) -> None:
        """The pump's handler: it must not wait for the daemon (it is the one reading it)."""
        if method == "receive":
            self._heard.put_nowait(params)

    async def _consume(self, rpc: SignalRpc) -> None:
        while True:
            params = await self._heard.get()
            try:
                received = envelopes.receive(params)
            except msgspec.DecodeError as exc:  # one unreadable notification must not stop the rest
                self._log.error("signal_notification_unreadable", error=str(exc)[:200])
                continue
            if received.account is not None and self.account is None and not self._several_accounts:
                self.account = received.account  # a daemon of one account names it here
            if self.account is None or (received.account is not None and received.account != self.account):
                continue  # another account of the daemon, or nothing linked yet
            if received.exception is not None:
                self._log.warning("signal_receive_failed", kind=received.exception.type)
                continue
            long_text = await self._long_text(rpc, received)
            try:
                delivery = normalize.delivery(
                    received, tenant_id=self.tenant_id, connection_id=self.connection_id,
                    account=self.account, actor=self._actor, long_text=long_text,
                )  # fmt: skip
            except Exception as exc:  # one unreadable message must not stop the connection
                self._log.error("signal_message_unreadable", error=repr(exc))
                continue
            if delivery.quotable is not None:
                self._quotable[delivery.quotable.message_id] = delivery.quotable
                while len(self._quotable) > QUOTABLE_KEPT:
                    self._quotable.popitem(last=False)
            await self._outlet.take(delivery)

    async def _long_text(self, rpc: SignalRpc, received: envelopes.Receive) -> str | None:
        """The whole text of a long message (Signal sends it as an attachment)."""
        file_id = normalize.long_text_id(received)
        if file_id is None:
            return None
        try:
            return (await self._file(rpc, file_id)).decode("utf-8", errors="replace")
        except (RpcError, OSError) as exc:
            self._log.warning("signal_long_text_unreadable", error=str(exc)[:200])
            return None

    # --- out ---------------------------------------------------------------------------------

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._several_accounts and self.account is not None:
            return {**params, "account": self.account}
        return params

    async def send(self, command: SendMessage) -> t.Result:
        """Send a message through the linked account: delivered, or why not."""
        rpc = self.rpc
        if rpc is None or not self.online:
            return t.Result(
                id=command.command_id, outcome="deferred", reason="Signal is not connected right now",
                retry_after=NOT_ONLINE_RETRY,
            )  # fmt: skip
        quote = self._quotable.get(command.reply_to_message_id or "")
        account = self.account if self._several_accounts else None
        try:
            answer = await rpc.request("send", outbound.send_params(command, account, quote))
        except RpcError as exc:
            folder = str(self._folder) if self._started_here else None
            outcome = outbound.refused(command, exc, account=self.account, folder=folder)
        except (OSError, TimeoutError) as exc:  # signal-cli went away (Closed) or is slow
            return t.Result(
                id=command.command_id, outcome="deferred", reason=f"signal-cli did not answer: {exc!r}",
                retry_after=NOT_ONLINE_RETRY,
            )  # fmt: skip
        else:
            outcome = outbound.delivered(command, answer)
        if outcome.happening is not None:
            self._troubled = True
            await self._outlet.show_state(s.state_for(outcome.happening))
        elif self._troubled and outcome.result.outcome == "delivered":
            self._troubled = False
            await self._outlet.show_state(s.state_for(s.Connected(self.account)))
        return outcome.result

    async def read_file(self, file_id: str) -> bytes:
        """A received attachment's bytes, by the daemon's attachment id."""
        rpc = self.rpc
        if rpc is None:
            raise FileNotFoundError("signal-cli is not running on this device right now")
        try:
            return await self._file(rpc, file_id)
        except RpcError as exc:
            raise FileNotFoundError(f"signal-cli has no attachment {file_id}: {exc.message}") from None

    async def _file(self, rpc: SignalRpc, file_id: str) -> bytes:
        raw = await rpc.request("getAttachment", self._params({"id": file_id}), within=120.0)
        data = base64.b64decode(msgspec.json.decode(raw, type=_File).data)
        if len(data) > MAX_MEDIA_BYTES:
            raise OSError(
                f"the attachment is {len(data)} bytes; the cloud takes files up to {MAX_MEDIA_BYTES}"
            )
        return data


def _flat(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_flat(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
