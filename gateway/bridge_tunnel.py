"""The cloud end of one device's tunnel (``/v1/bridge/tunnel``, frames in domain/tunnel.py).

1. **Identity.** The cloud sends a fresh nonce; the device signs it with the key it paired
   (``device.paired`` holds the public key). An unknown, revoked or wrongly signed device
   is closed with 4401/4403 before anything else happens.
2. **Connections.** Each bridge kind the device can read and nobody connects (iMessage)
   gets its connection (one per device and kind, made on first offer, ``mode: bridge``); a
   connection a person removed stays removed. The kinds a person connects to run on the
   device (WhatsApp, Signal) are the device's connections of those kinds.
3. **Inbound.** Each ``event`` is checked (:func:`domain.devices.refusal`, and that the
   conversation is the device's), appended (dedupe keys as for every channel) and acked
   by its local sequence; an event refused for good is dead-lettered
   (``dlq.bridge-<device>.refused``) and the device drops it.
4. **Outbound.** The tunnel answers its connections' sends (``adapters/nats/bridge_relay``)
   by handing each command to the device and waiting for its ``result``.
5. **Presence.** ``device.state_changed`` online on hello, offline when the tunnel ends;
   the device's connections follow (``device_offline``). A newer tunnel of the same device
   replaces this one (4409); a revocation closes it (4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from typing import Any

import msgspec
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import WebSocket
from nats.aio.subscription import Subscription

from adapters.channels.media import fetch_media
from adapters.channels.registry import KINDS
from adapters.media.store import MediaStore
from adapters.nats import bridge_relay, pairing_codes
from adapters.nats.dead_letters import DeadLetter, DeadLetters
from adapters.nats.errors import ConcurrencyConflict
from adapters.postgres import tenancy
from domain import devices
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.errors import InvalidEvent
from gateway.context import GatewayContext
from gateway.sockets import Closed
from projections import connections_queries, devices_queries, inbox_queries

log = structlog.get_logger()

HELLO_TIMEOUT = 10.0
FILE_TIMEOUT = 120.0  # an attachment of up to 20 MiB, through the tunnel
COMMAND_TIMEOUT = 55.0  # a device that does not answer a send in this time: try again later
PAIRING_LAG = 5.0  # a device paired a moment ago may not be in the read model yet
# Why the cloud closes a tunnel when told to (bridge_relay.close_device's reasons).
_CLOSINGS = {
    "revoked": (t.CLOSE_REVOKED, "this device was revoked"),
    "replaced": (t.CLOSE_REPLACED, "the device opened a newer tunnel"),
    "reconnect": (t.CLOSE_RECONNECT, "the device's connections changed: open the tunnel again"),
}
# The kinds that run on a device only and that nobody connects (iMessage): the tunnel makes
# their connections when a device offers them. A kind its owner connects (Signal) is made by
# POST /v1/channels/{kind}/connect, and the device is welcomed with it.
BRIDGE_KINDS = tuple(
    kind for kind, entry in KINDS.items() if entry.runs_on == frozenset({"bridge"}) and entry.connect is None
)


class TunnelSession:
    def __init__(self, socket: WebSocket[Any, Any, Any], ctx: GatewayContext) -> None:
        self._socket = socket
        self._ctx = ctx
        self._send_lock = asyncio.Lock()
        # Commands waiting for their result and fetches for their file, by the id the device answers to.
        self._asked: dict[str, asyncio.Future[Any]] = {}
        self._connections: dict[str, str] = {}  # connection id -> kind
        self._by_kind: dict[str, str] = {}  # kind -> connection id
        self._conversations: dict[str, str] = {}  # conversation id -> connection id (this session)
        self._closing: asyncio.Future[Closed] = asyncio.get_running_loop().create_future()
        self._subscriptions: list[Subscription] = []
        self._assembler = t.Assembler()
        self._fetching: set[asyncio.Task[None]] = set()
        self.device: devices_queries.Device | None = None

    # --- the frames ---------------------------------------------------------------------

    async def send(self, frame: Any) -> None:
        async with self._send_lock:
            await self._socket.send_text(t.encode(frame))

    async def _receive(self, timeout: float) -> t.FromDevice:  # noqa: ASYNC109 - a silence bound
        try:
            async with asyncio.timeout(timeout):
                raw = await self._socket.receive_text()
        except TimeoutError:
            raise Closed(t.CLOSE_SILENT, f"nothing heard for {timeout:.0f}s") from None
        try:
            return t.from_device(raw)
        except msgspec.DecodeError as exc:
            raise Closed(t.CLOSE_BAD_FRAME, f"not a tunnel frame: {exc}") from None

    # --- 1. identity --------------------------------------------------------------------

    async def authenticate(self) -> t.Hello:
        nonce = secrets.token_bytes(devices.NONCE_BYTES)
        await self.send(t.Challenge(nonce=devices.encode_key(nonce), protocol=devices.PROTOCOL))
        hello = await self._receive(HELLO_TIMEOUT)
        if not isinstance(hello, t.Hello):
            raise Closed(t.CLOSE_UNAUTHENTICATED, "the first frame must be hello")
        device = await self._find(hello.tenant_id, hello.device_id)
        if device is None:
            raise Closed(t.CLOSE_UNAUTHENTICATED, "unknown device: pair it again (moltbot bridge pair)")
        if device.revoked_at is not None:
            raise Closed(t.CLOSE_REVOKED, "this device was revoked: pair it again (moltbot bridge pair)")
        try:
            key = Ed25519PublicKey.from_public_bytes(devices.decode_key(device.public_key))
            key.verify(devices.decode_key(hello.signature), devices.challenge(nonce, device.device_id))
        except (InvalidSignature, ValueError):
            raise Closed(t.CLOSE_UNAUTHENTICATED, "the signature does not prove this device's key") from None
        self.device = device
        return hello

    async def _find(self, tenant_id: str, device_id: str) -> devices_queries.Device | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PAIRING_LAG
        while True:
            try:
                async with self._ctx.tenant(tenant_id) as conn:
                    found = await devices_queries.device(conn, device_id)
            except ValueError:  # not a tenant id at all
                return None
            if found is not None or loop.time() >= deadline:
                return found
            await asyncio.sleep(0.25)

    # --- 2. connections -----------------------------------------------------------------

    async def open_connections(self, hello: t.Hello) -> list[str]:
        """Make or find the device's connections; the kinds made now (to backfill)."""
        device = self._device
        fresh: list[str] = []
        for kind in devices.kinds_offered(hello.capabilities, BRIDGE_KINDS):
            connection_id = devices.connection_id(device.device_id, kind)
            created = ev.new_event(
                ev.ConnectionCreated, tenant_id=device.tenant_id, aggregate_id=connection_id,
                actor=devices.actor(device.device_id),
                data=ev.ConnectionCreatedData(
                    channel=kind, display_name=f"{KINDS[kind].provider} on {device.name}", mode="bridge",
                    device_id=device.device_id,
                ),
            )  # fmt: skip
            try:
                await self._ctx.store.append(created, expected_seq=0)
                fresh.append(kind)
            except ConcurrencyConflict:
                pass  # made on an earlier hello
        if fresh:  # the read model must have them before they are looked up below
            last = await self._ctx.store.last_seq()
            await tenancy.wait_for_seq(
                self._ctx.pool, last, ("connections",), within=PAIRING_LAG, applied=self._ctx.applied
            )
        async with self._ctx.tenant(device.tenant_id) as conn:
            hosted = await connections_queries.channels(conn, device.tenant_id, device_id=device.device_id)
        for channel in hosted:  # a removed connection is not in this list: it stays removed
            self._connections[channel.connection_id] = channel.channel
            self._by_kind[channel.channel] = channel.connection_id
        return [kind for kind in fresh if kind in self._by_kind]

    @property
    def _device(self) -> devices_queries.Device:
        assert self.device is not None, "authenticate first"
        return self.device

    async def serve(self) -> None:
        """Answer sends for the device's connections, and close when told to."""
        nc = self._ctx.store.nc
        device_id = self._device.device_id
        # Any older tunnel of this device (on any gateway) closes first; this one listens after.
        await bridge_relay.close_device(nc, device_id, "replaced")
        self._subscriptions.append(await bridge_relay.on_close(nc, device_id, self._told_to_close))
        for connection_id, kind in self._connections.items():
            self._subscriptions.append(await bridge_relay.serve_sends(nc, kind, connection_id, self._relay))

    async def _told_to_close(self, reason: str) -> None:
        code, detail = _CLOSINGS.get(reason, _CLOSINGS["replaced"])
        if not self._closing.done():
            self._closing.set_result(Closed(code, detail))

    # --- 3. inbound ---------------------------------------------------------------------

    async def receive_loop(self) -> None:
        while True:
            frame = await self._receive(t.SILENCE_LIMIT)
            if isinstance(frame, t.Part):
                try:
                    whole = self._assembler.add(frame)
                except ValueError as exc:
                    raise Closed(t.CLOSE_BAD_FRAME, str(exc)) from None
                if whole is None:
                    continue
                frame = whole
            await self._handle(frame)

    async def _handle(self, frame: t.FromDevice) -> None:
        if isinstance(frame, t.Ping):
            await self.send(t.Pong())
        elif isinstance(frame, t.EventFrame):
            await self._store_event(frame)
        elif isinstance(frame, t.Result | t.File):
            asked = self._asked.pop(frame.id, None)
            if asked is not None and not asked.done():
                asked.set_result(frame)
        elif isinstance(frame, t.State):
            await self._record_state(frame)
        elif isinstance(frame, t.Code):
            await self._show_code(frame)
        else:
            raise Closed(t.CLOSE_BAD_FRAME, f"a {type(frame).__name__.lower()} frame after hello")

    async def _store_event(self, frame: t.EventFrame) -> None:
        device = self._device
        raw = bytes(frame.event)
        try:
            event = self._ctx.store.codec.decode(raw)
        except InvalidEvent as exc:
            await self._refuse(frame.seq, raw, f"not a canonical event: {exc}")
            return
        reason = devices.refusal(
            event, tenant_id=device.tenant_id, device_id=device.device_id, connections=self._connections
        ) or await self._foreign_conversation(event)
        if reason is not None:
            await self._refuse(frame.seq, raw, reason)
            return
        if isinstance(event, ev.ConversationCreated):
            self._conversations[event.aggregate_id] = event.data.connection_id
            with contextlib.suppress(ConcurrencyConflict):  # known already
                await self._ctx.store.append(event, expected_seq=0)
        else:
            await self._ctx.store.append(event)
        await self.send(t.Ack(seq=frame.seq))
        if isinstance(event, ev.MessageReceived) and event.data.attachments and self._ctx.media is not None:
            # In the background: the files come through this same receive loop.
            fetching = asyncio.create_task(self._bring_media(event, self._ctx.media))
            self._fetching.add(fetching)
            fetching.add_done_callback(self._fetching.discard)

    async def _bring_media(self, message: ev.MessageReceived, media: MediaStore) -> None:
        device = self._device
        try:
            actor = devices.actor(device.device_id)
            download = functools.partial(self._download, message.data.channel)
            await fetch_media(self._ctx.store, media, message, download, actor=actor)
        except Exception as exc:  # a file the Mac no longer has, a tunnel that closed: the text stays
            log.warning("bridge_media_failed", message_id=message.data.message_id, error=repr(exc))

    async def _download(self, kind: str, attachment: ev.Attachment) -> bytes:
        """An attachment's bytes, asked of the device (``fetch``, answered by ``file``)."""
        fetch_id = secrets.token_urlsafe(12)
        answer: asyncio.Future[t.File] = asyncio.get_running_loop().create_future()
        self._asked[fetch_id] = answer
        try:
            await self.send(t.Fetch(id=fetch_id, kind=kind, file_id=attachment.provider_file_id))
            async with asyncio.timeout(FILE_TIMEOUT):
                file = await answer
        finally:
            self._asked.pop(fetch_id, None)
        if file.data is None:
            raise FileNotFoundError(file.error or "the device has no such file")
        return file.data

    async def _foreign_conversation(self, event: ev.Event) -> str | None:
        """Why an event's conversation (or message) is not the device's, or None."""
        if isinstance(event, ev.ConversationCreated):
            return None
        conversation_id = event.aggregate_id
        if conversation_id not in self._conversations:
            async with self._ctx.tenant(event.tenant_id) as conn:
                found = await inbox_queries.conversation(conn, event.tenant_id, conversation_id)
            if found is None or found.connection_id not in self._connections:
                return f"the conversation {conversation_id} is not one of this device's"
            self._conversations[conversation_id] = found.connection_id
        message_id = getattr(getattr(event, "data", None), "message_id", None)
        if isinstance(event, ev.MessageReceived | ev.MessageSent) or message_id is None:
            return None
        await tenancy.wait_for_seq(
            self._ctx.pool,
            await self._ctx.store.last_seq(),
            ("inbox",),
            within=5.0,
            applied=self._ctx.applied,
        )
        async with self._ctx.tenant(event.tenant_id) as conn:
            owner = await inbox_queries.conversation_of_message(conn, message_id)
        if owner != conversation_id:
            return f"the message {message_id} is not in the conversation {conversation_id}"
        return None

    async def _refuse(self, seq: int, raw: bytes, reason: str) -> None:
        device = self._device
        log.warning("bridge_event_refused", device_id=device.device_id, seq=seq, reason=reason)
        letter = DeadLetter(
            "BRIDGE", seq, f"bridge.{device.device_id}", f"bridge-{device.device_id}", "refused", reason, raw
        )
        await DeadLetters(self._ctx.store.nc.jetstream(timeout=10)).publish(letter)
        await self.send(t.Refused(seq=seq, reason=reason))

    async def _show_code(self, frame: t.Code) -> None:
        """A channel's pairing code, to the owner's screens (LIVE only) if the connection is
        this device's own of that kind."""
        if self._connections.get(frame.code.connection_id) != frame.kind:
            log.warning("bridge_code_refused", device_id=self._device.device_id, kind=frame.kind)
            return
        await pairing_codes.publish(self._ctx.store.nc, self._device.tenant_id, frame.code)

    async def _record_state(self, frame: t.State) -> None:
        connection_id = self._by_kind.get(frame.kind)
        if connection_id is None:
            return  # a channel the device runs but the cloud does not know (or removed): nothing to show
        changed = self._connection_state(connection_id, frame.state, frame.code, frame.message, frame.action)
        await self._ctx.store.append(changed)

    def _connection_state(
        self, connection_id: str, state: ev.ConnectionState, code: str, message: str, action: str | None
    ) -> ev.ConnectionStateChanged:
        device = self._device
        return ev.new_event(
            ev.ConnectionStateChanged, tenant_id=device.tenant_id, aggregate_id=connection_id,
            actor=devices.actor(device.device_id),
            data=ev.ConnectionStateChangedData(state=state, code=code, message=message, action=action),
        )  # fmt: skip

    # --- 4. outbound --------------------------------------------------------------------

    async def _relay(self, payload: bytes) -> bytes:
        """A send for one of the device's connections: hand it over, wait for the result."""
        try:
            command = msgspec.json.decode(payload, type=SendMessage)
        except msgspec.DecodeError as exc:
            return t.encode(t.Result(id="?", outcome="rejected", code="malformed", reason=str(exc))).encode()
        waiting: asyncio.Future[t.Result] = asyncio.get_running_loop().create_future()
        self._asked[command.command_id] = waiting
        try:
            await self.send(t.Command(id=command.command_id, kind=command.channel, command=command))
            async with asyncio.timeout(COMMAND_TIMEOUT):
                result = await waiting
        except Exception as exc:  # the tunnel went away or the device is slow
            result = t.Result(
                id=command.command_id, outcome="deferred", reason=f"the device did not answer: {exc!r}"
            )
        finally:
            self._asked.pop(command.command_id, None)
        return t.encode(result).encode()

    # --- 5. presence --------------------------------------------------------------------

    async def presence(self, state: str, reason: str, hello: t.Hello | None = None) -> None:
        device = self._device
        data = ev.DeviceStateChangedData(
            state="online" if state == "online" else "offline", reason=reason,
            version=hello.version if hello else None, capabilities=hello.capabilities if hello else (),
        )  # fmt: skip
        changed = ev.new_event(
            ev.DeviceStateChanged, tenant_id=device.tenant_id, aggregate_id=device.device_id,
            actor=devices.actor(device.device_id), data=data,
        )  # fmt: skip
        await self._ctx.store.append(changed)

    async def went_offline(self, reason: str) -> None:
        """Record the device offline and its connections waiting for it. Not when a newer tunnel
        replaced this one (the device is online there), nor when revoked (the revocation says so)."""
        if reason == "replaced":
            return
        await self.presence("offline", reason)
        if reason == "revoked":
            return
        waiting = (
            f"{self._device.name} is offline: messages wait until the bridge is back (up to 15 minutes)."
        )
        states = [
            self._connection_state(connection_id, "degraded", "device_offline", waiting, "open_app")
            for connection_id in self._connections
        ]
        if states:
            await self._ctx.store.append_many(states)  # one round of appends, not one per connection

    async def run(self) -> None:
        hello = await self.authenticate()
        fresh = await self.open_connections(hello)
        await self.serve()
        await self.presence("online", "connected", hello)
        device = self._device
        await self.send(
            t.Welcome(
                device_id=device.device_id, tenant_id=device.tenant_id, fresh=tuple(fresh),
                connections={kind: cid for cid, kind in self._connections.items()},
            )
        )  # fmt: skip
        log.info("bridge_online", device_id=device.device_id, connections=len(self._connections))
        receiving = asyncio.ensure_future(self.receive_loop())
        told = asyncio.ensure_future(self._until_told_to_close())
        try:
            done, _ = await asyncio.wait((receiving, told), return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()  # raises why the tunnel ends
        finally:
            for task in (receiving, told):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _until_told_to_close(self) -> None:
        raise await self._closing

    async def aclose(self, reason: str) -> None:
        for fetching in list(self._fetching):
            fetching.cancel()
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        for waiting in self._asked.values():
            if not waiting.done():
                waiting.set_exception(ConnectionError("the tunnel closed"))
        if self.device is not None:
            log.info("bridge_offline", device_id=self.device.device_id, reason=reason)
            with contextlib.suppress(Exception):
                await self.went_offline(reason)
