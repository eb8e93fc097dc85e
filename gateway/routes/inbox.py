"""The inbox read side: conversations, messages, search, channels, usage — always
scoped to the caller's tenant — and the commands that change a conversation."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Router, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from adapters.channels.registry import answering_kinds
from domain import events as ev
from domain.reads import ConversationView
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from projections import connections_queries, contacts_queries, inbox_queries, usage_queries
from projections.connections_queries import Channel
from projections.inbox_queries import Conversation, SearchHit
from projections.usage_queries import UsageDay

MinSeq = Annotated[int | None, Parameter(ge=0, description="wait until the read models reach this seq")]
Limit = Annotated[int, Parameter(ge=1, le=200, description="page size (1-200)")]


class Page(msgspec.Struct, frozen=True):
    items: list[Any]
    next_cursor: str | None


class Accepted(msgspec.Struct, frozen=True):
    event_id: str
    seq: int


class ConversationPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    read: bool | None = None
    agent_mode: ev.AgentMode | None = None  # auto: answers; draft: proposes; off: stays out
    agent_enabled: bool | None = None  # the older switch: false is agent_mode "off", true "auto"
    pinned: bool | None = None
    title: str | None = None


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
    pinned: FromQuery[bool | None] = None,
    person: Annotated[
        str | None, Parameter(min_length=1, max_length=100, description="a name in the conversation's title")
    ] = None,
    active_since: Annotated[
        datetime | None, Parameter(description="only conversations active since (ISO 8601)")
    ] = None,
    needs_reply: Annotated[
        bool | None, Parameter(description="only those waiting for a reply (true) or not (false)")
    ] = None,
    contact_id: Annotated[
        str | None, Parameter(max_length=64, description="one person's conversations, on every channel")
    ] = None,
    min_seq: MinSeq = None,
) -> Page:
    """Pinned ones first, then the most recently active; ``next_cursor`` fetches the next page.
    ``needs_reply=true``: the "Needs reply" view (a person's message nobody answered, not
    snoozed)."""
    await ctx.wait_for(min_seq, ("inbox", "contacts"), who.tenant_id)
    before: tuple[bool, datetime, str] | None = None
    if cursor:
        was_pinned, active_at, conversation_id = _decode_cursor(cursor, bool, datetime, str)
        before = (was_pinned, active_at, conversation_id)
    if active_since is not None and active_since.tzinfo is None:
        raise ApiError(
            400, "invalid_request", "Give active_since with its time zone, e.g. Z.", field="active_since"
        )
    async with ctx.tenant(who.tenant_id) as conn:
        items = await inbox_queries.conversations(
            conn, who.tenant_id, limit=limit + 1, auto_kinds=answering_kinds(), channel=channel,
            unread=unread, agent_enabled=agent_enabled, pinned=pinned, person=person,
            active_since=active_since, needs_reply=needs_reply, contact_id=contact_id, before=before,
        )  # fmt: skip
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if items and more else None
    return Page(items, _encode_cursor(last.pinned, last.active_at, last.conversation_id) if last else None)


async def _conversation_or_404(ctx: Ctx, who: Who, conversation_id: str) -> ConversationView:
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.conversation(conn, who.tenant_id, conversation_id)
    if found is None:
        raise ApiError(404, "not_found", f"No conversation {conversation_id} in your inbox.", field="id")
    return found


@get("/conversations/{conversation_id:str}")
async def get_conversation(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], min_seq: MinSeq = None
) -> Conversation:
    """One conversation: what the list shows of it, the agent's mode and pause included."""
    await ctx.wait_for(min_seq, ("inbox", "connections"), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.conversation_detail(
            conn, who.tenant_id, conversation_id, auto_kinds=answering_kinds()
        )
    if found is None:
        raise ApiError(404, "not_found", f"No conversation {conversation_id} in your inbox.", field="id")
    return found


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
    before_seq = _decode_cursor(cursor, int)[0] if cursor else None
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    await _conversation_or_404(ctx, who, conversation_id)
    async with ctx.tenant(who.tenant_id) as conn:
        items = await inbox_queries.messages(
            conn, who.tenant_id, conversation_id, limit=limit + 1, before_seq=before_seq
        )
    more = len(items) > limit
    items = items[:limit]
    return Page(items, _encode_cursor(items[-1].seq) if more and items else None)


@patch("/conversations/{conversation_id:str}", status_code=202)
async def update_conversation(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], data: JSONBody[ConversationPatch]
) -> Accepted:
    """Mark read, set the agent's mode (auto, draft, off), pin, rename."""
    if data == ConversationPatch():
        raise ApiError(
            400, "invalid_request", "Send at least one of read, agent_mode, agent_enabled, pinned, title."
        )
    if data.agent_mode is not None and data.agent_enabled is not None:
        raise ApiError(
            400, "invalid_request", "Send agent_mode or agent_enabled (its older form), not both.",
            field="agent_enabled",
        )  # fmt: skip
    await _conversation_or_404(ctx, who, conversation_id)
    event = ev.new_event(
        ev.ConversationUpdated,
        tenant_id=who.tenant_id,
        aggregate_id=conversation_id,
        actor=f"user:{who.user_id}",
        data=ev.ConversationUpdatedData(
            title=data.title,
            agent_enabled=data.agent_enabled,
            agent_mode=data.agent_mode,
            pinned=data.pinned,
            marked_read=data.read is True,
            marked_unread=data.read is False,
        ),
    )
    appended = await ctx.store.append(event)
    return Accepted(appended.event_id, appended.seq)


class Snooze(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    until: datetime | None  # null: back in "Needs reply" now


MAX_SNOOZE = timedelta(days=365)


@post("/conversations/{conversation_id:str}/snooze", status_code=202)
async def snooze_conversation(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], data: JSONBody[Snooze]
) -> Accepted:
    """Out of "Needs reply" until ``until`` (or until the contact writes again); null lifts it."""
    until = data.until
    if until is not None:
        if until.tzinfo is None:
            raise ApiError(400, "invalid_request", "Give until with its time zone, e.g. Z.", field="until")
        now = datetime.now(UTC)
        if not now < until <= now + MAX_SNOOZE:
            raise ApiError(
                400, "invalid_request", "until is a moment in the coming year (null lifts the snooze).",
                field="until",
            )  # fmt: skip
    await _conversation_or_404(ctx, who, conversation_id)
    snoozed = ev.new_event(
        ev.ConversationSnoozed, tenant_id=who.tenant_id, aggregate_id=conversation_id,
        actor=f"user:{who.user_id}", data=ev.ConversationSnoozedData(until=until),
    )  # fmt: skip
    appended = await ctx.store.append(snoozed)
    return Accepted(appended.event_id, appended.seq)


@get("/search")
async def search(
    ctx: Ctx,
    who: Who,
    q: Annotated[str, Parameter(min_length=1, max_length=200, description="words to find")],
    limit: Limit = 20,
    contact_id: Annotated[
        str | None, Parameter(max_length=64, description="only in one person's conversations")
    ] = None,
    min_seq: MinSeq = None,
) -> list[SearchHit]:
    """Full-text search over your messages, best matches first, with the matching words marked;
    ``contact_id``: only what was said with that person, on every channel."""
    # a person's conversations are the contacts read model's: a merge must be in before we look
    read_models = ("inbox",) if contact_id is None else ("inbox", "contacts")
    await ctx.wait_for(min_seq, read_models, who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        if contact_id is not None and await contacts_queries.live_contact_id(conn, contact_id) is None:
            # unknown and merged away alike: an empty list would pass for "they never said it"
            raise ApiError(404, "not_found", f"No contact {contact_id} in your inbox.", field="contact_id")
        return await inbox_queries.search(conn, who.tenant_id, q, limit=limit, contact_id=contact_id)


@get("/channels")
async def list_channels(ctx: Ctx, who: Who, min_seq: MinSeq = None) -> list[Channel]:
    await ctx.wait_for(min_seq, ("connections",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await connections_queries.channels(conn, who.tenant_id)


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
        return await usage_queries.usage_days(conn, who.tenant_id, days)


inbox_router = Router(
    path="/v1",
    route_handlers=[
        list_conversations,
        get_conversation,
        list_messages,
        update_conversation,
        snooze_conversation,
        search,
        list_channels,
        usage,
    ],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
