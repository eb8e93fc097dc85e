"""Queries on the inbox read model (``projections/inbox.py``): conversations, messages, their
media and full-text search. Each takes a connection already in a tenant's transaction
(``adapters.postgres.tenancy.tenant_transaction``) and answers with Structs."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import msgspec

from adapters.postgres.database import Connection
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

    @property
    def active_at(self) -> datetime:
        """When the conversation last saw a message (or began): the list's order."""
        return self.last_message_at or self.created_at


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
        "SELECT conversation_id, channel, connection_id, kind, external_id, agent_enabled"
        " FROM rm_inbox.conversations WHERE conversation_id = %s AND tenant_id = %s",
        (conversation_id, tenant_id),
    )


async def conversations(
    conn: Connection,
    tenant_id: str,
    *,
    limit: int,
    channel: str | None = None,
    unread: bool | None = None,
    agent_enabled: bool | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[Conversation]:
    """Most recently active first (``active_at``, then id), those before ``before`` only."""
    where = ["tenant_id = %(tenant)s"]
    params: dict[str, Any] = {"tenant": tenant_id, "limit": limit}
    if channel is not None:
        where.append("channel = %(channel)s")
        params["channel"] = channel
    if unread is not None:
        where.append("(unread_count > 0) = %(unread)s")
        params["unread"] = unread
    if agent_enabled is not None:
        where.append("agent_enabled = %(agent)s")
        params["agent"] = agent_enabled
    if before is not None:
        where.append("(coalesce(last_message_at, created_at), conversation_id) < (%(c_at)s, %(c_id)s)")
        params |= {"c_at": before[0], "c_id": before[1]}
    query = (
        "SELECT * FROM rm_inbox.conversations"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY coalesce(last_message_at, created_at) DESC, conversation_id DESC LIMIT %(limit)s"
    )
    rows = await (await conn.execute(query, params)).fetchall()
    return [msgspec.convert(r, Conversation, strict=False) for r in rows]


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
            f"SELECT m.*, {MEDIA_OF_MESSAGE} AS media FROM rm_inbox.messages m"
            " WHERE m.tenant_id = %(tenant)s"
            f" AND m.conversation_id = %(conversation)s {before} ORDER BY m.seq DESC LIMIT %(limit)s",
            params,
        )
    ).fetchall()
    return [msgspec.convert(r, Message, strict=False) for r in rows]


async def search(conn: Connection, tenant_id: str, words: str, *, limit: int) -> list[SearchHit]:
    """Full-text matches over the tenant's messages, best first, the matches marked."""
    rows = await (
        await conn.execute(
            "SELECT m.message_id, m.conversation_id, c.title AS conversation_title, m.channel,"
            " m.sender_name, m.sent_at, ts_rank(m.search, query) AS rank,"
            " ts_headline('simple', m.text, query, 'StartSel=\x02,StopSel=\x03') AS highlight"
            " FROM rm_inbox.messages m JOIN rm_inbox.conversations c USING (conversation_id),"
            " websearch_to_tsquery('simple', %(q)s) query"
            " WHERE m.tenant_id = %(tenant)s AND m.deleted_at IS NULL AND m.search @@ query"
            " ORDER BY rank DESC, m.seq DESC LIMIT %(limit)s",
            {"q": words, "tenant": tenant_id, "limit": limit},
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
