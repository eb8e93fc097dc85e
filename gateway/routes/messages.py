"""Sending a message from the inbox: ``POST /v1/messages``.

The answer is ``202 {"event_id","seq","message_id"}``: the request is in the log
(``message.send_requested``), the outbox queues it for the channel, and the
conversation shows it as ``pending`` until the connector confirms (``sent``) or gives
up (``failed``); ``?min_seq=<seq>`` reads it back. A person answering is a takeover: the
agent steps back in the conversation for its connection's ``takeover_minutes``
(``conversation.agent_paused``, default 30).

With ``send_at`` the message is scheduled: it shows as ``scheduled`` (at its time) and goes
out then through the same outbox (``message.send_released``, by the scheduler the gateway
runs); ``DELETE /v1/messages/{id}`` calls it off while it waits.

With an ``Idempotency-Key`` header a retried request gets the first answer and never
sends twice: the key is claimed in ``gateway.idempotency`` in the transaction that
appends the event, and the message id is derived from the key, so even a retry after
a crash between the append and the commit names the same message.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Router, delete, post
from litestar.di import Provide
from litestar.params import FromPath, HeaderParameter, JSONBody

from domain import agent as policy
from domain import events as ev
from domain import ids, imports
from domain.reads import ConversationView
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from projections import inbox_queries, tenants_queries

MAX_TEXT = 4000
MAX_KEY = 200

IDEMPOTENCY_SQL = """
CREATE TABLE IF NOT EXISTS gateway.idempotency (
    tenant_id   text NOT NULL,
    key         text NOT NULL,
    body_sha256 text NOT NULL,
    event_id    text NOT NULL,
    message_id  text NOT NULL,
    seq         bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
GRANT SELECT, INSERT, UPDATE ON gateway.idempotency TO moltbot_gateway;
"""


class SendBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    conversation_id: str
    text: str
    reply_to_message_id: str | None = None
    send_at: datetime | None = None  # scheduled: sent then (ISO 8601 with its zone, within a year)


class SendAccepted(msgspec.Struct, frozen=True):
    event_id: str
    seq: int
    message_id: str


MAX_SCHEDULE = timedelta(days=365)
CANCEL_MARGIN = timedelta(seconds=2)  # a scheduled message this close to its time is on its way


def _validated(data: SendBody) -> str:
    if data.send_at is not None:
        if data.send_at.tzinfo is None:
            raise ApiError(
                400, "invalid_request", "Give send_at with its time zone, e.g. Z.", field="send_at"
            )
        now = datetime.now(UTC)
        if not now < data.send_at <= now + MAX_SCHEDULE:
            raise ApiError(
                400, "invalid_request", "send_at is a moment in the coming year (leave it out to send now).",
                field="send_at",
            )  # fmt: skip
    text = data.text.strip()
    if not text:
        raise ApiError(400, "invalid_request", "Write something to send.", field="text")
    if len(text) > MAX_TEXT:
        raise ApiError(
            400, "invalid_request", f"Messages are at most {MAX_TEXT} characters; split it.", field="text"
        )
    return text


def _key(header: str | None) -> str | None:
    if header is None:
        return None
    key = header.strip()
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise ApiError(
            400,
            "invalid_request",
            f"Idempotency-Key is 1-{MAX_KEY} printable characters, e.g. a UUID.",
            field="Idempotency-Key",
        )
    return key


class _Recipient(msgspec.Struct, frozen=True):
    conversation: ConversationView
    sender_name: str  # the person sending, as the conversation shows them


async def _recipient(
    ctx: GatewayContext, who: Caller, conversation_id: str, *, sending: bool = True
) -> _Recipient:
    """The conversation (404 when it is not in the caller's inbox) and who writes in it;
    ``sending``: 409 when it has no channel to send on (imported history)."""
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.conversation(conn, who.tenant_id, conversation_id)
        name = await tenants_queries.display_name(conn, who.user_id) if found is not None else None
    if found is None:
        raise ApiError(
            404, "not_found", f"No conversation {conversation_id} in your inbox.", field="conversation_id"
        )
    if sending and imports.is_imported(found.connection_id):
        raise ApiError(
            409, "no_channel",
            "This conversation is imported history: it has no channel to send on. Connect the channel"
            " and answer in its own conversation there.",
            field="conversation_id",
        )  # fmt: skip
    return _Recipient(found, name or "You")


def _request_event(who: Caller, data: SendBody, text: str, message_id: str, to: _Recipient) -> ev.Event:
    return ev.new_event(
        ev.MessageSendRequested,
        tenant_id=who.tenant_id,
        aggregate_id=data.conversation_id,
        actor=f"user:{who.user_id}",
        data=ev.MessageSendRequestedData(
            message_id=message_id,
            connection_id=to.conversation.connection_id,
            channel=to.conversation.channel,
            to=to.conversation.external_id,
            text=text,
            sender=ev.Sender(id=f"user:{who.user_id}", name=to.sender_name),
            reply_to_message_id=data.reply_to_message_id,
            send_at=data.send_at,
        ),
    )


async def send_accepted(ctx: GatewayContext, event: ev.Event) -> SendAccepted:
    """Append a send request; the answer names the stored one (a retry's, the first)."""
    appended = await ctx.store.append(event)
    event_id = appended.event_id
    if appended.duplicate:  # a retry after a lost answer: the stored event is the one to name
        stored = await ctx.store.get(appended.seq)
        event_id = stored.id if stored is not None else event_id
    return SendAccepted(event_id, appended.seq, event.data.message_id)  # type: ignore[attr-defined]


async def _append(ctx: GatewayContext, who: Caller, event: ev.Event, to: _Recipient) -> SendAccepted:
    """A person's message, and the agent stepping back in the conversation (human takeover);
    a scheduled one is no answer yet, so the agent carries on until it is sent."""
    accepted = await send_accepted(ctx, event)
    if isinstance(event, ev.MessageSendRequested) and event.data.send_at is not None:
        return accepted
    conversation = to.conversation
    minutes = conversation.takeover_minutes or policy.TAKEOVER_MINUTES
    paused = ev.new_event(
        ev.ConversationAgentPaused, tenant_id=who.tenant_id, aggregate_id=conversation.conversation_id,
        actor=f"user:{who.user_id}", causation_id=accepted.event_id,
        data=ev.ConversationAgentPausedData(
            reason="human_replied", until=event.occurred_at + timedelta(minutes=minutes),
            message_id=accepted.message_id,
        ),
    )  # fmt: skip
    await ctx.store.append(paused)
    return accepted


@post("/messages", status_code=202)
async def send_message(
    ctx: Ctx,
    who: Who,
    data: JSONBody[SendBody],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(name="Idempotency-Key", description="retrying with the same key sends once"),
    ] = None,
) -> SendAccepted:
    """Send a message into a conversation, through its channel."""
    text = _validated(data)
    key = _key(idempotency_key)
    to = await _recipient(ctx, who, data.conversation_id)
    if key is None:
        return await _append(ctx, who, _request_event(who, data, text, ids.new_id(ids.MESSAGE), to), to)
    body_hash = hashlib.sha256(msgspec.json.encode(data)).hexdigest()
    message_id = ids.stable_id(ids.MESSAGE, f"send:{who.tenant_id}:{key}")
    async with ctx.pool.connection() as conn, conn.transaction():
        # Claiming the key first makes a concurrent retry wait here for the first answer.
        cur = await conn.execute(
            "INSERT INTO gateway.idempotency (tenant_id, key, body_sha256, event_id, message_id, seq)"
            " VALUES (%s, %s, %s, '', %s, 0) ON CONFLICT DO NOTHING RETURNING key",
            (who.tenant_id, key, body_hash, message_id),
        )
        if await cur.fetchone() is None:
            cur = await conn.execute(
                "SELECT body_sha256, event_id, seq, message_id FROM gateway.idempotency"
                " WHERE tenant_id = %s AND key = %s",
                (who.tenant_id, key),
            )
            first = await cur.fetchone()
            assert first is not None
            if first["body_sha256"] != body_hash:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used for a different message; use a new key.",
                    field="Idempotency-Key",
                )
            return SendAccepted(first["event_id"], first["seq"], first["message_id"])
        accepted = await _append(ctx, who, _request_event(who, data, text, message_id, to), to)
        await conn.execute(
            "UPDATE gateway.idempotency SET event_id = %s, seq = %s WHERE tenant_id = %s AND key = %s",
            (accepted.event_id, accepted.seq, who.tenant_id, key),
        )
    return accepted


class Cancelled(msgspec.Struct, frozen=True):
    message_id: str
    event_id: str
    seq: int


@delete("/messages/{message_id:str}", status_code=202)
async def cancel_message(ctx: Ctx, who: Who, message_id: FromPath[str]) -> Cancelled:
    """Call off a scheduled message before its time (``message.send_cancelled``)."""
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.outgoing(conn, who.tenant_id, message_id)
    if found is None:
        raise ApiError(404, "not_found", f"No message {message_id} of yours in this inbox.", field="id")
    if found.status != "scheduled":
        raise ApiError(
            409, "not_scheduled", f"Only a scheduled message can be called off; this one is {found.status}.",
            field="id",
        )  # fmt: skip
    if found.sent_at - datetime.now(UTC) < CANCEL_MARGIN:
        raise ApiError(409, "too_late", "Its time has come: it is on its way.", field="id")
    cancelled = ev.new_event(
        ev.MessageSendCancelled, tenant_id=who.tenant_id, aggregate_id=found.conversation_id,
        actor=f"user:{who.user_id}", data=ev.MessageSendCancelledData(message_id=message_id),
    )  # fmt: skip
    appended = await ctx.store.append(cancelled)
    return Cancelled(message_id, appended.event_id, appended.seq)


messages_router = Router(
    path="/v1",
    route_handlers=[send_message, cancel_message],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
