"""The bridge program's main loop: channels read into the local outbox all the time; one
tunnel to the cloud, reopened with backoff and jitter, carries the outbox out and the
commands in.

On every (re)connect: prove the key (sign the nonce), resend every event not acked yet
(oldest first), and report each channel's last state again. A command is answered from the
``executed`` table when it was carried out before, so a redelivery is never sent twice.
A revocation (close code 4403) ends the program: the identity is gone for good.

Channels the owner chooses to run here (WhatsApp: ``on_demand``) start when the cloud's
``welcome`` names a connection of their kind, and stop (forgetting their session) when it
no longer does; the cloud closes the tunnel with 4410 when that changes, and the bridge
opens it again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import structlog
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection

from adapters.bridge.channels import DeviceChannel
from adapters.bridge.identity import Pairing, sign_challenge
from adapters.bridge.local_store import LocalStore
from domain import devices
from domain import tunnel as t

log = structlog.get_logger()

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
HEALTHY_AFTER = 60.0  # a tunnel up this long resets the backoff
SEND_BATCH = 200


OnDemand = Callable[[str, Callable[[t.Code], Awaitable[None]]], DeviceChannel]
"""Makes a channel run by choice for its connection id, given how to show pairing codes."""


class _Reconnect(Exception):
    """The cloud asked for the tunnel to be opened again at once (the connections changed)."""


class Revoked(Exception):
    """The cloud revoked this device: pair again to use the bridge."""


def tunnel_url(gateway: str) -> str:
    base = gateway.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/v1/bridge/tunnel"
    return "ws://" + base.removeprefix("http://") + "/v1/bridge/tunnel"


class Bridge:
    def __init__(
        self,
        pairing: Pairing,
        key: Ed25519PrivateKey,
        store: LocalStore,
        channels: list[DeviceChannel],
        *,
        version: str,
        platform: str,
        on_demand: Mapping[str, OnDemand] | None = None,
    ) -> None:
        self._pairing = pairing
        self._key = key
        self._store = store
        self._channels = {channel.kind: channel for channel in channels}
        self._on_demand = dict(on_demand or {})
        self._chosen: dict[str, tuple[str, asyncio.Task[None]]] = {}  # kind -> (connection, its task)
        self._tasks: asyncio.TaskGroup | None = None
        self._version = version
        self._platform = platform
        self._queued = asyncio.Event()  # the outbox has something new
        self._states: dict[str, t.State] = {}
        self._socket: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self.connected = asyncio.Event()

    def nudge(self) -> None:
        self._queued.set()

    async def report(self, state: t.State) -> None:
        if self._states.get(state.kind) == state:
            return
        self._states[state.kind] = state
        with contextlib.suppress(Exception):  # not connected: it is sent on the next hello
            await self._send(state)

    async def run(self) -> None:
        """Read the channels and keep the tunnel open until cancelled or revoked."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for channel in self._channels.values():
                tasks.create_task(channel.produce(self._store, self.nudge, self.report))
            tasks.create_task(self._keep_tunnel())

    async def _run_chosen(self, welcome: t.Welcome) -> None:
        """Start the channels run by choice that the cloud has a connection for; stop (and
        forget) those it no longer has."""
        assert self._tasks is not None
        for kind, (connection_id, task) in list(self._chosen.items()):
            if welcome.connections.get(kind) != connection_id:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                channel = self._channels.pop(kind, None)
                forget = getattr(channel, "forget", None)
                if forget is not None:
                    await forget()
                del self._chosen[kind]
                log.info("bridge_channel_removed", kind=kind, connection_id=connection_id)
        for kind, make in self._on_demand.items():
            wanted = welcome.connections.get(kind)
            if wanted is None or kind in self._chosen:
                continue
            channel = make(wanted, self._send)
            self._channels[kind] = channel
            task = self._tasks.create_task(channel.produce(self._store, self.nudge, self.report))
            self._chosen[kind] = (wanted, task)
            log.info("bridge_channel_started", kind=kind, connection_id=wanted)

    async def _keep_tunnel(self) -> None:
        delay = BACKOFF_FIRST
        loop = asyncio.get_running_loop()
        while True:
            opened = loop.time()
            try:
                await self._tunnel_once()
            except Revoked:
                raise
            except _Reconnect:
                log.info("bridge_reconnecting_now")
                continue
            except Exception as exc:  # the network, the gateway restarting, a refused hello
                log.warning("bridge_tunnel_down", error=repr(exc))
            self.connected.clear()
            if loop.time() - opened > HEALTHY_AFTER:
                delay = BACKOFF_FIRST
            wait = delay * random.uniform(0.5, 1.5)  # jitter: devices do not all come back at once
            log.info("bridge_reconnecting", in_seconds=round(wait, 1))
            await asyncio.sleep(wait)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _tunnel_once(self) -> None:
        url = tunnel_url(self._pairing.gateway)
        async with websockets.connect(url, max_size=2**24, ping_interval=None) as socket:
            try:
                await self._handshake(socket)
                self._socket = socket
                self.connected.set()
                log.info("bridge_connected", gateway=self._pairing.gateway)
                for state in list(self._states.values()):
                    await self._send(state)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._heartbeat())
                    tasks.create_task(self._ship_outbox())
                    tasks.create_task(self._receive(socket))
            except* websockets.ConnectionClosed as closed:
                error = closed.exceptions[0]
                assert isinstance(error, websockets.ConnectionClosed)
                received = error.rcvd
                if received is not None and received.code == t.CLOSE_REVOKED:
                    raise Revoked(received.reason) from None
                if received is not None and received.code == t.CLOSE_RECONNECT:
                    raise _Reconnect(received.reason) from None
                why = f"{received.code} {received.reason}" if received is not None else "no close frame"
                raise ConnectionError(f"tunnel closed: {why}") from None
            finally:
                self._socket = None

    async def _handshake(self, socket: ClientConnection) -> None:
        challenge = t.to_device(await asyncio.wait_for(socket.recv(), 10))
        if not isinstance(challenge, t.Challenge):
            raise ConnectionError("the cloud did not start with a challenge")
        nonce = devices.decode_key(challenge.nonce)
        hostable = tuple(c for kind in self._on_demand for c in (f"{kind}.read", f"{kind}.send"))
        capabilities = tuple(
            dict.fromkeys(
                (*(c for channel in self._channels.values() for c in channel.capabilities), *hostable)
            )
        )
        hello = t.Hello(
            tenant_id=self._pairing.tenant_id, device_id=self._pairing.device_id,
            signature=sign_challenge(self._key, nonce, self._pairing.device_id),
            version=self._version, platform=self._platform, capabilities=capabilities,
        )  # fmt: skip
        await socket.send(t.encode(hello))
        welcome = t.to_device(await asyncio.wait_for(socket.recv(), 30))
        if not isinstance(welcome, t.Welcome):
            raise ConnectionError(f"expected welcome, got {type(welcome).__name__}")
        await self._run_chosen(welcome)

    async def _send(self, frame: Any) -> None:
        await self._send_raw(msgspec.json.encode(frame))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(t.HEARTBEAT_SECONDS)
            await self._send(t.Ping())

    async def _ship_outbox(self) -> None:
        """Send every queued event once per tunnel, oldest first (the cloud acks them)."""
        sent = 0
        while True:
            self._queued.clear()
            for seq, event in await self._store.pending(after=sent, limit=SEND_BATCH):
                await self._send_raw(b'{"op":"event","seq":%d,"event":%s}' % (seq, event))
                sent = seq
            if not self._queued.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), 1.0)

    async def _send_raw(self, frame: bytes) -> None:
        """One frame's JSON; in parts when the gateway would not read it whole."""
        socket = self._socket
        if socket is None:
            raise ConnectionError("not connected")
        async with self._send_lock:  # a frame's parts go together
            for message in t.split(frame, secrets.token_urlsafe(8)):
                await socket.send(message)

    async def _receive(self, socket: ClientConnection) -> None:
        async for raw in socket:
            frame = t.to_device(raw)
            if isinstance(frame, t.Ack):
                await self._store.acked(frame.seq)
            elif isinstance(frame, t.Refused):
                log.warning("bridge_event_refused", seq=frame.seq, reason=frame.reason)
                await self._store.dropped(frame.seq)
            elif isinstance(frame, t.Command):
                asyncio.create_task(self._execute(frame))  # noqa: RUF006 - answered through the socket
            elif isinstance(frame, t.Fetch):
                asyncio.create_task(self._send_file(frame))  # noqa: RUF006 - answered through the socket
        raise ConnectionError("the cloud closed the tunnel")

    async def _execute(self, frame: t.Command) -> None:
        result = await self._store.executed(frame.id)
        if result is None:
            channel = self._channels.get(frame.kind)
            if channel is None:
                result = t.Result(
                    id=frame.id, outcome="rejected", code="unsupported", reason=f"no {frame.kind} here"
                )
            else:
                result = await channel.execute(frame.command)
            if result.outcome != "deferred":
                await self._store.remember(result)
        with contextlib.suppress(Exception):  # the tunnel dropped: the command comes again
            await self._send(result)

    async def _send_file(self, frame: t.Fetch) -> None:
        channel = self._channels.get(frame.kind)
        try:
            if channel is None:
                raise FileNotFoundError(f"no {frame.kind} channel here")
            answer = t.File(id=frame.id, data=await channel.read_file(frame.file_id))
        except OSError as exc:  # gone from the Mac (iCloud "optimize storage"), unreadable, too big
            answer = t.File(id=frame.id, error=str(exc))
        with contextlib.suppress(Exception):  # the tunnel dropped: the cloud asks again later
            await self._send(answer)


def bridge_data_dir(given: str | None) -> Path:
    return Path(given).expanduser() if given else Path.home() / ".moltbot-bridge"


def on_revoked(data_dir: Path, forget: Callable[[Path], None]) -> str:
    forget(data_dir)
    return (
        "This device was revoked in the inbox: the bridge stopped and forgot its key."
        " To use it again, make a new pairing code and run: moltbot bridge pair CODE --gateway URL"
    )
