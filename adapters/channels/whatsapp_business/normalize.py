"""WhatsApp Business webhook payloads as canonical events (pure).

A delivery (``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":
"messages", "value": …}]}]}``) carries customers' messages and the statuses of ours:

- ``messages[]`` of type text, image, document, audio, video, sticker (and the text of a
  tapped button) → ``message.received``, with the customer's ``conversation.created``;
  media are attachments whose ``provider_file_id`` is Meta's media id.
- ``statuses[]`` ``failed`` → ``message.send_failed`` for the message we sent (named by
  the ``biz_opaque_callback_data`` the connector sent with it), code
  :data:`~adapters.channels.whatsapp_business.OUTSIDE_WINDOW` for Meta's 131047. There is
  no canonical event for sent, delivered and read: those are left out.

A change for another phone number than the connection's is skipped: one Meta app may post
for all of its numbers to one address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from adapters.channels.normalize import Origin, connection_actor
from adapters.channels.whatsapp_business import (
    KIND,
    OUTSIDE_WINDOW,
    OUTSIDE_WINDOW_REASON,
    REENGAGEMENT_ERROR,
)
from domain import events as ev
from domain import ids

# --- Meta's payload, as much of it as we read ------------------------------------------------


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    name: str | None = None
    username: str | None = None


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    profile: Profile = msgspec.field(default_factory=Profile)
    wa_id: str | None = None  # the phone number; absent for some users with a username (2026)
    user_id: str | None = None  # the business-scoped user id (BSUID)


class Text(msgspec.Struct, frozen=True, kw_only=True):
    body: str = ""


class Media(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None


class Context(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None = None  # the message replied to


class Button(msgspec.Struct, frozen=True, kw_only=True):
    text: str = ""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    title: str = ""


class Interactive(msgspec.Struct, frozen=True, kw_only=True):
    button_reply: Reply | None = None
    list_reply: Reply | None = None


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    timestamp: str  # unix seconds, as a string
    type: str = "text"
    sender_phone: str | None = msgspec.field(default=None, name="from")
    from_user_id: str | None = None
    text: Text | None = None
    image: Media | None = None
    document: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    sticker: Media | None = None
    button: Button | None = None
    interactive: Interactive | None = None
    context: Context | None = None


class ErrorData(msgspec.Struct, frozen=True, kw_only=True):
    details: str | None = None


class StatusError(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    title: str = ""
    message: str | None = None
    error_data: ErrorData | None = None


class Status(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    timestamp: str
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: tuple[StatusError, ...] = ()


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    phone_number_id: str
    display_phone_number: str | None = None


class Value(msgspec.Struct, frozen=True, kw_only=True):
    metadata: Metadata
    contacts: tuple[Contact, ...] = ()
    messages: tuple[Message, ...] = ()
    statuses: tuple[Status, ...] = ()


class Change(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    value: dict[str, Any] = {}  # read as a Value only for the "messages" field


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    id: str = ""
    changes: tuple[Change, ...] = ()


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    object: str
    entry: tuple[Entry, ...] = ()


def envelope(payload: bytes | Mapping[str, Any]) -> Envelope:
    """A delivery's envelope; msgspec.ValidationError / DecodeError (ValueErrors) when it is none."""
    if isinstance(payload, bytes):
        return msgspec.json.decode(payload, type=Envelope)
    return msgspec.convert(dict(payload), Envelope)


# --- ids ---------------------------------------------------------------------------------------


def conversation_id(connection_id: str, customer: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{customer}")


def message_id(connection_id: str, wamid: str) -> str:
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{wamid}")


def actor(connection_id: str) -> str:
    return connection_actor(KIND, connection_id)


_CALLBACK = re.compile(r"moltbot:(?P<conversation>c_[0-9A-Z]{26}):(?P<message>m_[0-9A-Z]{26})")


def callback_data(conversation: str, message: str) -> str:
    """What the connector sends as ``biz_opaque_callback_data`` (Meta returns it in the
    message's statuses), so a later failure names our message without a lookup."""
    return f"moltbot:{conversation}:{message}"


def _from_callback(data: str | None) -> tuple[str, str] | None:
    found = _CALLBACK.fullmatch(data or "")
    return (found["conversation"], found["message"]) if found else None


def utc(timestamp: str) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


# --- what a delivery says ----------------------------------------------------------------------


class Delivery(msgspec.Struct, frozen=True):
    """What one message or status becomes: the conversation to create if new, then the events."""

    created: ev.ConversationCreated | None
    events: tuple[ev.Event, ...]


class Normalized(msgspec.Struct, frozen=True, kw_only=True):
    deliveries: tuple[Delivery, ...]
    other_numbers: tuple[str, ...] = ()  # phone number ids of changes skipped (not this connection's)


def normalize(
    payload: bytes | Mapping[str, Any] | Envelope,
    *,
    tenant_id: str,
    connection_id: str,
    phone_number_id: str,
    now: datetime | None = None,
) -> Normalized:
    """The canonical events of one webhook delivery for the connection of ``phone_number_id``.

    Raises ValueError (msgspec's errors among them) for a payload that is not Meta's shape."""
    parsed = payload if isinstance(payload, Envelope) else envelope(payload)
    origin = Origin(KIND, tenant_id, connection_id, now)
    deliveries: list[Delivery] = []
    other_numbers: list[str] = []
    if parsed.object != "whatsapp_business_account":
        return Normalized(deliveries=())
    for entry in parsed.entry:
        for change in entry.changes:
            if change.field != "messages":
                continue  # template reviews, quality ratings, account updates: not conversation
            value = msgspec.convert(change.value, Value)
            if value.metadata.phone_number_id != phone_number_id:
                other_numbers.append(value.metadata.phone_number_id)
                continue
            for message in value.messages:
                received = _received(message, value.contacts, origin)
                if received is not None:
                    deliveries.append(received)
            for status in value.statuses:
                failed = _failed(status, origin)
                if failed is not None:
                    deliveries.append(Delivery(None, (failed,)))
    return Normalized(deliveries=tuple(deliveries), other_numbers=tuple(other_numbers))


def _contact_of(message: Message, contacts: tuple[Contact, ...]) -> Contact:
    for contact in contacts:
        if message.sender_phone is not None and contact.wa_id == message.sender_phone:
            return contact
        if message.from_user_id is not None and contact.user_id == message.from_user_id:
            return contact
    return contacts[0] if len(contacts) == 1 else Contact()


def customer(message: Message, contact: Contact) -> str | None:
    """Whom a message is from: the phone (``wa_id``), or the business-scoped user id when the
    webhook carries no phone; None when it names neither."""
    return message.sender_phone or contact.wa_id or message.from_user_id or contact.user_id


_MEDIA_KINDS: tuple[Literal["image", "document", "audio", "video", "sticker"], ...] = (
    "image",
    "document",
    "audio",
    "video",
    "sticker",
)


def _attachments(message: Message) -> tuple[ev.Attachment, ...]:
    found: list[ev.Attachment] = []
    for kind in _MEDIA_KINDS:
        media: Media | None = getattr(message, kind)
        if media is not None:
            found.append(
                ev.Attachment(kind=kind, provider_file_id=media.id, mime=media.mime_type, name=media.filename)
            )
    return tuple(found)


def _text(message: Message) -> str:
    if message.text is not None:
        return message.text.body
    for kind in _MEDIA_KINDS:
        media: Media | None = getattr(message, kind)
        if media is not None and media.caption:
            return media.caption
    if message.button is not None:  # a template's quick-reply button
        return message.button.text
    if message.interactive is not None:
        tapped = message.interactive.button_reply or message.interactive.list_reply
        return tapped.title if tapped is not None else ""
    return ""


def _received(message: Message, contacts: tuple[Contact, ...], origin: Origin) -> Delivery | None:
    text, attachments = _text(message), _attachments(message)
    contact = _contact_of(message, contacts)
    key = customer(message, contact)
    if key is None or (not text and not attachments):
        return None  # reactions, locations, system notices, unsupported types: not carried
    connection_id = origin.connection_id
    name = contact.profile.name or contact.profile.username or key
    conversation = conversation_id(connection_id, key)
    replied = message.context.id if message.context is not None else None
    received = origin.event(
        ev.MessageReceived,
        conversation,
        ev.MessageReceivedData(
            message_id=message_id(connection_id, message.id),
            connection_id=connection_id,
            channel=KIND,
            provider_message_id=message.id,
            sender=ev.Sender(id=f"wa:{key}", name=name),
            text=text,
            sent_at=utc(message.timestamp),
            attachments=attachments,
            reply_to_message_id=message_id(connection_id, replied) if replied else None,
        ),
    )
    created = origin.conversation_created(conversation, "direct", name, key)
    return Delivery(created, (received,))


def failure(error: StatusError | None) -> tuple[str, str]:
    """The code and the sentence for a person of a message Meta did not deliver."""
    if error is None:
        return "whatsapp_failed", "WhatsApp did not deliver the message."
    if error.code == REENGAGEMENT_ERROR:
        return OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON
    details = error.error_data.details if error.error_data is not None else None
    words = details or error.message or error.title or "no reason given"
    return f"whatsapp_{error.code}", f"WhatsApp did not deliver the message: {words}"


def _failed(status: Status, origin: Origin) -> ev.MessageSendFailed | None:
    if status.status != "failed":
        return None  # sent, delivered, read: no canonical event carries them
    ours = _from_callback(status.biz_opaque_callback_data)
    if ours is None:
        return None  # a message sent by another program with this number
    conversation, message = ours
    recipients = (status.recipient_id, status.recipient_user_id)
    if conversation not in {conversation_id(origin.connection_id, r) for r in recipients if r}:
        return None  # the callback names another conversation than the recipient's: not ours
    code, reason = failure(status.errors[0] if status.errors else None)
    failed_at = utc(status.timestamp)
    return origin.event(
        ev.MessageSendFailed,
        conversation,
        ev.MessageSendFailedData(
            message_id=message, connection_id=origin.connection_id, code=code, reason=reason
        ),
        origin.derived_event_id(status.id, "failed", failed_at),
    )
