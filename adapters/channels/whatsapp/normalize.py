"""neonize's ``MessageEv`` as canonical events (pure): text and captions, replies, media
(as attachments the session then downloads), groups with mentions, reactions, edits and
revokes, and messages the account's owner wrote on their phone (``message.sent`` with
``origin: "device"``). What carries nothing for the inbox (protocol messages, receipts,
status broadcasts) is none.

WhatsApp traps handled here: message times are milliseconds (seconds elsewhere: read
defensively); in many groups the sender is a ``…@lid`` hidden id whose phone JID is in
``SenderAlt``; a device suffix (``:3``) is not part of who someone is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from adapters.channels.normalize import Origin, file_kind
from adapters.channels.whatsapp import KIND
from domain import events as ev
from domain import ids

STATUS_BROADCAST = "status@broadcast"
EDIT = "1"
REVOKES = ("7", "8")  # by the sender, by a group admin
REVOKE = 0  # ProtocolMessage.Type.REVOKE
_MEDIA = ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage")


class Delivery(msgspec.Struct, frozen=True):
    """What one ``MessageEv`` becomes: its conversation (created if new) and its events."""

    created: ev.ConversationCreated | None
    events: tuple[ev.Event, ...]


def conversation_id(connection_id: str, chat: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{chat}")


def provider_message_id(chat: str, whatsapp_id: str) -> str:
    """WhatsApp names a message by its chat and its id there: ``<chat jid>:<id>``."""
    return f"{chat}:{whatsapp_id}"


def message_id(connection_id: str, chat: str, whatsapp_id: str) -> str:
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(chat, whatsapp_id)}")


def jid(value: Any) -> str:
    """``user@server`` of a neonize ``JID``, without the device suffix ("" for an empty one)."""
    if value is None or not value.User:
        return ""
    return f"{value.User}@{value.Server}"


def _bare(text: str) -> str:
    """``user:device@server`` → ``user@server``."""
    user, _, server = text.partition("@")
    return f"{user.split(':', 1)[0]}@{server}"


def moment(stamp: int) -> datetime:
    """A WhatsApp time: milliseconds in messages, seconds in receipts and send answers."""
    return datetime.fromtimestamp(stamp / 1000 if stamp > 10**11 else stamp, UTC)


def text_of(message: Any) -> str:
    """The words of a ``waE2E.Message``: plain, extended, or a media caption."""
    if message.conversation:
        return str(message.conversation)
    if message.HasField("extendedTextMessage"):
        return str(message.extendedTextMessage.text)
    for field in ("imageMessage", "videoMessage", "documentMessage"):
        if message.HasField(field) and getattr(message, field).caption:
            return str(getattr(message, field).caption)
    return ""


def _revoke(message: Any) -> bool:
    protocol = message.protocolMessage if message.HasField("protocolMessage") else None
    return protocol is not None and protocol.HasField("type") and protocol.type == REVOKE


def _context(message: Any) -> Any | None:
    for field in ("extendedTextMessage", *_MEDIA):
        if message.HasField(field) and getattr(message, field).HasField("contextInfo"):
            return getattr(message, field).contextInfo
    return None


def attachments(message: Any, whatsapp_id: str) -> tuple[ev.Attachment, ...]:
    """The message's file (one at most, in WhatsApp), named ``<message id>:<field>``: the
    session downloads it while it holds the message, since the keys to do so are in it."""
    for field in _MEDIA:
        if not message.HasField(field):
            continue
        media = getattr(message, field)
        mime = media.mimetype or None
        kind = "sticker" if field == "stickerMessage" else file_kind(mime)
        name = media.fileName if field == "documentMessage" and media.fileName else None
        size = int(media.fileLength) if media.fileLength else None
        return (
            ev.Attachment(
                kind=kind, provider_file_id=f"{whatsapp_id}:{field}", mime=mime, size=size, name=name
            ),
        )
    return ()


def _sender(source: Any, push_name: str) -> ev.Sender:
    who = (
        jid(source.SenderAlt)
        if source.Sender.Server == "lid" and source.SenderAlt.User
        else jid(source.Sender)
    )
    return ev.Sender(id=f"wa:{who}", name=push_name or who.split("@", 1)[0])


def delivery(
    event: Any, *, tenant_id: str, connection_id: str, me: str | None = None, actor: str | None = None
) -> Delivery:
    """The canonical events of one ``MessageEv``; ``me`` is the linked account's JID (for
    mentions of it in groups); ``actor`` records them (None: the connector)."""
    info, message = event.Info, event.Message
    source = info.MessageSource
    chat = jid(source.Chat)
    if not chat or chat == STATUS_BROADCAST:
        return Delivery(None, ())
    at = moment(int(info.Timestamp))
    origin = Origin(KIND, tenant_id, connection_id, at, actor=actor)
    conversation = conversation_id(connection_id, chat)

    def about(target: str, what: str) -> tuple[str, str]:  # (message id, event id)
        return message_id(connection_id, chat, target), origin.derived_event_id(f"{chat}:{info.ID}", what, at)

    if info.Edit in REVOKES or _revoke(message):
        target, event_id = about(message.protocolMessage.key.ID or info.ID, "revoked")
        deleted = origin.event(
            ev.MessageDeleted, conversation, ev.MessageDeletedData(message_id=target, deleted_at=at), event_id
        )
        return Delivery(None, (deleted,))
    if message.HasField("reactionMessage"):
        reaction = message.reactionMessage
        target, event_id = about(reaction.key.ID, f"reaction:{reaction.text}")
        data = ev.ReactionData(
            message_id=target, emoji=reaction.text, sender_id=_sender(source, info.Pushname).id
        )
        cls = ev.ReactionAdded if reaction.text else ev.ReactionRemoved
        return Delivery(None, (origin.event(cls, conversation, data, event_id),))
    if info.Edit == EDIT:
        edited = message.protocolMessage
        target = edited.key.ID or info.ID
        new_text = text_of(edited.editedMessage) if edited.HasField("editedMessage") else text_of(message)
        target_id, event_id = about(target, f"edited:{info.ID}")
        change = ev.MessageEditedData(message_id=target_id, text=new_text, edited_at=at)
        return Delivery(None, (origin.event(ev.MessageEdited, conversation, change, event_id),))
    text, files = text_of(message), attachments(message, info.ID)
    if not text and not files:
        return Delivery(None, ())  # protocol traffic, a poll, a call log: nothing for the inbox
    context = _context(message)
    reply_to = (
        message_id(connection_id, chat, context.stanzaID)
        if context is not None and context.stanzaID
        else None
    )
    own, provider_id = message_id(connection_id, chat, info.ID), provider_message_id(chat, info.ID)
    if source.IsFromMe:
        sent = ev.MessageSentData(
            message_id=own, connection_id=connection_id, channel=KIND, provider_message_id=provider_id,
            text=text, sent_at=at, sender=ev.Sender(id=f"wa:{me or 'me'}", name="Me"), origin="device",
        )  # fmt: skip
        return Delivery(
            _created(origin, conversation, source, chat, info.Pushname),
            (origin.event(ev.MessageSent, conversation, sent),),
        )
    mentioned = bool(me) and context is not None and me in {_bare(m) for m in context.mentionedJID}
    received = ev.MessageReceivedData(
        message_id=own, connection_id=connection_id, channel=KIND, provider_message_id=provider_id,
        sender=_sender(source, info.Pushname), text=text, sent_at=at, attachments=files,
        reply_to_message_id=reply_to, mentions_agent=mentioned,
    )  # fmt: skip
    return Delivery(
        _created(origin, conversation, source, chat, info.Pushname),
        (origin.event(ev.MessageReceived, conversation, received),),
    )


def receipt(
    chat: str, whatsapp_ids: tuple[str, ...], status: Literal["delivered", "read"], at: datetime, *,
    tenant_id: str, connection_id: str, actor: str | None = None,
) -> Delivery:  # fmt: skip
    """WhatsApp's receipt for messages we sent in ``chat``: one ``message.status_changed`` each."""
    origin = Origin(KIND, tenant_id, connection_id, at, actor=actor)
    conversation = conversation_id(connection_id, chat)

    def mark(whatsapp_id: str) -> ev.MessageStatusChanged:
        data = ev.MessageStatusChangedData(
            connection_id=connection_id, provider_message_id=provider_message_id(chat, whatsapp_id),
            status=status, at=at,
        )  # fmt: skip
        event_id = origin.derived_event_id(f"{chat}:{whatsapp_id}", f"status:{status}", at)
        return origin.event(ev.MessageStatusChanged, conversation, data, event_id)

    events = tuple(mark(whatsapp_id) for whatsapp_id in whatsapp_ids)
    return Delivery(None, events)


def _created(
    origin: Origin, conversation: str, source: Any, chat: str, push_name: str
) -> ev.ConversationCreated:
    if source.IsGroup:
        return origin.conversation_created(
            conversation, "group", f"WhatsApp group {chat.split('@', 1)[0]}", chat
        )
    phone = chat.split("@", 1)[0]
    title = push_name if push_name and not source.IsFromMe else f"+{phone}" if phone.isdigit() else phone
    return origin.conversation_created(conversation, "direct", title, chat)
