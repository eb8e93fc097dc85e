"""signal-cli's ``receive`` notifications as canonical events (pure: no I/O, no clock).

- A data message with text or files → ``message.received`` (a reply names the message it
  quotes; in a group, a mention of the linked account sets ``mentions_agent``);
- a reaction → ``reaction.added`` / ``reaction.removed``; a remote delete → ``message.deleted``;
  an edit → ``message.edited``;
- what the account's owner wrote on their phone (``syncMessage.sentMessage``) →
  ``message.sent`` with ``origin: "device"`` (their reactions, edits and deletes likewise);
- receipts, typing, calls, stories, group changes and the rest carry nothing for the inbox.

Signal names a message by its author and its timestamp, so ``provider_message_id`` is
``<author>:<timestamp>`` (:func:`author`): the same envelope delivered again is the same
message, stored once, and a reaction, quote, edit or delete names its target the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.channels.normalize import Origin, file_kind
from adapters.channels.signal import KIND
from adapters.channels.signal.envelopes import (
    LONG_TEXT,
    Attachment,
    DataMessage,
    Envelope,
    Mention,
    Receive,
    SentMessage,
)
from domain import events as ev
from domain import ids

ME = "me"  # the author of the linked account's own messages
MENTION_MARK = "\ufffc"  # where a mention sits in the text
GROUP_PREFIX = "group:"


class Quotable(msgspec.Struct, frozen=True, kw_only=True):
    """What a reply to a received message needs to quote it in Signal."""

    message_id: str
    author: str  # a number or ACI signal-cli accepts as ``quoteAuthor``
    timestamp: int
    text: str


class Delivery(msgspec.Struct, frozen=True):
    """What one envelope becomes: its conversation (made if new), its events, and how to
    quote the message it brought (None: nothing to quote)."""

    created: ev.ConversationCreated | None
    events: tuple[ev.Event, ...]
    quotable: Quotable | None = None


NOTHING = Delivery(None, ())


def author(number: str | None, uuid: str | None, account: str) -> str:
    """Who wrote a message, as its id says it: ``me`` for the account itself, else the ACI
    (the number for someone signal-cli knows no ACI of)."""
    if number is not None and number == account:
        return ME
    return uuid or number or ""


def provider_message_id(author_id: str, timestamp: int) -> str:
    return f"{author_id}:{timestamp}"


def message_id(connection_id: str, author_id: str, timestamp: int) -> str:
    provider = provider_message_id(author_id, timestamp)
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{provider}")


def conversation_id(connection_id: str, chat: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{chat}")


def group_chat(group_id: str) -> str:
    """A group's chat id (its ``external_id``; sends go to its ``groupId``)."""
    return f"{GROUP_PREFIX}{group_id}"


def moment(timestamp: int) -> datetime:
    """A Signal time: milliseconds since the epoch."""
    return datetime.fromtimestamp(timestamp / 1000, UTC)


def sender_of(number: str | None, uuid: str | None, name: str | None) -> ev.Sender:
    """Someone as the inbox names them: ``signal:<number>`` (what contacts match across
    channels), ``signal:<ACI>`` for someone whose number is hidden."""
    who = number or uuid or "unknown"
    return ev.Sender(id=f"{KIND}:{who}", name=name or number or "Signal user")


def with_mentions(text: str, mentions: tuple[Mention, ...], account: str) -> tuple[str, bool]:
    """The text with each mention's mark written as ``@<number>`` (``@<ACI>`` when hidden),
    and whether the account itself is mentioned. Positions count UTF-16 code units."""
    if not mentions:
        return text, False
    units = text.encode("utf-16-le")
    mentioned = False
    for mention in sorted(mentions, key=lambda m: m.start, reverse=True):
        mentioned = mentioned or (mention.number is not None and mention.number == account)
        start, end = mention.start * 2, (mention.start + mention.length) * 2
        if not 0 <= start <= end <= len(units):
            continue  # a mention outside the text: leave the text as it is
        label = f"@{mention.number or mention.uuid or 'someone'}".encode("utf-16-le")
        units = units[:start] + label + units[end:]
    return units.decode("utf-16-le", errors="replace"), mentioned


def attachments(data: DataMessage) -> tuple[ev.Attachment, ...]:
    """The files of a message (named by the daemon's attachment id), without the long text
    of a long message (that is its text)."""
    return tuple(_attachment(file) for file in data.attachments if file.id and file.content_type != LONG_TEXT)


def _attachment(file: Attachment) -> ev.Attachment:
    assert file.id is not None
    return ev.Attachment(
        kind=file_kind(file.content_type), provider_file_id=file.id, mime=file.content_type,
        size=file.size, name=file.filename,
    )  # fmt: skip


def long_text_id(received: Receive) -> str | None:
    """The attachment holding the whole text of a long message, if the envelope has one."""
    envelope = received.envelope
    if envelope is None:
        return None
    sync = envelope.sync_message
    data = envelope.data_message or (sync.sent_message if sync is not None else None)
    if data is None:
        return None
    return next((f.id for f in data.attachments if f.content_type == LONG_TEXT and f.id), None)


class _Chat(msgspec.Struct, frozen=True):
    external_id: str
    kind: ev.ConversationKind
    title: str


def _chat_of(data: DataMessage, envelope: Envelope) -> _Chat:
    if data.group_info is not None:
        return _group(data)
    who = envelope.source_uuid or envelope.source_number or ""
    return _Chat(who, "direct", envelope.source_name or envelope.source_number or "Signal user")


def _group(data: DataMessage) -> _Chat:
    assert data.group_info is not None
    return _Chat(group_chat(data.group_info.group_id), "group", data.group_info.group_name or "Signal group")


def delivery(
    received: Receive,
    *,
    tenant_id: str,
    connection_id: str,
    account: str,
    actor: str | None = None,
    long_text: str | None = None,
) -> Delivery:
    """The canonical events of one ``receive`` notification. ``account`` is the linked
    account's number (its own messages, mentions of it); ``actor`` records the events (None:
    the connector); ``long_text`` is the whole text of a long message, read from its attachment."""
    envelope = received.envelope
    if envelope is None or received.exception is not None:
        return NOTHING
    account = received.account or account
    reading = _Reading(envelope, tenant_id, connection_id, account, actor)
    if envelope.sync_message is not None and envelope.sync_message.sent_message is not None:
        return reading.own(envelope.sync_message.sent_message, long_text)
    if envelope.edit_message is not None:
        edit = envelope.edit_message
        return reading.edited(edit.data_message, edit.target_sent_timestamp)
    if envelope.data_message is not None:
        return reading.data(envelope.data_message, long_text)
    return NOTHING


class _Reading:
    """One envelope being read (what every branch needs, said once)."""

    def __init__(
        self, envelope: Envelope, tenant_id: str, connection_id: str, account: str, actor: str | None
    ) -> None:
        self.envelope = envelope
        self.connection_id = connection_id
        self.account = account
        self.at = moment(envelope.timestamp)
        self.origin = Origin(KIND, tenant_id, connection_id, self.at, actor=actor)
        self.sender_author = author(envelope.source_number, envelope.source_uuid, account)

    def _id(self, author_id: str, timestamp: int) -> str:
        return message_id(self.connection_id, author_id, timestamp)

    def _event_id(self, target: str, what: str) -> str:
        return self.origin.derived_event_id(target, f"{what}:{self.envelope.timestamp}", self.at)

    def _sender(self) -> ev.Sender:
        e = self.envelope
        return sender_of(e.source_number, e.source_uuid, e.source_name)

    # --- what others send ----------------------------------------------------------------

    def data(self, data: DataMessage, long_text: str | None) -> Delivery:
        chat = _chat_of(data, self.envelope)
        if not chat.external_id or (data.group_info is not None and data.group_info.type == "UPDATE"):
            return NOTHING  # no one to answer, or a change of the group (its name, its members)
        changed = self._change(data, chat, self._sender().id, self.sender_author)
        if changed is not None:
            return changed
        text, mentioned = with_mentions(long_text or data.message or "", data.mentions, self.account)
        files = attachments(data)
        if not text and not files:
            return NOTHING  # a sticker, a payment, a timer change: nothing the inbox shows
        conversation = conversation_id(self.connection_id, chat.external_id)
        stamp = data.timestamp or self.envelope.timestamp
        provider = provider_message_id(self.sender_author, stamp)
        received = ev.MessageReceivedData(
            message_id=self._id(self.sender_author, stamp), connection_id=self.connection_id, channel=KIND,
            provider_message_id=provider, sender=self._sender(), text=text, sent_at=moment(stamp),
            attachments=files, reply_to_message_id=self._quoted(data),
            mentions_agent=mentioned and chat.kind == "group",
        )  # fmt: skip
        who = self.envelope.source_uuid or self.envelope.source_number or ""
        quotable = Quotable(message_id=received.message_id, author=who, timestamp=stamp, text=text)
        return Delivery(
            self._created(conversation, chat),
            (self.origin.event(ev.MessageReceived, conversation, received),),
            quotable,
        )

    def edited(self, data: DataMessage, target: int) -> Delivery:
        chat = _chat_of(data, self.envelope)
        if not chat.external_id:
            return NOTHING
        return self._edit(data, self.sender_author, target, chat)

    def _edit(self, data: DataMessage, target_author: str, target: int, chat: _Chat) -> Delivery:
        text, _ = with_mentions(data.message or "", data.mentions, self.account)
        conversation = conversation_id(self.connection_id, chat.external_id)
        change = ev.MessageEditedData(
            message_id=self._id(target_author, target), text=text, edited_at=self.at
        )
        event_id = self._event_id(provider_message_id(target_author, target), "edited")
        return Delivery(None, (self.origin.event(ev.MessageEdited, conversation, change, event_id),))

    def _change(self, data: DataMessage, chat: _Chat, sender_id: str, by: str) -> Delivery | None:
        """A reaction or a remote delete in ``chat`` by ``by``; None when the message is neither."""
        conversation = conversation_id(self.connection_id, chat.external_id)
        if data.reaction is not None:
            reaction = data.reaction
            target_author = author(reaction.target_author_number, reaction.target_author_uuid, self.account)
            target = provider_message_id(target_author, reaction.target_sent_timestamp)
            payload = ev.ReactionData(
                message_id=self._id(target_author, reaction.target_sent_timestamp), emoji=reaction.emoji,
                sender_id=sender_id,
            )  # fmt: skip
            cls = ev.ReactionRemoved if reaction.is_remove else ev.ReactionAdded
            what = f"reaction:{'-' if reaction.is_remove else '+'}{reaction.emoji}"
            return Delivery(
                None, (self.origin.event(cls, conversation, payload, self._event_id(target, what)),)
            )
        if data.remote_delete is not None:
            deleted_stamp = data.remote_delete.timestamp
            deleted = ev.MessageDeletedData(message_id=self._id(by, deleted_stamp), deleted_at=self.at)
            event_id = self._event_id(provider_message_id(by, deleted_stamp), "deleted")
            return Delivery(None, (self.origin.event(ev.MessageDeleted, conversation, deleted, event_id),))
        return None

    def _quoted(self, data: DataMessage) -> str | None:
        if data.quote is None:
            return None
        quoted_author = author(data.quote.author_number, data.quote.author_uuid, self.account)
        return self._id(quoted_author, data.quote.id) if quoted_author else None

    def _created(self, conversation: str, chat: _Chat) -> ev.ConversationCreated:
        return self.origin.conversation_created(conversation, chat.kind, chat.title, chat.external_id)

    # --- what the account's owner sent from the phone --------------------------------------

    def _own_chat(self, sent: SentMessage, data: DataMessage) -> _Chat | None:
        if data.group_info is not None:
            return _group(data)
        if sent.group_info is not None:
            return _group(sent)
        who = sent.destination_uuid or sent.destination_number
        if not who:
            return None
        return _Chat(who, "direct", sent.destination_number or "Signal user")

    def own(self, sent: SentMessage, long_text: str | None) -> Delivery:
        if sent.edit_message is not None:
            edit = sent.edit_message
            chat = self._own_chat(sent, edit.data_message)
            if chat is None:
                return NOTHING
            return self._edit(edit.data_message, ME, edit.target_sent_timestamp, chat)
        chat = self._own_chat(sent, sent)
        if chat is None or (sent.group_info is not None and sent.group_info.type == "UPDATE"):
            return NOTHING
        me = f"{KIND}:{self.account}"
        changed = self._change(sent, chat, me, ME)
        if changed is not None:
            return changed
        text, _ = with_mentions(long_text or sent.message or "", sent.mentions, self.account)
        if not text:
            return NOTHING  # files alone: the inbox records what the owner wrote, as text
        conversation = conversation_id(self.connection_id, chat.external_id)
        stamp = sent.timestamp or self.envelope.timestamp
        data = ev.MessageSentData(
            message_id=self._id(ME, stamp), connection_id=self.connection_id, channel=KIND,
            provider_message_id=provider_message_id(ME, stamp), text=text, sent_at=moment(stamp),
            sender=ev.Sender(id=me, name="Me"), origin="device",
        )  # fmt: skip
        return Delivery(
            self._created(conversation, chat), (self.origin.event(ev.MessageSent, conversation, data),)
        )
