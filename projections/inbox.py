"""Read model: the unified inbox — conversations (unread, last message, agent on/off)
and their messages, with a full-text index over message text.

Inbox traffic is the bulk of the log, so a batch is folded in memory first and written
with as few statements as possible: COPY for new conversations and messages, one
executemany for changed conversations and one for changed older messages. A message
already stored (a provider retry outside the duplicate window) is skipped, so unread
counts never double.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.postgres.database import Connection
from domain import agent as agent_policy
from domain import events as ev
from domain.events import Event
from projections.base import Batch, Rejected

PREVIEW_CHARS = 140

SCHEMA = """
CREATE TABLE conversations (
    conversation_id      text PRIMARY KEY,
    tenant_id            text NOT NULL,
    channel              text NOT NULL,
    connection_id        text NOT NULL,
    kind                 text NOT NULL,
    title                text NOT NULL,
    external_id          text NOT NULL,
    agent_enabled        boolean NOT NULL,
    pinned               boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL,
    last_message_id      text,
    last_message_at      timestamptz,
    last_message_preview text,
    message_count        integer NOT NULL DEFAULT 0,
    unread_count         integer NOT NULL DEFAULT 0,
    last_seq             bigint NOT NULL,
    agent_mode           text,            -- its own: auto, draft, off (NULL: its connection's)
    agent_paused_until   timestamptz,     -- the agent stepped back until then
    preview              boolean NOT NULL DEFAULT false,  -- the owner's own "Try it" chat
    awaiting_since       timestamptz,     -- the oldest message nobody has answered yet (NULL: none)
    snoozed_until        timestamptz      -- out of "Needs reply" until then
);
CREATE TABLE messages (
    message_id          text PRIMARY KEY,
    tenant_id           text NOT NULL,
    conversation_id     text NOT NULL,
    seq                 bigint NOT NULL,
    direction           text NOT NULL,
    channel             text NOT NULL,
    connection_id       text NOT NULL,
    provider_message_id text NOT NULL,
    sender_id           text NOT NULL,
    sender_name         text NOT NULL,
    text                text NOT NULL,
    sent_at             timestamptz NOT NULL,
    edited_at           timestamptz,
    deleted_at          timestamptz,
    status              text NOT NULL,
    agent_run_id        text,
    reply_to_message_id text,
    attachments         integer NOT NULL DEFAULT 0,
    mentions_agent      boolean NOT NULL DEFAULT false,  -- a group message that calls the agent (or you)
    search              tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
);
-- With the tables, not with INDEXES: every batch, a rebuild's too, looks messages up by it.
CREATE UNIQUE INDEX messages_provider_id ON messages (connection_id, direction, provider_message_id);
CREATE TABLE media (
    media_id        text PRIMARY KEY,
    tenant_id       text NOT NULL,
    message_id      text NOT NULL,
    conversation_id text NOT NULL,
    mime            text NOT NULL,
    size            bigint NOT NULL,
    sha256          text NOT NULL,
    storage_key     text NOT NULL
);
CREATE TABLE drafts (
    draft_id            text PRIMARY KEY,
    tenant_id           text NOT NULL,
    conversation_id     text NOT NULL,
    run_id              text NOT NULL,
    text                text NOT NULL,
    reply_to_message_id text,
    reason              text NOT NULL,
    flag                text,           -- injection_suspected: what looked like an attack
    status              text NOT NULL,  -- pending, sent, discarded
    sent_message_id     text,
    created_at          timestamptz NOT NULL,
    seq                 bigint NOT NULL
);
CREATE TABLE follow_ups (
    follow_up_id     text PRIMARY KEY,
    tenant_id        text NOT NULL,
    conversation_id  text NOT NULL,
    due_at           timestamptz NOT NULL,
    only_if_no_reply boolean NOT NULL,
    note             text,
    status           text NOT NULL,  -- proposed, waiting, answered (they wrote first), due, cancelled
    created_at       timestamptz NOT NULL,
    decided_at       timestamptz,
    seq              bigint NOT NULL  -- where it was scheduled: a reply after it answers it
);
CREATE TABLE reactions (
    message_id text NOT NULL,
    tenant_id  text NOT NULL,
    emoji      text NOT NULL,
    sender_id  text NOT NULL,
    added_at   timestamptz NOT NULL,
    PRIMARY KEY (message_id, emoji, sender_id)
);
"""

INDEXES = """
CREATE INDEX conversations_tenant_recent ON conversations (tenant_id, last_message_at DESC NULLS LAST);
CREATE INDEX messages_conversation_seq ON messages (conversation_id, seq);
CREATE INDEX messages_tenant ON messages (tenant_id, seq);
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX media_message ON media (message_id);
CREATE INDEX drafts_conversation ON drafts (conversation_id, created_at);
CREATE INDEX conversations_waiting ON conversations (tenant_id, awaiting_since)
    WHERE awaiting_since IS NOT NULL;
CREATE INDEX messages_scheduled ON messages (sent_at) WHERE status = 'scheduled';
CREATE INDEX follow_ups_waiting ON follow_ups (conversation_id) WHERE status = 'waiting';
CREATE INDEX follow_ups_due ON follow_ups (due_at) WHERE status = 'waiting';
CREATE INDEX follow_ups_tenant ON follow_ups (tenant_id, status, due_at);
"""

# Each table's COPY columns with their types: COPY writes binary rows, which PostgreSQL
# reads without parsing text (about 1.5x the rows per second of text COPY into messages, measured).
CONVERSATION_COLUMNS: dict[str, str] = {
    "conversation_id": "text",
    "tenant_id": "text",
    "channel": "text",
    "connection_id": "text",
    "kind": "text",
    "title": "text",
    "external_id": "text",
    "agent_enabled": "bool",
    "pinned": "bool",
    "created_at": "timestamptz",
    "last_message_id": "text",
    "last_message_at": "timestamptz",
    "last_message_preview": "text",
    "message_count": "int4",
    "unread_count": "int4",
    "last_seq": "int8",
    "agent_mode": "text",
    "agent_paused_until": "timestamptz",
    "preview": "bool",
    "awaiting_since": "timestamptz",
    "snoozed_until": "timestamptz",
}
MESSAGE_COLUMNS: dict[str, str] = {
    "message_id": "text",
    "tenant_id": "text",
    "conversation_id": "text",
    "seq": "int8",
    "direction": "text",
    "channel": "text",
    "connection_id": "text",
    "provider_message_id": "text",
    "sender_id": "text",
    "sender_name": "text",
    "text": "text",
    "sent_at": "timestamptz",
    "edited_at": "timestamptz",
    "deleted_at": "timestamptz",
    "status": "text",
    "agent_run_id": "text",
    "reply_to_message_id": "text",
    "attachments": "int4",
    "mentions_agent": "bool",
}

_MESSAGE_INDEX = {name: index for index, name in enumerate(MESSAGE_COLUMNS)}

UPDATE_CONVERSATION = """
UPDATE conversations SET
    title = COALESCE(%(title)s, title),
    agent_enabled = COALESCE(%(agent_enabled)s, agent_enabled),
    agent_mode = CASE WHEN %(mode_set)s THEN %(agent_mode)s ELSE agent_mode END,
    agent_paused_until = CASE WHEN %(pause_set)s THEN %(agent_paused_until)s ELSE agent_paused_until END,
    pinned = COALESCE(%(pinned)s, pinned),
    unread_count = GREATEST(
        CASE WHEN %(reset_unread)s THEN 0 ELSE unread_count END + %(unread_add)s,
        CASE WHEN %(at_least_one)s THEN 1 ELSE 0 END
    ),
    message_count = message_count + %(count_add)s,
    last_message_id = COALESCE(%(last_message_id)s, last_message_id),
    last_message_at = COALESCE(%(last_message_at)s, last_message_at),
    last_message_preview = COALESCE(%(last_message_preview)s, last_message_preview),
    -- answered in the batch: what waits is what came after the last answer, else the oldest
    awaiting_since = CASE WHEN %(answered)s THEN %(awaiting_since)s
                          ELSE COALESCE(awaiting_since, %(awaiting_since)s) END,
    snoozed_until = CASE WHEN %(snooze_set)s THEN %(snoozed_until)s ELSE snoozed_until END,
    last_seq = %(last_seq)s
WHERE conversation_id = %(conversation_id)s
"""

UPDATE_MESSAGE = """
UPDATE messages SET
    text = COALESCE(%(text)s, text),
    edited_at = COALESCE(%(edited_at)s, edited_at),
    deleted_at = COALESCE(%(deleted_at)s, deleted_at),
    provider_message_id = COALESCE(%(provider_message_id)s, provider_message_id),
    sent_at = COALESCE(%(sent_at)s, sent_at),
    -- a late failure report never turns a sent message into a failed one
    status = CASE WHEN status = 'sent' AND %(status)s = 'failed' THEN status
                  ELSE COALESCE(%(status)s, status) END
-- never another tenant's message, whatever id an event names
WHERE message_id = %(message_id)s AND tenant_id = %(tenant_id)s
"""

# A scheduled message called off before its release (a release always wins: it was sent).
CANCEL_SCHEDULED = (
    "UPDATE messages SET status = 'cancelled'"
    " WHERE message_id = %s AND tenant_id = %s AND status = 'scheduled'"
)

# Scheduled by a person, or a proposal of the agent approved (it waits from then on).
ADD_FOLLOW_UP = (
    "INSERT INTO follow_ups (follow_up_id, tenant_id, conversation_id, due_at, only_if_no_reply, note,"
    " status, created_at, seq) VALUES (%s, %s, %s, %s, %s, %s, 'waiting', %s, %s)"
    " ON CONFLICT (follow_up_id) DO UPDATE SET due_at = EXCLUDED.due_at,"
    " only_if_no_reply = EXCLUDED.only_if_no_reply, note = EXCLUDED.note, status = 'waiting',"
    " seq = EXCLUDED.seq WHERE follow_ups.status = 'proposed' AND follow_ups.tenant_id = EXCLUDED.tenant_id"
)
PROPOSE_FOLLOW_UP = (
    "INSERT INTO follow_ups (follow_up_id, tenant_id, conversation_id, due_at, only_if_no_reply, note,"
    " status, created_at, seq) VALUES (%s, %s, %s, %s, true, %s, 'proposed', %s, %s) ON CONFLICT DO NOTHING"
)
FOLLOW_UP_DUE = (
    "UPDATE follow_ups SET status = 'due', decided_at = %s"
    " WHERE follow_up_id = %s AND tenant_id = %s AND status = 'waiting'"
)
CANCEL_FOLLOW_UP = (
    "UPDATE follow_ups SET status = 'cancelled', decided_at = %s"
    " WHERE follow_up_id = %s AND tenant_id = %s AND status IN ('proposed', 'waiting', 'due')"
)
# The batch's latest message from a person in each conversation answers the follow-ups
# scheduled (or proposed) there before it (those that wait only if there is no reply).
ANSWER_FOLLOW_UPS = """
UPDATE follow_ups f SET status = 'answered', decided_at = k.at
FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[]) AS k(conversation_id, seq, at)
WHERE f.conversation_id = k.conversation_id AND f.status IN ('proposed', 'waiting') AND f.only_if_no_reply
  AND f.seq < k.seq
"""

# A receipt moves a sent message forward only (sent → delivered → read), never back.
MARK_STATUS = """
UPDATE messages SET status = %(status)s
WHERE tenant_id = %(tenant_id)s AND connection_id = %(connection_id)s AND direction = 'out'
  AND provider_message_id = %(provider_message_id)s
  AND (status = 'sent' OR (status = 'delivered' AND %(status)s = 'read'))
"""
ADD_REACTION = "INSERT INTO reactions VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
ADD_DRAFT = (
    "INSERT INTO drafts (draft_id, tenant_id, conversation_id, run_id, text, reply_to_message_id, reason,"
    " flag, status, created_at, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s)"
    " ON CONFLICT DO NOTHING"
)
# A draft is settled once: sent (by a send request naming it) or discarded, never both.
SETTLE_DRAFT = (
    "UPDATE drafts SET status = %s, sent_message_id = %s"
    " WHERE draft_id = %s AND tenant_id = %s AND status = 'pending'"
)
ADD_MEDIA = "INSERT INTO media VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
REMOVE_REACTION = (
    "DELETE FROM reactions WHERE message_id = %s AND emoji = %s AND sender_id = %s AND tenant_id = %s"
)


@dataclass
class _ConversationChange:
    """What a batch does to a conversation that already exists in the table."""

    conversation_id: str
    last_seq: int = 0
    title: str | None = None
    agent_enabled: bool | None = None
    mode_set: bool = False
    agent_mode: str | None = None
    pause_set: bool = False
    agent_paused_until: datetime | None = None
    pinned: bool | None = None
    reset_unread: bool = False
    at_least_one: bool = False  # marked unread: one unread at least
    unread_add: int = 0
    count_add: int = 0
    last_message_id: str | None = None
    last_message_at: datetime | None = None
    last_message_preview: str | None = None
    answered: bool = False  # someone answered in this batch
    awaiting_since: datetime | None = None  # the first message since then (or since the batch began)
    snooze_set: bool = False
    snoozed_until: datetime | None = None


@dataclass
class _MessageChange:
    message_id: str
    tenant_id: str
    text: str | None = None
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    status: str | None = None


@dataclass
class _Fold:
    """The batch folded in memory: new rows to COPY, changes to existing rows."""

    new_conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_messages: dict[str, list[Any]] = field(default_factory=dict)
    conversation_changes: dict[str, _ConversationChange] = field(default_factory=dict)
    message_changes: dict[tuple[str, str], _MessageChange] = field(default_factory=dict)  # (tenant, message)
    reaction_statements: list[tuple[str, Any]] = field(
        default_factory=list
    )  # ordered: reactions, media, receipts
    # conversation → (seq, time) of the batch's latest message from a person there
    replied: dict[str, tuple[int, datetime]] = field(default_factory=dict)


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class InboxBatch:
    def __init__(self) -> None:
        self._events: list[tuple[int, Event]] = []
        self._erased: list[str] = []  # tenants whose every row goes once the batch is written
        self._expired: list[tuple[str, datetime]] = []  # (tenant, before): older messages go

    def add(self, seq: int, event: Event) -> None:
        if isinstance(event, ev.TenantErased):
            self._erased.append(event.tenant_id)
            return
        if isinstance(event, ev.RetentionApplied):
            before = datetime.combine(event.data.before, datetime.min.time(), tzinfo=UTC)
            self._expired.append((event.tenant_id, before))
            return
        data = getattr(event, "data", None)
        message_id = getattr(data, "message_id", None)
        if message_id is not None and not message_id:
            raise Rejected(f"{event.type} has an empty message_id")
        self._events.append((seq, event))

    async def write(self, conn: Connection) -> None:
        stored = await self._already_stored(conn)
        fold = _Fold()
        for seq, event in self._events:
            _fold_event(fold, seq, event, stored)
        await _write_fold(conn, fold)
        for table in InboxProjection.tables if self._erased else ():
            await conn.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", (self._erased,))
        for tenant_id, before in self._expired:
            for statement in EXPIRE:
                await conn.execute(statement, {"tenant_id": tenant_id, "before": before})

    async def _already_stored(self, conn: Connection) -> dict[str, str]:
        """This batch's messages already in the table: message id → status, provider key → ""."""
        ids: list[str] = []
        connections: list[str] = []
        directions: list[str] = []
        provider_ids: list[str] = []
        for _, event in self._events:
            if isinstance(event, ev.MessageSendFailed):
                ids.append(event.data.message_id)
            elif isinstance(event, _MESSAGE_EVENTS):
                ids.append(event.data.message_id)
                connections.append(event.data.connection_id)
                directions.append(_direction(event))
                provider_ids.append(_provider_id(event))
        if not ids:
            return {}
        cur = await conn.execute(ALREADY_STORED, (ids, connections, directions, provider_ids))
        found: dict[str, str] = {}
        for row in await cur.fetchall():
            found[row["message_id"]] = row["status"]
            found[_provider_key(row["connection_id"], row["direction"], row["provider_message_id"])] = ""
        return found


# Two index lookups per message. One query with `message_id = ANY(...) OR (...) IN (unnest)`
# seq-scanned the table on every batch, even a batch of one (80 ms at 300k messages, growing
# with the inbox); a plain join on the unnest picks a hash join over a seq scan too. The
# LIMIT keeps the lateral subquery from being flattened into that join. The arrays go in
# binary (%b): the text form quotes each element with a regular expression, about a tenth
# of a rebuild's time in Python.
ALREADY_STORED = """
SELECT message_id, status, connection_id, direction, provider_message_id FROM messages
WHERE message_id = ANY(%b::text[])
UNION ALL
SELECT m.message_id, m.status, m.connection_id, m.direction, m.provider_message_id
FROM unnest(%b::text[], %b::text[], %b::text[]) AS k(connection_id, direction, provider_message_id)
CROSS JOIN LATERAL (
    SELECT * FROM messages
    WHERE connection_id = k.connection_id AND direction = k.direction
      AND provider_message_id = k.provider_message_id
    LIMIT 1
) AS m
"""

# A plan's history window moving on: messages sent before it go, with their files' rows and
# reactions, and conversations with nothing newer; the others count what they keep.
EXPIRE = (
    "DELETE FROM messages WHERE tenant_id = %(tenant_id)s AND sent_at < %(before)s",
    "DELETE FROM media m WHERE m.tenant_id = %(tenant_id)s"
    " AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.message_id = m.message_id)",
    "DELETE FROM reactions r WHERE r.tenant_id = %(tenant_id)s"
    " AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.message_id = r.message_id)",
    "DELETE FROM drafts WHERE tenant_id = %(tenant_id)s AND created_at < %(before)s",
    "DELETE FROM follow_ups WHERE tenant_id = %(tenant_id)s AND created_at < %(before)s",
    "DELETE FROM conversations WHERE tenant_id = %(tenant_id)s"
    " AND coalesce(last_message_at, created_at) < %(before)s",
    "UPDATE conversations c SET message_count = k.n, unread_count = least(c.unread_count, k.n)"
    " FROM (SELECT conversation_id, count(*) AS n FROM messages WHERE tenant_id = %(tenant_id)s"
    " GROUP BY conversation_id) AS k"
    " WHERE c.conversation_id = k.conversation_id AND c.message_count <> k.n",
)

_MESSAGE_EVENTS = (ev.MessageReceived, ev.MessageSendRequested, ev.MessageSent)
MessageEvent = ev.MessageReceived | ev.MessageSendRequested | ev.MessageSent


def _direction(event: MessageEvent) -> str:
    return "in" if isinstance(event, ev.MessageReceived) else "out"


def _provider_id(event: MessageEvent) -> str:
    # Until the provider confirms, a requested message stands in with its own id.
    return (
        event.data.message_id
        if isinstance(event, ev.MessageSendRequested)
        else event.data.provider_message_id
    )


def _provider_key(connection_id: str, direction: str, provider_message_id: str) -> str:
    return f"{connection_id}\x1f{direction}\x1f{provider_message_id}"


def _conversation(fold: _Fold, conversation_id: str, seq: int) -> dict[str, Any] | _ConversationChange:
    """The row being built (new this batch) or the change to an existing one."""
    row = fold.new_conversations.get(conversation_id)
    if row is not None:
        row["last_seq"] = seq
        return row
    change = fold.conversation_changes.setdefault(conversation_id, _ConversationChange(conversation_id))
    change.last_seq = seq
    return change


def _set(target: dict[str, Any] | Any, name: str, value: Any) -> None:
    if isinstance(target, dict):
        target[name] = value
    else:
        setattr(target, name, value)


def _fold_event(fold: _Fold, seq: int, event: Event, stored: dict[str, str]) -> None:
    if isinstance(event, ev.ConversationCreated):
        if event.aggregate_id in fold.new_conversations:
            return
        d = event.data
        fold.new_conversations[event.aggregate_id] = {
            "conversation_id": event.aggregate_id,
            "tenant_id": event.tenant_id,
            "channel": d.channel,
            "connection_id": d.connection_id,
            "kind": d.kind,
            "title": d.title,
            "external_id": d.external_id,
            "agent_enabled": d.agent_enabled,
            "agent_mode": None if d.agent_enabled else "off",
            "agent_paused_until": None,
            "preview": d.preview,
            "awaiting_since": None,
            "snoozed_until": None,
            "pinned": False,
            "created_at": event.occurred_at,
            "last_message_id": None,
            "last_message_at": None,
            "last_message_preview": None,
            "message_count": 0,
            "unread_count": 0,
            "last_seq": seq,
        }
    elif isinstance(event, ev.ConversationUpdated):
        target = _conversation(fold, event.aggregate_id, seq)
        for name in ("title", "agent_enabled", "pinned"):
            value = getattr(event.data, name)
            if value is not None:
                _set(target, name, value)
        mode = event.data.agent_mode
        if mode is None and event.data.agent_enabled is not None:  # the older switch
            mode = "auto" if event.data.agent_enabled else "off"
        if mode is not None:
            _set(target, "agent_mode", mode)
            _set(target, "agent_enabled", mode != "off")
            if not isinstance(target, dict):
                target.mode_set = True
        if event.data.marked_read:
            if isinstance(target, dict):
                target["unread_count"] = 0
            else:
                target.reset_unread, target.unread_add, target.at_least_one = True, 0, False
        if event.data.marked_unread:
            if isinstance(target, dict):
                target["unread_count"] = max(target["unread_count"], 1)
            else:
                target.at_least_one = True
    elif isinstance(event, ev.ConversationSnoozed):
        target = _conversation(fold, event.aggregate_id, seq)
        _set(target, "snoozed_until", event.data.until)
        if not isinstance(target, dict):
            target.snooze_set = True
    elif isinstance(event, ev.ConversationAgentPaused | ev.ConversationAgentResumed):
        target = _conversation(fold, event.aggregate_id, seq)
        until = event.data.until if isinstance(event, ev.ConversationAgentPaused) else None
        _set(target, "agent_paused_until", until)
        if not isinstance(target, dict):
            target.pause_set = True
    elif isinstance(event, ev.MessageDraftProposed):
        draft = event.data
        proposed = (
            draft.draft_id, event.tenant_id, event.aggregate_id, draft.run_id, draft.text,
            draft.reply_to_message_id, draft.reason, draft.flag, event.occurred_at, seq,
        )  # fmt: skip
        fold.reaction_statements.append((ADD_DRAFT, proposed))
    elif isinstance(event, ev.MessageDraftDiscarded):
        discarded = ("discarded", None, event.data.draft_id, event.tenant_id)
        fold.reaction_statements.append((SETTLE_DRAFT, discarded))
    elif isinstance(event, _MESSAGE_EVENTS):
        _fold_message(fold, seq, event, stored)
        draft_id = getattr(event.data, "draft_id", None)
        if draft_id is not None:
            sent = ("sent", event.data.message_id, draft_id, event.tenant_id)
            fold.reaction_statements.append((SETTLE_DRAFT, sent))
    elif isinstance(event, ev.MessageSendReleased):
        _fold_released(fold, seq, event, stored)
    elif isinstance(event, ev.FollowUpScheduled):
        f = event.data
        scheduled = (
            f.follow_up_id, event.tenant_id, event.aggregate_id, f.due_at, f.only_if_no_reply, f.note,
            event.occurred_at, seq,
        )  # fmt: skip
        fold.reaction_statements.append((ADD_FOLLOW_UP, scheduled))
    elif isinstance(event, ev.FollowUpProposed):
        p = event.data
        offered = (
            p.follow_up_id,
            event.tenant_id,
            event.aggregate_id,
            p.due_at,
            p.note,
            event.occurred_at,
            seq,
        )
        fold.reaction_statements.append((PROPOSE_FOLLOW_UP, offered))
    elif isinstance(event, ev.ReminderDue):
        due = (event.occurred_at, event.data.follow_up_id, event.tenant_id)
        fold.reaction_statements.append((FOLLOW_UP_DUE, due))
    elif isinstance(event, ev.FollowUpCancelled):
        cancelled = (event.occurred_at, event.data.follow_up_id, event.tenant_id)
        fold.reaction_statements.append((CANCEL_FOLLOW_UP, cancelled))
    elif isinstance(event, ev.MessageSendCancelled):
        fold.reaction_statements.append((CANCEL_SCHEDULED, (event.data.message_id, event.tenant_id)))
    elif isinstance(event, ev.MessageEdited):
        change = {"text": event.data.text, "edited_at": event.data.edited_at}
        _change_message(fold, event.tenant_id, event.data.message_id, **change)
    elif isinstance(event, ev.MessageDeleted):
        _change_message(fold, event.tenant_id, event.data.message_id, deleted_at=event.data.deleted_at)
    elif isinstance(event, ev.MessageSendFailed):
        message_id = event.data.message_id
        if stored.get(message_id) != "sent":  # a late failure never undoes a confirmed send
            _change_message(fold, event.tenant_id, message_id, status="failed")
            if message_id in stored:
                stored[message_id] = "failed"
    elif isinstance(event, ev.MessageStatusChanged):
        receipt = event.data
        mark = {
            "status": receipt.status, "tenant_id": event.tenant_id, "connection_id": receipt.connection_id,
            "provider_message_id": receipt.provider_message_id,
        }  # fmt: skip
        fold.reaction_statements.append((MARK_STATUS, mark))  # after the batch's new rows and changes
    elif isinstance(event, ev.MediaAvailable):
        m = event.data
        row = (
            m.media_id,
            event.tenant_id,
            m.message_id,
            event.aggregate_id,
            m.mime,
            m.size,
            m.sha256,
            m.storage_key,
        )
        fold.reaction_statements.append((ADD_MEDIA, row))  # ordered statements, like reactions
    elif isinstance(event, ev.ReactionAdded):
        added = event.data
        fold.reaction_statements.append(
            (
                ADD_REACTION,
                (added.message_id, event.tenant_id, added.emoji, added.sender_id, event.occurred_at),
            )
        )
    elif isinstance(event, ev.ReactionRemoved):
        removed = event.data
        fold.reaction_statements.append(
            (REMOVE_REACTION, (removed.message_id, removed.emoji, removed.sender_id, event.tenant_id))
        )


def _fold_message(fold: _Fold, seq: int, event: MessageEvent, stored: dict[str, str]) -> None:
    d = event.data
    direction = _direction(event)
    provider_id = _provider_id(event)
    if isinstance(event, ev.MessageSent) and stored.get(d.message_id) in ("pending", "failed", "scheduled"):
        # The confirmation of a requested message: it keeps its place, gains its provider id.
        sent = event.data
        _change_message(
            fold,
            event.tenant_id,
            sent.message_id,
            status="sent",
            provider_message_id=provider_id,
            sent_at=sent.sent_at,
        )
        stored[sent.message_id] = "sent"
        return
    provider_key = _provider_key(d.connection_id, direction, provider_id)
    if d.message_id in stored or provider_key in stored:
        return  # a repeat outside the duplicate window: already counted
    status = {"in": "received", "out": "sent"}[direction]
    scheduled = isinstance(event, ev.MessageSendRequested) and event.data.send_at is not None
    if isinstance(event, ev.MessageSendRequested):
        status = "scheduled" if scheduled else "pending"
    stored[d.message_id] = status
    stored[provider_key] = ""
    if isinstance(event, ev.MessageSendRequested):
        sent_at = event.data.send_at or event.occurred_at  # a scheduled one: when it will go
    else:
        sent_at = event.data.sent_at
    # A list in MESSAGE_COLUMNS order: COPY takes it as is (this is the hot path).
    fold.new_messages[d.message_id] = [
        d.message_id,
        event.tenant_id,
        event.aggregate_id,
        seq,
        direction,
        d.channel,
        d.connection_id,
        provider_id,
        d.sender.id,
        d.sender.name,
        d.text,
        sent_at,
        None,  # edited_at
        None,  # deleted_at
        status,
        getattr(d, "agent_run_id", None),
        getattr(d, "reply_to_message_id", None),
        len(getattr(d, "attachments", ())),
        bool(getattr(d, "mentions_agent", False)),
    ]
    target = _conversation(fold, event.aggregate_id, seq)
    unread = 1 if direction == "in" and not getattr(d, "backfill", False) else 0  # history is not news
    if isinstance(target, dict):
        target["message_count"] += 1
        target["unread_count"] += unread
    else:
        target.count_add += 1
        target.unread_add += unread
    if scheduled:
        return  # the conversation moves on, and is answered, when it is released
    _set(target, "last_message_id", d.message_id)
    _set(target, "last_message_at", sent_at)
    _set(target, "last_message_preview", _preview(d.text))
    _fold_waiting(fold, seq, target, event, sent_at)


def _fold_waiting(
    fold: _Fold,
    seq: int,
    target: dict[str, Any] | _ConversationChange,
    event: MessageEvent | ev.MessageSendReleased,
    at: datetime,
) -> None:
    """ "Needs reply": a person's message starts the wait (and lifts a snooze: they wrote
    again); an answer — the owner's or the agent's — ends it."""
    if isinstance(event, ev.MessageReceived):
        if not agent_policy.awaits_reply(event.data):
            return
        fold.replied[event.aggregate_id] = (seq, at)
        if isinstance(target, dict):
            target["awaiting_since"] = target["awaiting_since"] or at
            target["snoozed_until"] = None
        else:
            target.awaiting_since = target.awaiting_since or at
            target.snooze_set, target.snoozed_until = True, None
    elif agent_policy.answers(event.data.sender):
        if isinstance(target, dict):
            target["awaiting_since"] = None
        else:
            target.answered, target.awaiting_since = True, None


def _fold_released(fold: _Fold, seq: int, event: ev.MessageSendReleased, stored: dict[str, str]) -> None:
    """A scheduled message's time came: it is on its way (pending), the conversation's latest,
    and an answer to whoever waited."""
    d = event.data
    _change_message(fold, event.tenant_id, d.message_id, status="pending")
    if d.message_id in stored:
        stored[d.message_id] = "pending"
    target = _conversation(fold, event.aggregate_id, seq)
    _set(target, "last_message_id", d.message_id)
    _set(target, "last_message_at", event.occurred_at)
    _set(target, "last_message_preview", _preview(d.text))
    _fold_waiting(fold, seq, target, event, event.occurred_at)


def _change_message(fold: _Fold, tenant_id: str, message_id: str, **values: Any) -> None:
    """Change a message of ``tenant_id`` (another tenant's of the same id is left alone)."""
    row = fold.new_messages.get(message_id)
    if row is not None and row[_MESSAGE_INDEX["tenant_id"]] != tenant_id:
        return
    if row is not None:
        for name, value in values.items():
            if name == "status" and value == "failed" and row[_MESSAGE_INDEX["status"]] == "sent":
                continue  # a late failure report never turns a sent message into a failed one
            row[_MESSAGE_INDEX[name]] = value
        return
    change = fold.message_changes.setdefault((tenant_id, message_id), _MessageChange(message_id, tenant_id))
    for name, value in values.items():
        setattr(change, name, value)


async def _copy(conn: Connection, table: str, columns: dict[str, str], rows: Iterable[Sequence[Any]]) -> None:
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(columns.values()))
        for row in rows:
            await copy.write_row(row)


async def _write_fold(conn: Connection, fold: _Fold) -> None:
    if fold.new_conversations:
        rows = ([row[c] for c in CONVERSATION_COLUMNS] for row in fold.new_conversations.values())
        await _copy(conn, "conversations", CONVERSATION_COLUMNS, rows)
    if fold.new_messages:
        await _copy(conn, "messages", MESSAGE_COLUMNS, fold.new_messages.values())
    async with conn.cursor() as cur:
        if fold.conversation_changes:
            await cur.executemany(UPDATE_CONVERSATION, [vars(c) for c in fold.conversation_changes.values()])
        if fold.message_changes:
            await cur.executemany(UPDATE_MESSAGE, [vars(c) for c in fold.message_changes.values()])
    if fold.reaction_statements:
        async with conn.pipeline(), conn.cursor() as cur:
            for query, params in fold.reaction_statements:  # in log order: add, remove, add...
                await cur.execute(query, params)
    if fold.replied:
        conversations = list(fold.replied)
        seqs, times = zip(*fold.replied.values(), strict=True)
        await conn.execute(ANSWER_FOLLOW_UPS, (conversations, list(seqs), list(times)))


class InboxProjection:
    name: str = "inbox"
    # 2: row-level security on every table; 3: send requests (pending); 4: media;
    # 5: the agent's modes, pauses and drafts; 6: what waits for a reply, snoozes, scheduled
    # sends, follow-ups; 7: mentions in groups (the digest's)
    version: int = 7
    tables: tuple[str, ...] = ("conversations", "messages", "media", "reactions", "drafts", "follow_ups")
    handles: frozenset[str] = frozenset(
        {
            "conversation.created",
            "conversation.updated",
            "conversation.agent_paused",
            "conversation.agent_resumed",
            "conversation.snoozed",
            "reminder.scheduled",
            "reminder.proposed",
            "reminder.cancelled",
            "reminder.due",
            "message.draft_proposed",
            "message.draft_discarded",
            "message.received",
            "message.send_requested",
            "message.send_released",
            "message.send_cancelled",
            "message.sent",
            "message.send_failed",
            "message.status_changed",
            "message.edited",
            "message.deleted",
            "media.available",
            "reaction.added",
            "reaction.removed",
            "tenant.erased",
            "retention.applied",
        }
    )

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return INDEXES

    def new_batch(self) -> Batch:
        return InboxBatch()
