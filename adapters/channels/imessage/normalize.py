"""chat.db rows as canonical events (pure: no database, no clock, no file system).

A chat → ``conversation.created`` (once per chat in a batch, before its events); a row
from someone else → ``message.received``; a row of the Mac's owner → ``message.sent``
with ``origin="device"``; a tapback (``associated_message_type`` 2000-2006, removal
3000-3006) → ``reaction.added`` / ``reaction.removed``, never a text message; a row edited
in place → ``message.edited``; an unsent one (``date_retracted``, or on older macOS an
edit that left it empty) → ``message.deleted``. Group renames, member changes and other
system rows carry no conversation and give nothing.

Every event id is derived from what happened (kind, connection, guid, what, its date), so
the bridge resending a batch after a crash writes each event once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Literal

from adapters.channels.imessage import KIND
from adapters.channels.imessage.dates import APPLE_EPOCH, apple_datetime
from adapters.channels.imessage.rows import DIRECT_STYLE, GROUP_STYLE, AttachmentRow, ChatRow, MessageRow
from adapters.channels.imessage.typedstream import decode_attributed_body
from domain import events as ev
from domain import ids

OBJECT_REPLACEMENT = "\ufffc"  # where an attachment sits in the text
ME = ev.Sender(id=f"{KIND}:me", name="Me")

REACTION_ADD = range(2000, 2007)
REACTION_REMOVE = range(3000, 3007)
CUSTOM_EMOJI = 6  # 2006 / 3006: the emoji is in associated_message_emoji (macOS 26+), else in the text
TAPBACK_EMOJI = {0: "❤️", 1: "👍", 2: "👎", 3: "😂", 4: "‼️", 5: "❓"}
_REACTED_TEXT = re.compile(r"^(?:Reacted|Removed) (.+?) (?:to|from) ")
_PLUGIN_PAYLOAD = ".pluginPayloadAttachment"  # the rich-link card of a URL, not a file


def conversation_id(connection_id: str, chat_guid: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{chat_guid}")


def message_id(connection_id: str, message_guid: str) -> str:
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{message_guid}")


def sender_id(handle: str) -> str:
    return f"{KIND}:{handle}"


def event_id(connection_id: str, guid: str, what: str, mark: int) -> str:
    """A ULID whose time is the chat.db date ``mark`` and whose randomness is a hash of what
    happened (kind, connection, guid, what, the date to the nanosecond)."""
    at = apple_datetime(mark) or APPLE_EPOCH
    key = f"{KIND}:{connection_id}:{guid}:{what}:{mark}"
    return ids.ulid(
        at_ms=int(at.timestamp() * 1000), randomness=hashlib.blake2b(key.encode(), digest_size=10).digest()
    )


def target_guid(associated: str | None) -> str | None:
    """The message a tapback points at: ``p:<part>/<GUID>``, ``bp:<GUID>`` or a bare GUID."""
    if not associated:
        return None
    if associated.startswith("p:") and "/" in associated:
        return associated.split("/", 1)[1] or None
    if associated.startswith("bp:"):
        return associated[3:] or None
    return associated


def message_text(row: MessageRow) -> str:
    """The words of a row: ``text``, else the string in ``attributedBody``; attachment
    placeholders removed."""
    raw = row.text if row.text else decode_attributed_body(row.attributed_body)
    if not raw:
        return ""
    if OBJECT_REPLACEMENT in raw:
        cleaned = raw.replace(OBJECT_REPLACEMENT, "")
        return cleaned if cleaned.strip() else ""
    return raw


def _kind(chat: ChatRow) -> ev.ConversationKind:
    if chat.style == GROUP_STYLE:
        return "group"
    if chat.style == DIRECT_STYLE:
        return "direct"
    return "group" if len(chat.participants) > 1 else "direct"


def title(chat: ChatRow) -> str:
    """The group's own name, else its participants, else Apple's identifier."""
    if chat.display_name and chat.display_name.strip():
        return chat.display_name.strip()
    if chat.participants:
        return ", ".join(chat.participants)
    return chat.chat_identifier or chat.guid


AttachmentKind = Literal["image", "video", "audio", "document", "sticker", "other"]
_BY_MIME_PREFIX: tuple[tuple[str, AttachmentKind], ...] = (
    ("image/", "image"),
    ("video/", "video"),
    ("audio/", "audio"),
)


def _attachment_kind(row: AttachmentRow) -> AttachmentKind:
    mime = (row.mime or "").lower()
    if row.is_sticker:
        return "sticker"
    for prefix, kind in _BY_MIME_PREFIX:
        if mime.startswith(prefix):
            return kind
    return "document" if mime else "other"


def attachments(row: MessageRow) -> tuple[ev.Attachment, ...]:
    """The row's files, named by Apple's attachment guid (the bridge reads the file by it when
    the cloud asks; the Mac's paths never leave it), rich-link cards left out."""
    found: list[ev.Attachment] = []
    for item in row.attachments:
        name = item.transfer_name or (item.path.rsplit("/", 1)[-1] if item.path else None)
        if item.path is None or (name or "").endswith(_PLUGIN_PAYLOAD) or item.path.endswith(_PLUGIN_PAYLOAD):
            continue
        found.append(
            ev.Attachment(
                kind=_attachment_kind(item),
                provider_file_id=item.guid,
                mime=item.mime,
                size=item.total_bytes,
                name=name,
            )
        )
    return tuple(found)


def _reaction_emoji(row: MessageRow, code: int) -> str | None:
    if code != CUSTOM_EMOJI:
        return TAPBACK_EMOJI[code]
    if row.associated_message_emoji:
        return row.associated_message_emoji
    match = _REACTED_TEXT.match(row.text or "")
    return match.group(1) if match else None


class _Batch:
    """Events of one batch, with each chat's ``conversation.created`` before its first event."""

    def __init__(self, tenant_id: str, connection_id: str, actor: str, backfill: bool) -> None:
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self.actor = actor
        self.backfill = backfill
        self.events: list[ev.Event] = []
        self.chats: set[str] = set()

    def add(self, row: MessageRow) -> None:
        if row.chat is None:
            return  # an orphan: no conversation to put it in
        produced = self._events(row, row.chat)
        if produced and row.chat.guid not in self.chats:
            self.chats.add(row.chat.guid)
            self.events.append(self._created(row, row.chat))
        self.events.extend(produced)

    def _new(
        self, cls: type[ev.E], row: MessageRow, chat: ChatRow, what: str, mark: int, data: ev.Payload
    ) -> ev.E:
        """An event of ``row`` that happened at the chat.db date ``mark``."""
        return ev.new_event(
            cls,
            tenant_id=self.tenant_id,
            aggregate_id=conversation_id(self.connection_id, chat.guid),
            actor=self.actor,
            occurred_at=apple_datetime(mark) or APPLE_EPOCH,
            event_id=event_id(self.connection_id, row.guid, what, mark),
            data=data,
        )

    def _created(self, row: MessageRow, chat: ChatRow) -> ev.ConversationCreated:
        at = apple_datetime(row.date) or APPLE_EPOCH
        created = ev.ConversationCreatedData(
            channel=KIND,
            connection_id=self.connection_id,
            kind=_kind(chat),
            title=title(chat),
            external_id=chat.guid,
        )
        return ev.new_event(
            ev.ConversationCreated,
            tenant_id=self.tenant_id,
            aggregate_id=conversation_id(self.connection_id, chat.guid),
            actor=self.actor,
            occurred_at=at,
            event_id=event_id(self.connection_id, chat.guid, "created", row.date),
            data=created,
        )

    def _events(self, row: MessageRow, chat: ChatRow) -> list[ev.Event]:
        if row.change == "retracted":
            return self._deleted(row, chat, row.date_retracted)
        if row.item_type != 0 or row.date_retracted:
            return []  # a system row, or a message unsent before we saw it
        if row.associated_message_type:
            return self._reaction(row, chat) if row.change == "new" else []
        if row.change == "edited":
            return self._edited(row, chat)
        return self._message(row, chat)

    def _message(self, row: MessageRow, chat: ChatRow) -> list[ev.Event]:
        text, files = message_text(row), attachments(row)
        if not text and not files:
            return []  # nothing to show (an unsent or unreadable row): never an empty message
        at = apple_datetime(row.date) or APPLE_EPOCH
        mid = message_id(self.connection_id, row.guid)
        if row.is_from_me:
            if not text:
                text = " ".join(f"📎 {item.name or 'attachment'}" for item in files)
            sent = ev.MessageSentData(
                message_id=mid,
                connection_id=self.connection_id,
                channel=KIND,
                provider_message_id=row.guid,
                text=text,
                sent_at=at,
                sender=ME,
                origin="device",
                backfill=self.backfill,
            )
            return [self._new(ev.MessageSent, row, chat, "sent", row.date, sent)]
        handle = row.handle or (chat.chat_identifier if chat.style == DIRECT_STYLE else None) or "unknown"
        received = ev.MessageReceivedData(
            message_id=mid,
            connection_id=self.connection_id,
            channel=KIND,
            provider_message_id=row.guid,
            sender=ev.Sender(id=sender_id(handle), name=handle),
            text=text,
            sent_at=at,
            attachments=files,
            reply_to_message_id=(
                message_id(self.connection_id, row.thread_originator_guid)
                if row.thread_originator_guid
                else None
            ),
            backfill=self.backfill,
        )
        return [self._new(ev.MessageReceived, row, chat, "received", row.date, received)]

    def _reaction(self, row: MessageRow, chat: ChatRow) -> list[ev.Event]:
        code = row.associated_message_type
        target = target_guid(row.associated_message_guid)
        if target is None or (code not in REACTION_ADD and code not in REACTION_REMOVE):
            return []  # stickers placed on a message (1000) and other kinds: not carried
        emoji = _reaction_emoji(row, code % 1000)
        if emoji is None:
            return []
        reactor = ME.id if row.is_from_me else sender_id(row.handle or "unknown")
        data = ev.ReactionData(
            message_id=message_id(self.connection_id, target), emoji=emoji, sender_id=reactor
        )
        if code in REACTION_ADD:
            return [self._new(ev.ReactionAdded, row, chat, "reaction", row.date, data)]
        return [self._new(ev.ReactionRemoved, row, chat, "reaction", row.date, data)]

    def _edited(self, row: MessageRow, chat: ChatRow) -> list[ev.Event]:
        if not row.date_edited:
            return []
        text = message_text(row)
        if not text and not attachments(row):
            return self._deleted(row, chat, row.date_edited)  # older macOS: an unsend clears the text
        at = apple_datetime(row.date_edited) or APPLE_EPOCH
        edited = ev.MessageEditedData(
            message_id=message_id(self.connection_id, row.guid), text=text, edited_at=at
        )
        return [self._new(ev.MessageEdited, row, chat, "edited", row.date_edited, edited)]

    def _deleted(self, row: MessageRow, chat: ChatRow, when: int) -> list[ev.Event]:
        if row.associated_message_type:
            return []  # a tapback taken back is its own 3000-row
        at = apple_datetime(when) or APPLE_EPOCH
        deleted = ev.MessageDeletedData(message_id=message_id(self.connection_id, row.guid), deleted_at=at)
        return [self._new(ev.MessageDeleted, row, chat, "deleted", when, deleted)]


def events_for(
    rows: Iterable[MessageRow], *, tenant_id: str, connection_id: str, actor: str, backfill: bool = False
) -> list[ev.Event]:
    """The canonical events of a batch of rows, in row order; each chat's
    ``conversation.created`` comes once, before its first event. ``backfill`` marks
    messages as history (no agent, not unread)."""
    batch = _Batch(tenant_id, connection_id, actor, backfill)
    for row in rows:
        batch.add(row)
    return batch.events
