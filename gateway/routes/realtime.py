"""Realtime delivery of the caller's tenant's events: Server-Sent Events and WebSocket.

Both start at an EVENTS stream sequence — SSE ``?since=`` or ``Last-Event-ID`` (the
last one seen), WebSocket ``{"op":"subscribe","since":N}`` — and carry each event with
its sequence, so a client that drops resumes exactly where it was.

WebSocket protocol (JSON text frames):
- client: ``{"op":"subscribe","since":N,"topics":["message.*"],"token":"…","batch":false}``
  (the token travels in this first message, never in the URL); ``{"op":"ping"}``
- server: ``{"op":"subscribed","since":N}``, ``{"op":"event","seq":N,"event":{…}}`` — or, with
  ``"batch": true``, ``{"op":"events","events":[{"seq":N,"event":{…}},…]}``: the events the log
  delivered together (up to BATCH_EVENTS, in order), one frame for them all,
  ``{"op":"live","type":"agent.delta","data":{"run_id","conversation_id","index","delta"}}``
  (an agent's reply as it is written; live only, not replayed),
  ``{"op":"live","type":"channel.qr","data":{"connection_id","kind","code","expires_at"}}``
  (a channel's pairing code while it is shown: to the inbox's owner and admins only),
  ``{"op":"pong"}``, ``{"op":"heartbeat"}``, ``{"op":"error","error":…,"detail":…}``
A client that does not read for SEND_TIMEOUT seconds is closed with code 4008 and a reason.

An open stream reads its caller's standing again every RECHECK_SECONDS: once the session
has ended or the membership is gone, the SSE stream ends and the socket closes with 4401.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, WebSocket, get, websocket
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Stream

from domain.connectors import qr_filter
from domain.ports import StoredRecord
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.feed import Signal, agent_deltas, event_type, live_signals, tenant_feed, type_patterns
from gateway.limits import client_ip
from gateway.sockets import Closed, Outbox, closing_with_reason, error_frame

HEARTBEAT_SECONDS = 15.0
AGENT_DELTA = "agent.delta"  # a piece of an agent's reply while it is written (live, no seq)
CHANNEL_QR = "channel.qr"  # a channel's pairing code (domain.connectors.PairingCode; live, no seq)
SEND_TIMEOUT = 10.0
FAREWELL_TIMEOUT = 2.0  # for the closing frames to a client being dropped
AUTH_TIMEOUT = 10.0
TOO_MANY_STREAMS = "Too many event streams are open for your inbox or address; close one first."
RECHECK_SECONDS = 15.0


class StillAllowed:
    """Whether the caller of an open stream may still read it: its session going and its
    membership there, read again at most every RECHECK_SECONDS."""

    def __init__(self, ctx: GatewayContext, who: Caller) -> None:
        self._ctx, self._who = ctx, who
        self._next = asyncio.get_running_loop().time() + RECHECK_SECONDS

    async def __call__(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now < self._next:
            return True
        self._next = now + RECHECK_SECONDS
        try:
            await self._ctx.standing(self._who)
        except ApiError:
            return False
        return True


def _stream_slots(who: Caller, ip: str) -> list[tuple[str, str]]:
    """The caps an open stream counts against: its tenant's and its address's."""
    return [("streams_per_tenant", who.tenant_id), ("streams_per_ip", ip)]


@get("/events")
async def events(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    who: Who,
    since: Annotated[int | None, Parameter(ge=1, description="first EVENTS sequence to send")] = None,
    types: Annotated[str | None, Parameter(description="comma-separated types, e.g. message.*")] = None,
) -> Stream:
    last_event_id = request.headers.get("last-event-id")
    if since is None and last_event_id:
        if not last_event_id.isdigit():
            raise ApiError(400, "invalid_request", "Last-Event-ID must be a sequence number.")
        since = int(last_event_id) + 1
    if since is None:
        since = await ctx.store.last_seq() + 1  # only what happens from now on
    patterns = type_patterns(types.split(",") if types else None, "types")
    slots = _stream_slots(who, client_ip(request, ctx.trusted_proxies))
    ctx.limiter.ensure_room(slots, TOO_MANY_STREAMS)
    feed = tenant_feed(ctx.store, who.tenant_id, since, patterns, heartbeat=HEARTBEAT_SECONDS)

    allowed = StillAllowed(ctx, who)

    async def logged() -> AsyncIterator[bytes]:
        async for batch in feed:
            if not await allowed():
                return  # signed out or removed: the client's reconnect gets the 401
            yield KEEP_ALIVE if batch is None else sse_frames(batch)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async with ctx.limiter.hold(slots, TOO_MANY_STREAMS):
                async for chunk in merged():
                    yield chunk
        except ApiError:  # the last slot went to another stream since the check: end this one
            return

    async def merged() -> AsyncIterator[bytes]:
        subjects = _live_subjects(who, patterns)
        if not subjects:
            async for chunk in logged():
                yield chunk
            return
        # Log events and live signals, interleaved as they come; signals carry no id,
        # so Last-Event-ID stays the last logged event.
        together: asyncio.Queue[bytes | None] = asyncio.Queue(64)

        async def pump_log() -> None:
            async for chunk in logged():
                await together.put(chunk)
            await together.put(None)  # the log's stream ended (the caller lost access): end both

        async def pump_deltas(live: asyncio.Queue[Signal]) -> None:
            while True:
                msg = await live.get()
                await together.put(b"event: %s\ndata: %s\n\n" % (_live_type(msg).encode(), msg.data))

        async with live_signals(ctx.store, *subjects) as live:
            pumps = [asyncio.create_task(pump_log()), asyncio.create_task(pump_deltas(live))]
            try:
                while (coming := await together.get()) is not None:
                    yield coming
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)

    return Stream(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


KEEP_ALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse_frames(batch: list[StoredRecord]) -> bytes:
    """Stored events as Server-Sent Events, one write for the batch: each its sequence as
    the id, its type (the subject's last token) as the event name and its stored JSON (one
    line: JSON escapes line breaks) as the data — the bytes as the log holds them."""
    return b"".join(
        b"id: %d\nevent: %s\ndata: %s\n\n" % (r.seq, event_type(r).encode(), r.data) for r in batch
    )


class Subscribe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    op: str
    since: int | None = None
    topics: list[str] | None = None
    token: str | None = None
    batch: bool = False  # several events per frame ({"op":"events"}) instead of one each


async def _subscription(socket: WebSocket[Any, Any, Any], ctx: GatewayContext) -> tuple[Caller, Subscribe]:
    try:
        async with asyncio.timeout(AUTH_TIMEOUT):
            raw = await socket.receive_text()
        request = msgspec.json.decode(raw, type=Subscribe)
    except TimeoutError:
        raise Closed(4401, 'send {"op":"subscribe",…} first') from None
    except msgspec.ValidationError as exc:
        raise Closed(4400, f"invalid subscribe message: {exc}") from None
    except msgspec.DecodeError:
        raise Closed(4400, "messages are JSON text") from None
    if request.op != "subscribe":
        raise Closed(4400, 'the first message must be {"op":"subscribe",…}')
    token = request.token  # not in the URL: it would end up in logs and history
    if not token:
        raise Closed(4401, 'send an access token: "token" in the subscribe message')
    try:
        who = await ctx.standing(await ctx.verify_access(token))
    except ApiError as exc:
        # 1013 "try again later": the token could not be checked (identity provider down).
        raise Closed(1013 if exc.status == 503 else 4401, exc.detail) from None
    if request.since is not None and request.since < 1:
        raise Closed(4400, "since is an EVENTS sequence, 1 or more")
    return who, request


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any], ctx: Ctx) -> None:
    await socket.accept()
    async with closing_with_reason(socket, FAREWELL_TIMEOUT):
        who, request = await _subscription(socket, ctx)
        try:
            patterns = type_patterns(request.topics, "topics")
        except ApiError as exc:
            raise Closed(4400, exc.detail) from None
        since = request.since or await ctx.store.last_seq() + 1
        try:
            slots = _stream_slots(who, client_ip(socket, ctx.trusted_proxies))
            async with ctx.limiter.hold(slots, TOO_MANY_STREAMS):
                await _deliver(socket, ctx, who, since, patterns, batched=request.batch)
        except ApiError as exc:
            raise Closed(4429, exc.detail) from None


async def _deliver(
    socket: WebSocket[Any, Any, Any],
    ctx: GatewayContext,
    who: Caller,
    since: int,
    patterns: list[str] | None,
    *,
    batched: bool,
) -> None:
    outbox = Outbox(socket, SEND_TIMEOUT)
    await outbox.send(json.dumps({"op": "subscribed", "since": since}))
    feed = tenant_feed(ctx.store, who.tenant_id, since, patterns, heartbeat=HEARTBEAT_SECONDS)
    subjects = _live_subjects(who, patterns)
    async with live_signals(ctx.store, *subjects) as live, asyncio.TaskGroup() as tasks:
        tasks.create_task(_answer_pings(socket, outbox))
        if subjects:
            tasks.create_task(_forward_live(live, outbox))
        allowed = StillAllowed(ctx, who)
        async for batch in feed:
            if not await allowed():
                raise Closed(4401, "this session has ended or you are no longer a member of the inbox")
            if batch is None:
                await outbox.send('{"op":"heartbeat"}')
            else:
                await outbox.send_many(ws_frames(batch, batched=batched))


BATCH_EVENTS = 500  # events in one {"op":"events"} frame at most


def ws_frames(batch: list[StoredRecord], *, batched: bool) -> list[bytes]:
    """Stored events as frames, their stored JSON as it is: one frame each, or one frame per
    BATCH_EVENTS of them."""
    if not batched:
        return [b'{"op":"event","seq":%d,"event":%s}' % (r.seq, r.data) for r in batch]
    return [
        b'{"op":"events","events":[%s]}'
        % b",".join(b'{"seq":%d,"event":%s}' % (r.seq, r.data) for r in batch[start : start + BATCH_EVENTS])
        for start in range(0, len(batch), BATCH_EVENTS)
    ]


def _wants(signal: str, patterns: list[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(signal, p) for p in patterns)


def _live_subjects(who: Caller, patterns: list[str] | None) -> list[str]:
    """The live signals the caller asked for and may see: agent deltas, and pairing codes
    for those who may connect channels."""
    subjects = [agent_deltas(who.tenant_id)] if _wants(AGENT_DELTA, patterns) else []
    if who.role in ("owner", "admin") and _wants(CHANNEL_QR, patterns):
        subjects.append(qr_filter(who.tenant_id))
    return subjects


def _live_type(msg: Signal) -> str:
    """``live.<tenant>.qr.<connection>`` is a pairing code; the rest are agent deltas."""
    return CHANNEL_QR if msg.subject.split(".")[2] == "qr" else AGENT_DELTA


async def _forward_live(live: asyncio.Queue[Signal], outbox: Outbox) -> None:
    while True:
        msg = await live.get()
        await outbox.send(b'{"op":"live","type":"%s","data":%s}' % (_live_type(msg).encode(), msg.data))


async def _answer_pings(socket: WebSocket[Any, Any, Any], outbox: Outbox) -> None:
    while True:
        raw = await socket.receive_text()
        try:
            op = json.loads(raw).get("op")
        except (ValueError, AttributeError):
            op = None
        if op == "ping":
            await outbox.send('{"op":"pong"}')
        else:
            await outbox.send(
                error_frame("unknown_op", 'after subscribing, only {"op":"ping"} is understood')
            )


realtime_router = Router(
    path="/v1",
    route_handlers=[events, ws],
    tags=["realtime"],
    dependencies={"who": Provide(caller)},
)
