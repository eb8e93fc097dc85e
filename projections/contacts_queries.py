"""Queries on the contacts read model (``projections/contacts.py``). Each takes a connection
already in a tenant's transaction (row-level security) and answers with Structs."""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters.postgres.database import Connection
from domain.reads import Elsewhere, Person
from projections.rows import one_row


class Identity(msgspec.Struct, frozen=True):
    identity_id: str
    contact_id: str
    channel: str
    connection_id: str
    sender_id: str
    display_name: str
    phone: str | None
    email: str | None
    first_seen: datetime
    last_seen: datetime


class ContactSummary(msgspec.Struct, frozen=True):
    contact_id: str
    display_name: str
    channels: list[str]
    last_seen: datetime | None


class ContactConversation(msgspec.Struct, frozen=True):
    conversation_id: str
    channel: str
    title: str
    last_message_at: datetime | None


class Suggestion(msgspec.Struct, frozen=True):
    """Another contact that may be the same person, and why (what they share)."""

    contact_id: str
    display_name: str
    reason: str  # "same phone +15551234567", "same e-mail ada@example.com"


class SuggestedPair(msgspec.Struct, frozen=True):
    """Two contacts that may be the same person, and why (what they share)."""

    contact_id: str  # the lesser id of the two: each pair comes once
    display_name: str
    other_contact_id: str
    other_display_name: str
    reason: str  # as a Suggestion's


class Contact(msgspec.Struct, frozen=True):
    contact_id: str
    display_name: str
    notes: str
    created_at: datetime
    identities: list[Identity]
    conversations: list[ContactConversation]
    suggestions: list[Suggestion]


_LIVE = "c.merged_into IS NULL"


async def contacts(conn: Connection, *, q: str | None, limit: int) -> list[ContactSummary]:
    """Contacts (not merged away), the most recently heard from first; ``q``: in a name, a
    phone number or an e-mail address of theirs, any case."""
    pattern = None
    if q is not None:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur = await conn.execute(
        "SELECT c.contact_id, c.display_name, array_agg(DISTINCT i.channel) AS channels,"
        " max(i.last_seen) AS last_seen FROM rm_contacts.contacts c"
        " JOIN rm_contacts.identities i ON i.contact_id = c.contact_id"
        f" WHERE {_LIVE} GROUP BY c.contact_id, c.display_name"
        " HAVING %(q)s::text IS NULL OR c.display_name ILIKE %(q)s"
        " OR bool_or(i.display_name ILIKE %(q)s OR i.phone ILIKE %(q)s OR i.email ILIKE %(q)s)"
        " ORDER BY max(i.last_seen) DESC, c.contact_id LIMIT %(limit)s",
        {"q": pattern, "limit": limit},
    )
    return [msgspec.convert(r, ContactSummary, strict=False) for r in await cur.fetchall()]


async def live_contact_id(conn: Connection, contact_id: str) -> str | None:
    """``contact_id`` when it is a contact (not merged away), else None."""
    cur = await conn.execute(
        f"SELECT contact_id FROM rm_contacts.contacts c WHERE c.contact_id = %s AND {_LIVE}", (contact_id,)
    )
    row = await cur.fetchone()
    return None if row is None else str(row["contact_id"])


async def identity(conn: Connection, identity_id: str) -> Identity | None:
    return await one_row(
        conn, Identity, "SELECT * FROM rm_contacts.identities WHERE identity_id = %s", (identity_id,)
    )


async def contact(conn: Connection, contact_id: str) -> Contact | None:
    """A contact with its identities on every channel, its conversations, and suggestions."""
    cur = await conn.execute(
        f"SELECT contact_id, display_name, notes, created_at FROM rm_contacts.contacts c"
        f" WHERE c.contact_id = %s AND {_LIVE}",
        (contact_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute(
        "SELECT * FROM rm_contacts.identities WHERE contact_id = %s ORDER BY first_seen, identity_id",
        (contact_id,),
    )
    identities = [msgspec.convert(r, Identity, strict=False) for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT DISTINCT v.conversation_id, v.channel, v.title, v.last_message_at"
        " FROM rm_contacts.identities i"
        " JOIN rm_contacts.identity_conversations ic ON ic.identity_id = i.identity_id"
        " JOIN rm_inbox.conversations v ON v.conversation_id = ic.conversation_id"
        " WHERE i.contact_id = %s ORDER BY v.last_message_at DESC NULLS LAST LIMIT 50",
        (contact_id,),
    )
    conversations = [msgspec.convert(r, ContactConversation, strict=False) for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT DISTINCT ON (c.contact_id) c.contact_id, c.display_name,"
        " CASE WHEN o.phone IS NOT NULL AND o.phone = mine.phone THEN 'same phone ' || o.phone"
        " ELSE 'same e-mail ' || o.email END AS reason"
        " FROM rm_contacts.identities mine"
        " JOIN rm_contacts.identities o ON o.contact_id <> mine.contact_id"
        " AND ((mine.phone IS NOT NULL AND o.phone = mine.phone)"
        " OR (mine.email IS NOT NULL AND o.email = mine.email))"
        " JOIN rm_contacts.contacts c ON c.contact_id = o.contact_id AND c.merged_into IS NULL"
        " WHERE mine.contact_id = %s ORDER BY c.contact_id LIMIT 20",
        (contact_id,),
    )
    suggestions = [msgspec.convert(r, Suggestion, strict=False) for r in await cur.fetchall()]
    return Contact(
        row["contact_id"],
        row["display_name"],
        row["notes"],
        row["created_at"],
        identities,
        conversations,
        suggestions,
    )


async def suggested_pairs(conn: Connection, *, limit: int) -> list[SuggestedPair]:
    """Every pair of contacts (not merged away) whose identities share a phone number or an
    e-mail address, each pair once, the most recently heard from first."""
    cur = await conn.execute(
        # phone and e-mail apart, so each side of the join can use its (tenant_id, …) index;
        # tenant_id equal on both, though row security already keeps to one tenant
        "WITH shared AS ("
        " SELECT a.contact_id AS one, b.contact_id AS other, 0 AS rank, 'same phone ' || a.phone AS reason"
        " FROM rm_contacts.identities a JOIN rm_contacts.identities b"
        " ON b.tenant_id = a.tenant_id AND b.phone = a.phone AND b.contact_id > a.contact_id"
        " UNION ALL"
        " SELECT a.contact_id, b.contact_id, 1, 'same e-mail ' || a.email"
        " FROM rm_contacts.identities a JOIN rm_contacts.identities b"
        " ON b.tenant_id = a.tenant_id AND b.email = a.email AND b.contact_id > a.contact_id),"
        # one reason a pair: a phone before an e-mail address, then the first in order
        " pairs AS (SELECT DISTINCT ON (one, other) one, other, reason FROM shared"
        " ORDER BY one, other, rank, reason)"
        " SELECT c.contact_id, c.display_name, o.contact_id AS other_contact_id,"
        " o.display_name AS other_display_name, p.reason FROM pairs p"
        " JOIN rm_contacts.contacts c ON c.contact_id = p.one AND c.merged_into IS NULL"
        " JOIN rm_contacts.contacts o ON o.contact_id = p.other AND o.merged_into IS NULL"
        " AND o.tenant_id = c.tenant_id"
        " ORDER BY (SELECT max(i.last_seen) FROM rm_contacts.identities i"
        " WHERE i.contact_id IN (p.one, p.other)) DESC, c.contact_id, o.contact_id LIMIT %(limit)s",
        {"limit": limit},
    )
    return [msgspec.convert(r, SuggestedPair, strict=False) for r in await cur.fetchall()]


async def person_of(conn: Connection, conversation_id: str, *, elsewhere: int = 5) -> Person | None:
    """Who a direct conversation is with (its contact), with their ``elsewhere`` latest other
    conversations; None for a group or a conversation no contact is known in."""
    cur = await conn.execute(
        "SELECT c.contact_id, c.display_name, c.notes FROM rm_contacts.identity_conversations ic"
        " JOIN rm_contacts.identities i ON i.identity_id = ic.identity_id"
        " JOIN rm_contacts.contacts c ON c.contact_id = i.contact_id"
        " JOIN rm_inbox.conversations v ON v.conversation_id = ic.conversation_id AND v.kind = 'direct'"
        " WHERE ic.conversation_id = %s LIMIT 1",
        (conversation_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute(
        "SELECT conversation_id, channel, last_message_at, last_message_preview FROM ("
        " SELECT DISTINCT v.conversation_id, v.channel, v.last_message_at, v.last_message_preview"
        " FROM rm_contacts.identities i"
        " JOIN rm_contacts.identity_conversations ic ON ic.identity_id = i.identity_id"
        " JOIN rm_inbox.conversations v ON v.conversation_id = ic.conversation_id"
        " WHERE i.contact_id = %s AND v.conversation_id <> %s) o"
        " ORDER BY last_message_at DESC NULLS LAST LIMIT %s",
        (row["contact_id"], conversation_id, elsewhere),
    )
    others = [msgspec.convert(r, Elsewhere, strict=False) for r in await cur.fetchall()]
    return Person(row["contact_id"], row["display_name"], row["notes"], others)


# What an inbox's own export holds of this read model (gateway/export.py).
EXPORT_CONTACTS = (
    "SELECT c.contact_id, c.display_name, c.notes, c.created_at,"
    " coalesce(jsonb_agg(jsonb_build_object('channel', i.channel, 'sender_id', i.sender_id,"
    " 'display_name', i.display_name, 'phone', i.phone, 'email', i.email, 'first_seen', i.first_seen,"
    " 'last_seen', i.last_seen) ORDER BY i.first_seen) FILTER (WHERE i.identity_id IS NOT NULL), '[]')"
    " AS identities"
    " FROM rm_contacts.contacts c LEFT JOIN rm_contacts.identities i ON i.contact_id = c.contact_id"
    " WHERE c.merged_into IS NULL GROUP BY c.contact_id ORDER BY c.created_at, c.contact_id"
)
