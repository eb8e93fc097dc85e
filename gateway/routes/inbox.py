"""The inbox read side: conversations, messages, search, channels, usage — always
scoped to the caller's tenant — and the commands that change a conversation."""

from __future__ import annotations

import base64
import binascii
import html
import json
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Router, get, patch
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from domain import events as ev
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError

MinSeq = Annotated[int | None, Parameter(ge=0, description="wait until the read models reach this seq")]
Limit = Annotated[int, Parameter(ge=1, le=200, description="page size (1-200)")]


class Conversation(msgspec.Struct, frozen=True):
    conversation_id: str
    channel: str
    connection_id: str
    kind: str
    title: str
    agent_enabled: bool
    pinned: bool
    unread_count: int
    message_count: int
    last_message_at: datetime | None
    last_message_preview: str | None
    created_at: datetime


class MediaRef(msgspec.Struct, frozen=True):
    """A stored attachment; ``url`` serves it (authenticated like the rest of the API)."""

    media_id: str
    mime: str
    size: int
    url: str


class Message(msgspec.Struct, frozen=True):
    message_id: str
    conversation_id: str
    seq: int
    direction: str
    channel: str
    sender_id: str
    sender_name: str
    text: str
    sent_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    status: str
    agent_run_id: str | None
    media: list[MediaRef] = []


# A message's stored attachments as a JSON list of MediaRef.
MEDIA_OF_MESSAGE = (
    "coalesce((SELECT json_agg(json_build_object('media_id', d.media_id, 'mime', d.mime, 'size', d.size,"
    " 'url', '/v1/media/' || d.media_id) ORDER BY d.media_id)"
    " FROM rm_inbox.media d WHERE d.message_id = m.message_id), '[]')"
)


class Page(msgspec.Struct, frozen=True):
    items: list[Any]
    next_cursor: str | None


class SearchHit(msgspec.Struct, frozen=True):
    """``highlight`` is HTML: the message text escaped, matching words in ``<mark>``."""

    message_id: str
    conversation_id: str
    conversation_title: str
    channel: str
    sender_name: str
    sent_at: datetime
    rank: float
    highlight: str


class Accepted(msgspec.Struct, frozen=True):
    event_id: str
    seq: int


class ConversationPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    read: bool | None = None
    agent_enabled: bool | None = None
    pinned: bool | None = None
    title: str | None = None


class Channel(msgspec.Struct, frozen=True):
    connection_id: str
    channel: str
    display_name: str
    state: str
    state_code: str | None
    state_message: str | None
    suggested_action: str | None
    created_at: datetime


class UsageDay(msgspec.Struct, frozen=True):
    day: str
    metric: str
    quantity: int


def _encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, *types: type) -> list[Any]:
    """The values of a cursor this API gave out, each of the expected type (a timestamp is
    an ISO string); anything else, tampered or truncated, is a 400."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("not a cursor")
        return [_typed(value, kind) for value, kind in zip(values, types, strict=True)]
    except (binascii.Error, ValueError, TypeError):
        raise ApiError(
            400, "invalid_cursor", "Pass back the next_cursor of a previous page.", field="cursor"
        ) from None


def _typed(value: Any, kind: type) -> Any:
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError(value)
        return datetime.fromisoformat(value)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63):
        raise TypeError(value)
    if not isinstance(value, kind):
        raise TypeError(value)
    return value


@get("/conversations")
async def list_conversations(
    ctx: Ctx,
    who: Who,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
    channel: FromQuery[str | None] = None,
    unread: FromQuery[bool | None] = None,
    agent_enabled: FromQuery[bool | None] = None,
    min_seq: MinSeq = None,
) -> Page:
    """Most recently active first; ``next_cursor`` fetches the following page."""
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    where = ["tenant_id = %(tenant)s"]
    params: dict[str, Any] = {"tenant": who.tenant_id, "limit": limit + 1}
    if channel is not None:
        where.append("channel = %(channel)s")
        params["channel"] = channel
    if unread is not None:
        where.append("(unread_count > 0) = %(unread)s")
        params["unread"] = unread
    if agent_enabled is not None:
        where.append("agent_enabled = %(agent)s")
        params["agent"] = agent_enabled
    if cursor:
        active_at, conversation_id = _decode_cursor(cursor, datetime, str)
        where.append("(coalesce(last_message_at, created_at), conversation_id) < (%(c_at)s, %(c_id)s)")
        params |= {"c_at": active_at, "c_id": conversation_id}
    query = (
        "SELECT *, coalesce(last_message_at, created_at) AS active_at FROM rm_inbox.conversations"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY coalesce(last_message_at, created_at) DESC, conversation_id DESC LIMIT %(limit)s"
    )
    async with ctx.tenant(who.tenant_id) as conn:
        rows = await (await conn.execute(query, params)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [msgspec.convert(r, Conversation, from_attributes=False, strict=False) for r in rows]
    last = rows[-1] if rows and more else None
    return Page(items, _encode_cursor(last["active_at"], last["conversation_id"]) if last else None)


async def _conversation_or_404(ctx: Ctx, who: Who, conversation_id: str) -> dict[str, Any]:
    async with ctx.tenant(who.tenant_id) as conn:
        cur = await conn.execute(
            "SELECT conversation_id, connection_id, channel FROM rm_inbox.conversations"
            " WHERE conversation_id = %s AND tenant_id = %s",
            (conversation_id, who.tenant_id),
        )
        row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"No conversation {conversation_id} in your inbox.", field="id")
    return row


@get("/conversations/{conversation_id:str}/messages")
async def list_messages(
    ctx: Ctx,
    who: Who,
    conversation_id: FromPath[str],
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
    min_seq: MinSeq = None,
) -> Page:
    """Newest first; ``next_cursor`` pages back in time."""
    params: dict[str, Any] = {"tenant": who.tenant_id, "conversation": conversation_id, "limit": limit + 1}
    before = ""
    if cursor:
        (params["before"],) = _decode_cursor(cursor, int)
        before = "AND m.seq < %(before)s"
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    await _conversation_or_404(ctx, who, conversation_id)
    async with ctx.tenant(who.tenant_id) as conn:
        rows = await (
            await conn.execute(
                f"SELECT m.*, {MEDIA_OF_MESSAGE} AS media FROM rm_inbox.messages m"
                " WHERE m.tenant_id = %(tenant)s"
                f" AND m.conversation_id = %(conversation)s {before} ORDER BY m.seq DESC LIMIT %(limit)s",
                params,
            )
        ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [msgspec.convert(r, Message, strict=False) for r in rows]
    return Page(items, _encode_cursor(rows[-1]["seq"]) if more and rows else None)


@patch("/conversations/{conversation_id:str}", status_code=202)
async def update_conversation(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], data: JSONBody[ConversationPatch]
) -> Accepted:
    """Mark read, switch the agent on or off, pin, rename."""
    if data == ConversationPatch():
        raise ApiError(400, "invalid_request", "Send at least one of read, agent_enabled, pinned, title.")
    await _conversation_or_404(ctx, who, conversation_id)
    event = ev.new_event(
        ev.ConversationUpdated,
        tenant_id=who.tenant_id,
        aggregate_id=conversation_id,
        actor=f"user:{who.user_id}",
        data=ev.ConversationUpdatedData(
            title=data.title,
            agent_enabled=data.agent_enabled,
            pinned=data.pinned,
            marked_read=bool(data.read),
        ),
    )
    appended = await ctx.store.append(event)
    return Accepted(appended.event_id, appended.seq)


@get("/search")
async def search(
    ctx: Ctx,
    who: Who,
    q: Annotated[str, Parameter(min_length=1, max_length=200, description="words to find")],
    limit: Limit = 20,
    min_seq: MinSeq = None,
) -> list[SearchHit]:
    """Full-text search over your messages, best matches first, with the matching words marked."""
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        rows = await (
            await conn.execute(
                "SELECT m.message_id, m.conversation_id, c.title AS conversation_title, m.channel,"
                " m.sender_name, m.sent_at, ts_rank(m.search, query) AS rank,"
                " ts_headline('simple', m.text, query, 'StartSel=\x02,StopSel=\x03') AS highlight"
                " FROM rm_inbox.messages m JOIN rm_inbox.conversations c USING (conversation_id),"
                " websearch_to_tsquery('simple', %(q)s) query"
                " WHERE m.tenant_id = %(tenant)s AND m.deleted_at IS NULL AND m.search @@ query"
                " ORDER BY rank DESC, m.seq DESC LIMIT %(limit)s",
                {"q": q, "tenant": who.tenant_id, "limit": limit},
            )
        ).fetchall()
    return [
        msgspec.convert(r | {"highlight": _safe_highlight(r["highlight"])}, SearchHit, strict=False)
        for r in rows
    ]


def _safe_highlight(text: str) -> str:
    """Message text is untrusted: escape it, then mark the matches (``<mark>…</mark>``)."""
    return html.escape(text).replace("\x02", "<mark>").replace("\x03", "</mark>")


@get("/channels")
async def list_channels(ctx: Ctx, who: Who, min_seq: MinSeq = None) -> list[Channel]:
    await ctx.wait_for(min_seq, ("connections",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        rows = await (
            await conn.execute(
                "SELECT * FROM rm_connections.connections WHERE tenant_id = %s AND deleted_at IS NULL"
                " ORDER BY created_at",
                (who.tenant_id,),
            )
        ).fetchall()
    return [msgspec.convert(r, Channel, strict=False) for r in rows]


@get("/usage")
async def usage(
    ctx: Ctx,
    who: Who,
    days: Annotated[int, Parameter(ge=1, le=366)] = 31,
    min_seq: MinSeq = None,
) -> list[UsageDay]:
    """Metered usage per day and metric, most recent first."""
    await ctx.wait_for(min_seq, ("usage",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        rows = await (
            await conn.execute(
                "SELECT day::text AS day, metric, quantity FROM rm_usage.usage_daily WHERE tenant_id = %s"
                " AND day > current_date - %s ORDER BY day DESC, metric",
                (who.tenant_id, days),
            )
        ).fetchall()
    return [msgspec.convert(r, UsageDay) for r in rows]


inbox_router = Router(
    path="/v1",
    route_handlers=[list_conversations, list_messages, update_conversation, search, list_channels, usage],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
