"""Queries on the inbox read model (``projections/inbox.py``): conversations, messages, their
media and full-text search. Each takes a connection already in a tenant's transaction
(``adapters.postgres.tenancy.tenant_transaction``) and answers with Structs."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import msgspec

from adapters.postgres.database import Connection
from domain.away import AWAY_SENDER
from domain.envelope import ConversationKind
from domain.reads import ConversationView, FoundMessage, PastMessage
from projections.rows import one_row


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
    agent_mode: str = "draft"  # what the agent does here: auto, draft, off (its own or its connection's)
    agent_paused_until: datetime | None = None  # a person answered: the agent is quiet until then
    preview: bool = False  # the owner's own "Try it" chat
    # a direct message on a connection that asks for approval (its DM policy): who wrote and
    # what the owner decided — "pending" reads "wants to talk"; None: nobody needs approving
    sender_id: str | None = None
    sender_status: str | None = None
    # "Needs reply": a person's message nobody answered yet (since ``awaiting_since``), and
    # not snoozed (``snoozed_until`` in the future hides it)
    needs_reply: bool = False
    awaiting_since: datetime | None = None
    snoozed_until: datetime | None = None
    contact_id: str | None = None  # the person of a direct conversation (GET /v1/contacts/{id})

    @property
    def active_at(self) -> datetime:
        """When the conversation last saw a message (or began): the list's order."""
        return self.last_message_at or self.created_at


class Draft(msgspec.Struct, frozen=True):
    """What the agent proposes to send; a person sends (maybe edited) or discards it."""

    draft_id: str
    conversation_id: str
    run_id: str
    text: str
    reply_to_message_id: str | None
    # draft_mode: the conversation drafts; offline_model: the offline model wrote it;
    # injection_suspected: the message it answers looked like an attack (``flag`` says why)
    reason: str
    status: str  # pending, sent, discarded
    sent_message_id: str | None
    created_at: datetime
    flag: str | None = None


NEEDS_REPLY = "(c.awaiting_since IS NOT NULL AND (c.snoozed_until IS NULL OR c.snoozed_until <= now()))"
# A conversation's mode: its own, else its connection's, else its channel kind's default
# (%(auto_kinds)s: the kinds that start in auto, from the channel registry); and who wrote
# it, when its connection's DM policy asks for approval (with WITH_CONNECTION).
EFFECTIVE_MODE = (
    "coalesce(c.agent_mode, n.agent_mode,"
    " CASE WHEN c.channel = ANY(%(auto_kinds)s) THEN 'auto' ELSE 'draft' END) AS agent_mode,"
    " s.sender_id, s.sender_status, " + NEEDS_REPLY + " AS needs_reply, p.contact_id"
)
WITH_CONNECTION = (
    " LEFT JOIN rm_connections.connections n ON n.connection_id = c.connection_id"
    " LEFT JOIN LATERAL (SELECT s.sender_id, s.status AS sender_status FROM rm_connections.senders s"
    " WHERE s.conversation_id = c.conversation_id ORDER BY s.requested_at LIMIT 1) s ON true"
    " LEFT JOIN LATERAL (SELECT i.contact_id FROM rm_contacts.identity_conversations ic"
    " JOIN rm_contacts.identities i ON i.identity_id = ic.identity_id"
    " WHERE ic.conversation_id = c.conversation_id AND c.kind = 'direct' LIMIT 1) p ON true"
)


class MediaRef(msgspec.Struct, frozen=True):
    """A stored attachment; ``url`` serves it (authenticated like the rest of the API)."""

    media_id: str
    mime: str
    size: int
    url: str


class Reaction(msgspec.Struct, frozen=True):
    emoji: str
    sender_id: str


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
    reactions: list[Reaction] = []  # oldest first


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


class StoredMedia(msgspec.Struct, frozen=True):
    mime: str
    storage_key: str


# A message's reactions as a JSON list of Reaction, oldest first.
REACTIONS_OF_MESSAGE = (
    "coalesce((SELECT json_agg(json_build_object('emoji', r.emoji, 'sender_id', r.sender_id)"
    " ORDER BY r.added_at, r.emoji, r.sender_id) FROM rm_inbox.reactions r"
    " WHERE r.message_id = m.message_id), '[]')"
)
# A message's stored attachments as a JSON list of MediaRef.
MEDIA_OF_MESSAGE = (
    "coalesce((SELECT json_agg(json_build_object('media_id', d.media_id, 'mime', d.mime, 'size', d.size,"
    " 'url', '/v1/media/' || d.media_id) ORDER BY d.media_id)"
    " FROM rm_inbox.media d WHERE d.message_id = m.message_id), '[]')"
)


async def conversation(conn: Connection, tenant_id: str, conversation_id: str) -> ConversationView | None:
    return await one_row(
        conn,
        ConversationView,
        "SELECT c.conversation_id, c.channel, c.connection_id, c.kind, c.external_id, c.agent_enabled,"
        " c.agent_mode, n.agent_mode AS connection_agent_mode, n.takeover_minutes, c.agent_paused_until,"
        " c.preview, n.dm_policy FROM rm_inbox.conversations c"
        " LEFT JOIN rm_connections.connections n ON n.connection_id = c.connection_id"
        " WHERE c.conversation_id = %s AND c.tenant_id = %s",
        (conversation_id, tenant_id),
    )


async def conversations(
    conn: Connection,
    tenant_id: str,
    *,
    limit: int,
    auto_kinds: list[str],
    channel: str | None = None,
    unread: bool | None = None,
    agent_enabled: bool | None = None,
    pinned: bool | None = None,
    person: str | None = None,
    active_since: datetime | None = None,
    needs_reply: bool | None = None,
    contact_id: str | None = None,
    before: tuple[bool, datetime, str] | None = None,
) -> list[Conversation]:
    """Pinned ones first, then the most recently active (``active_at``, then id); those after
    the cursor ``before`` (pinned, active_at, id) only. ``person``: in the title (a contact's
    name), any case."""
    where = ["c.tenant_id = %(tenant)s"]
    params: dict[str, Any] = {"tenant": tenant_id, "limit": limit, "auto_kinds": auto_kinds}
    if channel is not None:
        where.append("c.channel = %(channel)s")
        params["channel"] = channel
    if unread is not None:
        where.append("(c.unread_count > 0) = %(unread)s")
        params["unread"] = unread
    if agent_enabled is not None:
        where.append("c.agent_enabled = %(agent)s")
        params["agent"] = agent_enabled
    if pinned is not None:
        where.append("c.pinned = %(pinned)s")
        params["pinned"] = pinned
    if person is not None:
        where.append("c.title ILIKE %(person)s")
        params["person"] = "%" + person.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if active_since is not None:
        where.append("coalesce(c.last_message_at, c.created_at) >= %(since)s")
        params["since"] = active_since
    if needs_reply is not None:
        where.append(f"{NEEDS_REPLY} = %(needs_reply)s")
        params["needs_reply"] = needs_reply
    if contact_id is not None:  # one person's conversations, on every channel
        where.append(
            "c.conversation_id IN (SELECT ic.conversation_id FROM rm_contacts.identity_conversations ic"
            " JOIN rm_contacts.identities i ON i.identity_id = ic.identity_id"
            " WHERE i.contact_id = %(contact)s)"
        )
        params["contact"] = contact_id
    if before is not None:
        where.append(
            "(c.pinned, coalesce(c.last_message_at, c.created_at), c.conversation_id)"
            " < (%(c_pin)s, %(c_at)s, %(c_id)s)"
        )
        params |= {"c_pin": before[0], "c_at": before[1], "c_id": before[2]}
    query = (
        f"SELECT c.*, {EFFECTIVE_MODE} FROM rm_inbox.conversations c{WITH_CONNECTION}"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY c.pinned DESC, coalesce(c.last_message_at, c.created_at) DESC, c.conversation_id DESC"
        " LIMIT %(limit)s"
    )
    rows = await (await conn.execute(query, params)).fetchall()
    return [msgspec.convert(r, Conversation, strict=False) for r in rows]


async def conversation_detail(
    conn: Connection, tenant_id: str, conversation_id: str, *, auto_kinds: list[str]
) -> Conversation | None:
    cur = await conn.execute(
        f"SELECT c.*, {EFFECTIVE_MODE} FROM rm_inbox.conversations c{WITH_CONNECTION}"
        " WHERE c.conversation_id = %(id)s AND c.tenant_id = %(tenant)s",
        {"id": conversation_id, "tenant": tenant_id, "auto_kinds": auto_kinds},
    )
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Conversation, strict=False)


async def provider_id_of_sent(conn: Connection, message_id: str) -> str | None:
    """The provider's id of a message we sent, once the provider confirmed it (else None)."""
    cur = await conn.execute(
        "SELECT provider_message_id FROM rm_inbox.messages WHERE message_id = %s AND direction = 'out'"
        " AND status IN ('sent', 'delivered', 'read')",
        (message_id,),
    )
    row = await cur.fetchone()
    return None if row is None else str(row["provider_message_id"])


async def drafts(conn: Connection, tenant_id: str, conversation_id: str, *, pending: bool) -> list[Draft]:
    """The conversation's drafts, newest first (only those waiting for a person: ``pending``)."""
    cur = await conn.execute(
        "SELECT * FROM rm_inbox.drafts WHERE tenant_id = %s AND conversation_id = %s"
        " AND (NOT %s OR status = 'pending') ORDER BY created_at DESC, draft_id DESC LIMIT 50",
        (tenant_id, conversation_id, pending),
    )
    return [msgspec.convert(r, Draft, strict=False) for r in await cur.fetchall()]


async def draft(conn: Connection, tenant_id: str, draft_id: str) -> Draft | None:
    return await one_row(
        conn,
        Draft,
        "SELECT * FROM rm_inbox.drafts WHERE draft_id = %s AND tenant_id = %s",
        (draft_id, tenant_id),
    )


async def messages(
    conn: Connection, tenant_id: str, conversation_id: str, *, limit: int, before_seq: int | None = None
) -> list[Message]:
    """Newest first, with their media; those before ``before_seq`` only."""
    params: dict[str, Any] = {"tenant": tenant_id, "conversation": conversation_id, "limit": limit}
    before = ""
    if before_seq is not None:
        params["before"] = before_seq
        before = "AND m.seq < %(before)s"
    rows = await (
        await conn.execute(
            f"SELECT m.*, {MEDIA_OF_MESSAGE} AS media, {REACTIONS_OF_MESSAGE} AS reactions"
            " FROM rm_inbox.messages m"
            " WHERE m.tenant_id = %(tenant)s"
            f" AND m.conversation_id = %(conversation)s {before} ORDER BY m.seq DESC LIMIT %(limit)s",
            params,
        )
    ).fetchall()
    return [msgspec.convert(r, Message, strict=False) for r in rows]


async def search(
    conn: Connection, tenant_id: str, words: str, *, limit: int, contact_id: str | None = None
) -> list[SearchHit]:
    """Full-text matches over the tenant's messages, best first, the matches marked;
    ``contact_id``: only in that person's conversations, on every channel."""
    rows = await (
        await conn.execute(
            "SELECT m.message_id, m.conversation_id, c.title AS conversation_title, m.channel,"
            " m.sender_name, m.sent_at, ts_rank(m.search, query) AS rank,"
            " ts_headline('simple', m.text, query, 'StartSel=\x02,StopSel=\x03') AS highlight"
            " FROM rm_inbox.messages m JOIN rm_inbox.conversations c USING (conversation_id),"
            " websearch_to_tsquery('simple', %(q)s) query"
            " WHERE m.tenant_id = %(tenant)s AND m.deleted_at IS NULL AND m.search @@ query"
            " AND (%(contact)s::text IS NULL OR m.conversation_id IN ("
            " SELECT ic.conversation_id FROM rm_contacts.identity_conversations ic"
            " JOIN rm_contacts.identities i ON i.identity_id = ic.identity_id"
            " WHERE i.contact_id = %(contact)s AND i.tenant_id = %(tenant)s))"
            " ORDER BY rank DESC, m.seq DESC LIMIT %(limit)s",
            {"q": words, "tenant": tenant_id, "limit": limit, "contact": contact_id},
        )
    ).fetchall()
    return [
        msgspec.convert(r | {"highlight": _safe_highlight(r["highlight"])}, SearchHit, strict=False)
        for r in rows
    ]


def _safe_highlight(text: str) -> str:
    """Message text is untrusted: escape it, then mark the matches (``<mark>…</mark>``)."""
    return html.escape(text).replace("\x02", "<mark>").replace("\x03", "</mark>")


async def recent_messages(conn: Connection, conversation_id: str, limit: int) -> list[PastMessage]:
    """The conversation's latest messages, oldest first (deleted and failed ones left out)."""
    cur = await conn.execute(
        "SELECT message_id, direction, sender_name, text, sent_at FROM rm_inbox.messages"
        " WHERE conversation_id = %s AND deleted_at IS NULL AND status <> 'failed'"
        " ORDER BY seq DESC LIMIT %s",
        (conversation_id, limit),
    )
    rows = await cur.fetchall()
    return [msgspec.convert(r, PastMessage) for r in reversed(rows)]


async def find_messages(
    conn: Connection, words: str, *, conversation_id: str | None, limit: int
) -> list[FoundMessage]:
    """The best matches for ``words`` in one conversation, or in every one when None."""
    cur = await conn.execute(
        "SELECT m.sender_name, m.text, m.sent_at, c.title FROM rm_inbox.messages m"
        " JOIN rm_inbox.conversations c USING (conversation_id),"
        " websearch_to_tsquery('simple', %(query)s) q WHERE m.search @@ q AND m.deleted_at IS NULL"
        " AND (%(conversation)s::text IS NULL OR m.conversation_id = %(conversation)s)"
        " ORDER BY ts_rank(m.search, q) DESC, m.seq DESC LIMIT %(limit)s",
        {"query": words, "conversation": conversation_id, "limit": limit},
    )
    return [msgspec.convert(r, FoundMessage) for r in await cur.fetchall()]


async def media_file(conn: Connection, tenant_id: str, media_id: str) -> StoredMedia | None:
    return await one_row(
        conn,
        StoredMedia,
        "SELECT mime, storage_key FROM rm_inbox.media WHERE media_id = %s AND tenant_id = %s",
        (media_id, tenant_id),
    )


async def conversation_of_message(conn: Connection, message_id: str) -> str | None:
    """The conversation a message belongs to, or None (the caller's tenant only, by row security)."""
    cur = await conn.execute(
        "SELECT conversation_id FROM rm_inbox.messages WHERE message_id = %s", (message_id,)
    )
    row = await cur.fetchone()
    return None if row is None else str(row["conversation_id"])


async def needing_reply(conn: Connection, tenant_id: str) -> int:
    """How many of the tenant's conversations wait for a reply (not snoozed)."""
    cur = await conn.execute(
        f"SELECT count(*) AS n FROM rm_inbox.conversations c WHERE c.tenant_id = %s AND {NEEDS_REPLY}",
        (tenant_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row is not None else 0


class ScheduledMessage(msgspec.Struct, frozen=True):
    message_id: str
    conversation_id: str
    status: str
    sent_at: datetime  # a scheduled one: when it goes


async def outgoing(conn: Connection, tenant_id: str, message_id: str) -> ScheduledMessage | None:
    """A message of ours (sent, on its way or scheduled) by id, or None."""
    return await one_row(
        conn,
        ScheduledMessage,
        "SELECT message_id, conversation_id, status, sent_at FROM rm_inbox.messages"
        " WHERE message_id = %s AND tenant_id = %s AND direction = 'out'",
        (message_id, tenant_id),
    )


class DueMessage(msgspec.Struct, frozen=True):
    tenant_id: str
    message_id: str
    seq: int  # where its request is in the log


async def due_scheduled(conn: Connection, now: datetime, *, limit: int) -> list[DueMessage]:
    """Scheduled messages whose time has come, across tenants (the owner role reads them),
    the earliest first."""
    cur = await conn.execute(
        "SELECT tenant_id, message_id, seq FROM rm_inbox.messages WHERE status = 'scheduled'"
        " AND sent_at <= %s ORDER BY sent_at LIMIT %s",
        (now, limit),
    )
    return [msgspec.convert(r, DueMessage, strict=False) for r in await cur.fetchall()]


class FollowUp(msgspec.Struct, frozen=True):
    """ "Nudge me if they have not answered by then"."""

    follow_up_id: str
    conversation_id: str
    due_at: datetime
    only_if_no_reply: bool
    note: str | None
    status: str  # proposed (by the agent), waiting, answered (they wrote first), due (reminded), cancelled
    created_at: datetime
    decided_at: datetime | None
    title: str = ""  # the conversation's


_FOLLOW_UP = (
    "SELECT f.follow_up_id, f.conversation_id, f.due_at, f.only_if_no_reply, f.note, f.status,"
    " f.created_at, f.decided_at, coalesce(c.title, '') AS title FROM rm_inbox.follow_ups f"
    " LEFT JOIN rm_inbox.conversations c ON c.conversation_id = f.conversation_id"
)


async def follow_ups(conn: Connection, tenant_id: str, *, status: str | None, limit: int) -> list[FollowUp]:
    """The tenant's follow-ups (with ``status`` only, when given), the soonest due first."""
    cur = await conn.execute(
        f"{_FOLLOW_UP} WHERE f.tenant_id = %(tenant)s AND (%(status)s::text IS NULL OR f.status = %(status)s)"
        " ORDER BY f.due_at, f.follow_up_id LIMIT %(limit)s",
        {"tenant": tenant_id, "status": status, "limit": limit},
    )
    return [msgspec.convert(r, FollowUp, strict=False) for r in await cur.fetchall()]


async def follow_up(conn: Connection, tenant_id: str, follow_up_id: str) -> FollowUp | None:
    return await one_row(
        conn,
        FollowUp,
        f"{_FOLLOW_UP} WHERE f.follow_up_id = %s AND f.tenant_id = %s",
        (follow_up_id, tenant_id),
    )


async def follow_ups_due(conn: Connection, tenant_id: str) -> int:
    """How many of the tenant's reminders are due (reminded, not dismissed)."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM rm_inbox.follow_ups WHERE tenant_id = %s AND status = 'due'", (tenant_id,)
    )
    row = await cur.fetchone()
    return int(row["n"]) if row is not None else 0


class DueFollowUp(msgspec.Struct, frozen=True):
    tenant_id: str
    follow_up_id: str
    conversation_id: str
    note: str | None


async def due_follow_ups(conn: Connection, now: datetime, *, limit: int) -> list[DueFollowUp]:
    """Follow-ups whose time has come and whose condition held, across tenants (owner role)."""
    cur = await conn.execute(
        "SELECT tenant_id, follow_up_id, conversation_id, note FROM rm_inbox.follow_ups"
        " WHERE status = 'waiting' AND due_at <= %s ORDER BY due_at LIMIT %s",
        (now, limit),
    )
    return [msgspec.convert(r, DueFollowUp, strict=False) for r in await cur.fetchall()]


class Waiting(msgspec.Struct, frozen=True):
    conversation_id: str
    channel: str
    title: str
    awaiting_since: datetime
    last_message_preview: str | None


async def waiting_since_before(
    conn: Connection, tenant_id: str, before: datetime, *, limit: int
) -> list[Waiting]:
    """Conversations that wait for a reply now (not snoozed) and have since before ``before``,
    the longest waiting first."""
    cur = await conn.execute(
        "SELECT c.conversation_id, c.channel, c.title, c.awaiting_since, c.last_message_preview"
        f" FROM rm_inbox.conversations c WHERE c.tenant_id = %s AND {NEEDS_REPLY} AND c.awaiting_since < %s"
        " ORDER BY c.awaiting_since LIMIT %s",
        (tenant_id, before, limit),
    )
    return [msgspec.convert(r, Waiting, strict=False) for r in await cur.fetchall()]


async def follow_ups_between(
    conn: Connection, tenant_id: str, start: datetime, end: datetime, *, limit: int
) -> list[FollowUp]:
    """Follow-ups due in [start, end) that still matter: waiting, or reminded and not dismissed."""
    cur = await conn.execute(
        f"{_FOLLOW_UP} WHERE f.tenant_id = %s AND f.status IN ('waiting', 'due')"
        " AND f.due_at >= %s AND f.due_at < %s ORDER BY f.due_at LIMIT %s",
        (tenant_id, start, end, limit),
    )
    return [msgspec.convert(r, FollowUp, strict=False) for r in await cur.fetchall()]


async def has_message_or_draft(conn: Connection, message_id: str, draft_id: str) -> bool:
    """Whether the message, or the draft, is in the inbox."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM rm_inbox.messages WHERE message_id = %s)"
        " OR EXISTS (SELECT 1 FROM rm_inbox.drafts WHERE draft_id = %s) AS found",
        (message_id, draft_id),
    )
    row = await cur.fetchone()
    return bool(row and row["found"])


class Mention(msgspec.Struct, frozen=True):
    """A message in a group that called the agent (or you, where the channel says so)."""

    message_id: str
    conversation_id: str
    channel: str
    title: str
    sender_name: str
    text: str
    sent_at: datetime


async def mentions_between(
    conn: Connection, tenant_id: str, start: datetime, end: datetime, *, limit: int
) -> list[Mention]:
    """Messages in groups and threads in [start, end) that mention the agent, newest first."""
    cur = await conn.execute(
        "SELECT m.message_id, m.conversation_id, m.channel, c.title, m.sender_name,"
        " left(m.text, 200) AS text, m.sent_at"
        " FROM rm_inbox.messages m JOIN rm_inbox.conversations c USING (conversation_id)"
        " WHERE m.tenant_id = %s AND m.mentions_agent AND m.deleted_at IS NULL AND c.kind <> 'direct'"
        " AND m.sent_at >= %s AND m.sent_at < %s ORDER BY m.sent_at DESC LIMIT %s",
        (tenant_id, start, end, limit),
    )
    return [msgspec.convert(r, Mention, strict=False) for r in await cur.fetchall()]


class WhileAway(msgspec.Struct, frozen=True):
    """What happened in an inbox while it was away."""

    received: int  # messages from people
    conversations: int  # conversations they came in
    noticed: int  # conversations the away answer went to
    still_waiting: int  # of those conversations, how many need a reply now


async def while_away(conn: Connection, tenant_id: str, start: datetime, end: datetime) -> WhileAway:
    """What came in during [start, end), and what of it still needs a reply."""
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE m.direction = 'in') AS received,"
        " count(DISTINCT m.conversation_id) FILTER (WHERE m.direction = 'in') AS conversations,"
        " count(DISTINCT m.conversation_id) FILTER (WHERE m.sender_id = %(notice)s) AS noticed,"
        " count(DISTINCT c.conversation_id) FILTER (WHERE m.direction = 'in' AND c.awaiting_since"
        " IS NOT NULL) AS still_waiting"
        " FROM rm_inbox.messages m JOIN rm_inbox.conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.tenant_id = %(tenant)s AND m.sent_at >= %(start)s AND m.sent_at < %(end)s",
        {"tenant": tenant_id, "start": start, "end": end, "notice": AWAY_SENDER.id},
    )
    row = await cur.fetchone()
    return msgspec.convert(row, WhileAway) if row is not None else WhileAway(0, 0, 0, 0)


async def received_between(conn: Connection, tenant_id: str, start: datetime, end: datetime) -> int:
    """How many messages from people arrived in [start, end)."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM rm_inbox.messages WHERE tenant_id = %s AND direction = 'in'"
        " AND sent_at >= %s AND sent_at < %s",
        (tenant_id, start, end),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row is not None else 0


class KnownConversation(msgspec.Struct, frozen=True):
    conversation_id: str
    channel: str
    kind: ConversationKind
    external_id: str
    title: str


async def known_conversations(conn: Connection, conversation_ids: list[str]) -> dict[str, KnownConversation]:
    """Which of these conversations the inbox has (an import continuing), by id."""
    if not conversation_ids:
        return {}
    cur = await conn.execute(
        "SELECT conversation_id, channel, kind, external_id, title FROM rm_inbox.conversations"
        " WHERE conversation_id = ANY(%s)",
        (conversation_ids,),
    )
    return {row["conversation_id"]: KnownConversation(**row) for row in await cur.fetchall()}


async def stored_messages(conn: Connection, message_ids: list[str]) -> set[str]:
    """Which of these messages the inbox has."""
    if not message_ids:
        return set()
    cur = await conn.execute(
        "SELECT message_id FROM rm_inbox.messages WHERE message_id = ANY(%s)", (message_ids,)
    )
    return {row["message_id"] for row in await cur.fetchall()}


# What an inbox's own export holds of this read model (gateway/export.py), oldest first.
EXPORT_CONVERSATIONS = (
    "SELECT conversation_id, channel, connection_id, kind, title, external_id, created_at, pinned,"
    " agent_mode, preview FROM rm_inbox.conversations ORDER BY created_at, conversation_id"
)
EXPORT_MESSAGES = (
    "SELECT message_id, conversation_id, direction, channel, sender_id, sender_name, text, sent_at,"
    " edited_at, deleted_at, status, agent_run_id, reply_to_message_id, attachments"
    " FROM rm_inbox.messages ORDER BY seq"
)
EXPORT_MEDIA = (
    "SELECT media_id, message_id, conversation_id, mime, size, sha256, storage_key FROM rm_inbox.media"
    " ORDER BY media_id"
)
