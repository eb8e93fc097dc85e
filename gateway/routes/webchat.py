"""Webchat: the website chat widget every tenant gets — a real channel with no
third-party account.

- ``GET /v1/webchat`` (signed in): the tenant's public widget key and widget URL; the
  widget (a ``webchat`` connection) is created on first use.
- ``POST /v1/webchat/{key}/messages`` (public): a visitor's message. This is the
  channel's inbound webhook: it is normalized into canonical events exactly as a
  connector would (``conversation.created`` for a new visitor, ``message.received``
  with ``webchat:<connection>:<provider id>`` as dedupe key).
- ``/v1/webchat/{key}/ws`` (public WebSocket): the visitor's side of the conversation,
  replayed from the log then live — their messages and every reply once sent.
  Client: ``{"op":"hello","visitor_token"?,"since"?}`` first, then ``{"op":"send",
  "text","client_message_id"?}`` or ``{"op":"ping"}``. Server: ``{"op":"welcome",
  "visitor_token","conversation_id"}``, ``{"op":"message","seq",…}``, ``{"op":"sent",…}``,
  ``{"op":"typing","run_id","index","delta"}`` (the agent's reply as it is written),
  ``{"op":"pong"}``, ``{"op":"heartbeat"}``, ``{"op":"error",…}``.

A visitor is known by a random ``visitor_token`` the widget keeps (a browser session
secret); the inbox only ever sees a one-way id derived from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, Router, WebSocket, get, post, websocket
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from adapters.channels.webchat import normalize as visitor
from adapters.nats.errors import ConcurrencyConflict
from domain import events as ev
from domain import ids, subjects
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.feed import Signal, agent_deltas, live_signals, subject_feed
from gateway.limits import client_ip
from gateway.routes.web import WEB, page_headers
from gateway.sockets import Closed, Outbox, closing_with_reason, error_frame

CHANNEL = "webchat"
MAX_TEXT = 4000
MAX_NAME = 80
HEARTBEAT_SECONDS = 15.0
SEND_TIMEOUT = 10.0
FAREWELL_TIMEOUT = 2.0
HELLO_TIMEOUT = 10.0

WIDGETS_SQL = """
CREATE TABLE IF NOT EXISTS gateway.webchat_widgets (
    widget_key    text PRIMARY KEY,
    tenant_id     text NOT NULL UNIQUE,
    connection_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON gateway.webchat_widgets TO moltbot_gateway;
-- The owner's own visitor token for "Try it": its conversation is marked preview.
ALTER TABLE gateway.webchat_widgets ADD COLUMN IF NOT EXISTS preview_token text;
GRANT UPDATE (preview_token) ON gateway.webchat_widgets TO moltbot_gateway;
"""


class Widget(msgspec.Struct, frozen=True):
    widget_key: str
    connection_id: str
    widget_url: str  # the page a website embeds (an iframe) or links to
    # The owner's own "Try it" chat (keep it private): the agent answers there even where it
    # only drafts for visitors (with the offline model).
    preview_url: str


class VisitorMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    visitor_token: str | None = None  # omit on a visitor's first message; keep the one returned
    name: str | None = None
    client_message_id: str | None = None  # makes a retried post land once


class VisitorAccepted(msgspec.Struct, frozen=True):
    visitor_token: str
    conversation_id: str
    message_id: str
    seq: int


class _Widget(msgspec.Struct, frozen=True):
    tenant_id: str
    connection_id: str
    preview_token: str | None = None


def widget_events(tenant_id: str, connection_id: str, actor: str) -> list[ev.Event]:
    """The events that give a tenant its webchat connection, ready to take visitors."""
    created = ev.new_event(
        ev.ConnectionCreated, tenant_id=tenant_id, aggregate_id=connection_id, actor=actor,
        data=ev.ConnectionCreatedData(channel=CHANNEL, display_name="Website chat"),
    )  # fmt: skip
    connected = ev.new_event(
        ev.ConnectionStateChanged, tenant_id=tenant_id, aggregate_id=connection_id, actor=actor,
        causation_id=created.id,
        data=ev.ConnectionStateChangedData(
            state="connected", code="ready", message="Your website chat is ready for visitors."
        ),
    )  # fmt: skip
    return [created, connected]


def new_widget_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


def new_preview_token() -> str:
    return "vt_p" + secrets.token_urlsafe(24)


def _widget(key: str, connection_id: str, preview_token: str) -> Widget:
    url = f"/webchat/{key}"
    return Widget(key, connection_id, url, f"{url}#preview={preview_token}")


async def ensure_widget(ctx: GatewayContext, tenant_id: str, actor: str) -> Widget:
    """The tenant's widget, created (row and events) if it has none yet."""
    async with ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT widget_key, connection_id, preview_token FROM gateway.webchat_widgets"
            " WHERE tenant_id = %s",
            (tenant_id,),
        )
        row = await cur.fetchone()
        if row is not None:
            preview = row["preview_token"]
            if preview is None:  # a widget made before "Try it" had its own token
                cur = await conn.execute(
                    "UPDATE gateway.webchat_widgets SET preview_token = coalesce(preview_token, %s)"
                    " WHERE tenant_id = %s RETURNING preview_token",
                    (new_preview_token(), tenant_id),
                )
                preview = (await cur.fetchone() or {}).get("preview_token")
            return _widget(row["widget_key"], row["connection_id"], preview)
        key, connection_id, preview = new_widget_key(), ids.new_id(ids.CONNECTION), new_preview_token()
        cur = await conn.execute(
            "INSERT INTO gateway.webchat_widgets (widget_key, tenant_id, connection_id, preview_token)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id) DO NOTHING RETURNING widget_key",
            (key, tenant_id, connection_id, preview),
        )
        if await cur.fetchone() is None:  # created meanwhile by a concurrent request
            return await ensure_widget(ctx, tenant_id, actor)
        await ctx.store.append_many(widget_events(tenant_id, connection_id, actor))
    return _widget(key, connection_id, preview)


@get("/v1/webchat")
async def my_widget(ctx: Ctx, who: Who) -> Widget:
    """Your website chat: the widget key is public (it goes on your site)."""
    return await ensure_widget(ctx, who.tenant_id, f"user:{who.user_id}")


async def _find_widget(ctx: GatewayContext, key: str) -> _Widget:
    if not subjects.is_token(key):
        raise ApiError(404, "not_found", "No website chat has this key.", field="key")
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id, connection_id, preview_token FROM gateway.webchat_widgets"
            " WHERE widget_key = %s",
            (key,),
        )
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", "No website chat has this key.", field="key")
    return _Widget(row["tenant_id"], row["connection_id"], row["preview_token"])


def _visitor_id(widget: _Widget, token: str) -> str:
    return visitor.visitor_id(widget.connection_id, token)


def _conversation_id(widget: _Widget, token: str) -> str:
    return visitor.conversation_id(widget.connection_id, token)


def _visitor_token(value: str | None) -> str:
    if value is None:
        return "vt_" + secrets.token_urlsafe(24)
    if not (10 <= len(value) <= 100) or not subjects.is_token(value):
        raise ApiError(
            400,
            "invalid_request",
            "visitor_token is the value a previous answer gave.",
            field="visitor_token",
        )
    return value


def _clean(message: VisitorMessage) -> tuple[str, str]:
    text = message.text.strip()
    if not text or len(text) > MAX_TEXT:
        raise ApiError(400, "invalid_request", f"Write 1-{MAX_TEXT} characters.", field="text")
    name = " ".join((message.name or "").split())[:MAX_NAME] or "Visitor"
    if message.client_message_id is not None and not (
        0 < len(message.client_message_id) <= 100 and message.client_message_id.isprintable()
    ):
        raise ApiError(
            400, "invalid_request", "client_message_id is 1-100 characters.", field="client_message_id"
        )
    return text, name


async def receive(ctx: GatewayContext, widget: _Widget, message: VisitorMessage) -> VisitorAccepted:
    """Normalize a visitor's message into canonical events, as a connector does."""
    text, name = _clean(message)
    token = _visitor_token(message.visitor_token)
    tenant_id, connection_id = widget.tenant_id, widget.connection_id
    preview = widget.preview_token is not None and secrets.compare_digest(token, widget.preview_token)
    created = visitor.conversation_created(
        tenant_id=tenant_id, connection_id=connection_id, visitor_token=token, name=name, preview=preview
    )
    with contextlib.suppress(ConcurrencyConflict):  # a returning visitor: it exists
        await ctx.store.append(created, expected_seq=0)
    client_message_id = message.client_message_id or ids.ulid()
    received = visitor.message_received(
        tenant_id=tenant_id, connection_id=connection_id, visitor_token=token, name=name, text=text,
        client_message_id=client_message_id, sent_at=datetime.now(UTC),
    )  # fmt: skip
    appended = await ctx.store.append(received)
    return VisitorAccepted(token, created.aggregate_id, received.data.message_id, appended.seq)


async def admit(ctx: GatewayContext, key: str, widget: _Widget, ip: str, token: str | None) -> None:
    """Hold a visitor's message to the website chat's limits (429 past one): per address,
    per website, per visitor, and — since each opens a conversation — first messages per address."""
    limiter = ctx.limiter
    slow_down = "Too many messages to this chat; wait a moment."
    await limiter.check("webchat_per_ip", ip, slow_down)
    await limiter.check("webchat_per_widget", key, "This website's chat is very busy right now.")
    if token is None:
        await limiter.check("webchat_new_visitors_per_ip", ip, "Too many new chats from your address.")
    else:
        await limiter.check("webchat_per_visitor", _visitor_id(widget, token), slow_down)


@post("/v1/webchat/{key:str}/messages", status_code=202)
async def visitor_message(
    request: Request[Any, Any, Any], ctx: Ctx, key: FromPath[str], data: JSONBody[VisitorMessage]
) -> VisitorAccepted:
    """A website visitor's message (public: the widget key is all it takes)."""
    widget = await _find_widget(ctx, key)
    _clean(data)  # a malformed message is a 400 before it counts against any limit
    token = _visitor_token(data.visitor_token) if data.visitor_token is not None else None
    await admit(ctx, key, widget, client_ip(request, ctx.trusted_proxies), token)
    return await receive(ctx, widget, data)


class _Hello(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    op: str
    visitor_token: str | None = None
    since: int | None = None
    name: str | None = None


def _visible(record_subject: str, data: bytes, seq: int) -> str | None:
    """What a visitor sees of an event of their conversation: messages in and out."""
    kind = record_subject.rsplit(".", 1)[-1]
    if kind not in ("message_received", "message_sent"):
        return None
    event = json.loads(data)
    d = event["data"]
    message = {
        "message_id": d["message_id"],
        "from": "visitor" if kind == "message_received" else "business",
        "sender_name": d["sender"]["name"],
        "text": d["text"],
        "sent_at": d["sent_at"],
    }
    return json.dumps({"op": "message", "seq": seq, "message": message})


@websocket("/v1/webchat/{key:str}/ws")
async def visitor_socket(socket: WebSocket[Any, Any, Any], ctx: Ctx, key: FromPath[str]) -> None:
    await socket.accept()
    ip = client_ip(socket, ctx.trusted_proxies)
    async with closing_with_reason(socket, FAREWELL_TIMEOUT):
        try:
            async with ctx.limiter.hold(
                [("streams_per_ip", ip)], "Too many chats are open from your address."
            ):
                await _visit(socket, ctx, key, ip, Outbox(socket, SEND_TIMEOUT))
        except ApiError as exc:
            raise Closed(4429, exc.detail) from None


async def _visit(
    socket: WebSocket[Any, Any, Any], ctx: GatewayContext, key: str, ip: str, outbox: Outbox
) -> None:
    try:
        widget = await _find_widget(ctx, key)
        async with asyncio.timeout(HELLO_TIMEOUT):
            hello = msgspec.json.decode(await socket.receive_text(), type=_Hello)
        if hello.op != "hello":
            raise Closed(4400, 'the first message must be {"op":"hello",…}')
        token = _visitor_token(hello.visitor_token)
    except ApiError as exc:
        raise Closed(4404 if exc.status == 404 else 4400, exc.detail) from None
    except TimeoutError:
        raise Closed(4400, 'send {"op":"hello"} first') from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise Closed(4400, f"invalid hello: {exc}") from None
    await _converse(socket, ctx, _Visitor(key, widget, token, ip, hello.name), hello.since, outbox)


class _Visitor(msgspec.Struct, frozen=True):
    """Who is on the other end of a widget socket."""

    key: str
    widget: _Widget
    token: str
    ip: str
    name: str | None


async def _converse(
    socket: WebSocket[Any, Any, Any],
    ctx: GatewayContext,
    visitor: _Visitor,
    since: int | None,
    outbox: Outbox,
) -> None:
    widget = visitor.widget
    conversation_id = _conversation_id(widget, visitor.token)
    await outbox.send(
        json.dumps({"op": "welcome", "visitor_token": visitor.token, "conversation_id": conversation_id})
    )
    deltas = agent_deltas(widget.tenant_id, conversation_id)
    async with live_signals(ctx.store, deltas) as live, asyncio.TaskGroup() as tasks:
        tasks.create_task(_visitor_input(socket, ctx, visitor, outbox))
        tasks.create_task(_typing(live, outbox))
        await _conversation_feed(ctx, widget, conversation_id, max(since or 1, 1), outbox)


async def _conversation_feed(
    ctx: GatewayContext, widget: _Widget, conversation_id: str, since: int, outbox: Outbox
) -> None:
    subject = subjects.aggregate_filter(widget.tenant_id, ev.CONVERSATION, conversation_id)
    async for record in subject_feed(ctx.store, subject, since, heartbeat=HEARTBEAT_SECONDS):
        visible = (
            '{"op":"heartbeat"}' if record is None else _visible(record.subject, record.data, record.seq)
        )
        if visible is not None:
            await outbox.send(visible)


async def _typing(live: asyncio.Queue[Signal], outbox: Outbox) -> None:
    """The reply being written, piece by piece (live only; the sent message follows)."""
    while True:
        delta = json.loads((await live.get()).data)
        await outbox.send(
            json.dumps(
                {"op": "typing", "run_id": delta["run_id"], "index": delta["index"], "delta": delta["delta"]}
            )
        )


async def _visitor_input(
    socket: WebSocket[Any, Any, Any], ctx: GatewayContext, visitor: _Visitor, outbox: Outbox
) -> None:
    while True:
        raw = await socket.receive_text()
        try:
            request = json.loads(raw)
            op = request.get("op")
        except (ValueError, AttributeError):
            request, op = {}, None
        if op == "ping":
            await outbox.send('{"op":"pong"}')
        elif op == "send":
            try:
                message = VisitorMessage(
                    text=str(request.get("text", "")),
                    visitor_token=visitor.token,
                    name=visitor.name,
                    client_message_id=request.get("client_message_id"),
                )
                _clean(message)
                await admit(ctx, visitor.key, visitor.widget, visitor.ip, visitor.token)
                accepted = await receive(ctx, visitor.widget, message)
            except ApiError as exc:
                await outbox.send(error_frame(exc.error, exc.detail))
                continue
            await outbox.send(
                json.dumps({"op": "sent", "message_id": accepted.message_id, "seq": accepted.seq})
            )
        else:
            await outbox.send(error_frame("unknown_op", 'use "send" or "ping"'))


@get("/webchat/{key:str}", include_in_schema=False)
async def widget_page(key: FromPath[str]) -> Response[bytes]:
    """The chat widget page a website embeds; the key is read by its script from the URL."""
    return Response(
        (WEB / "webchat.html").read_bytes(),
        media_type="text/html; charset=utf-8",
        headers=page_headers(frameable=True),
    )


webchat_router = Router(
    path="/",
    route_handlers=[my_widget, visitor_message, visitor_socket, widget_page],
    tags=["webchat"],
    dependencies={"who": Provide(caller)},
)
