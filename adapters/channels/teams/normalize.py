"""Bot Framework Activities from Teams as canonical events (pure).

- ``message`` in a personal chat → ``message.received`` (with the chat's
  ``conversation.created``); in a group chat or a channel only when it @mentions the bot
  (``mentions_agent``), with the mention's ``<at>…</at>`` taken out of the text. A message
  without text (a file, an image, a card's submit) is not carried.
- ``messageUpdate`` (``channelData.eventType`` ``editMessage``) → ``message.edited``;
  ``messageDelete`` (``softDeleteMessage``) → ``message.deleted``; ``messageReaction`` →
  ``reaction.added`` / ``reaction.removed``, named by the message reacted to
  (``replyToId``). An edit outside a personal chat is carried only while it still mentions
  the bot, like the message itself.
- ``conversationUpdate`` adding the bot to a personal chat (the app installed) →
  ``conversation.created``, so a reply can reach the person before they write.

Event ids derive from the Activity (its id, conversation and time), so a redelivered
Activity is stored once. An Activity of another channel than Teams is not carried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.channels.normalize import Origin, connection_actor
from adapters.channels.teams import CHANNEL_ID, KIND
from domain import events as ev
from domain import ids

# --- the Activity, as much of it as we read ----------------------------------------------------


class ChannelAccount(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: str
    name: str = ""
    aad_object_id: str | None = None


class ConversationAccount(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: str
    conversation_type: str | None = None  # "personal", "groupChat", "channel"
    name: str | None = None
    tenant_id: str | None = None


class Mentioned(msgspec.Struct, frozen=True, kw_only=True):
    id: str = ""
    name: str = ""


class Entity(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""
    mentioned: Mentioned | None = None
    text: str | None = None  # "<at>Moltbot</at>": as it appears in the message's text


class Reaction(msgspec.Struct, frozen=True, kw_only=True):
    type: str


class Named(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None = None
    name: str | None = None


class ChannelData(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    event_type: str | None = None  # "editMessage", "softDeleteMessage", "undeleteMessage", …
    team: Named | None = None
    channel: Named | None = None


class Activity(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    type: str
    service_url: str
    channel_id: str
    conversation: ConversationAccount
    id: str | None = None
    timestamp: datetime | None = None
    sender: ChannelAccount | None = msgspec.field(default=None, name="from")
    recipient: ChannelAccount | None = None  # the bot: "28:<app id>"
    text: str = ""
    entities: tuple[Entity, ...] = ()
    reply_to_id: str | None = None
    reactions_added: tuple[Reaction, ...] = ()
    reactions_removed: tuple[Reaction, ...] = ()
    members_added: tuple[ChannelAccount, ...] = ()
    channel_data: ChannelData | None = None


def activity(payload: bytes | Mapping[str, Any]) -> Activity:
    """The Activity of a delivery; msgspec.ValidationError / DecodeError (ValueErrors) when it is none."""
    if isinstance(payload, bytes):
        return msgspec.json.decode(payload, type=Activity)
    return msgspec.convert(dict(payload), Activity)


# --- ids and the conversation reference ----------------------------------------------------------


def conversation_id(connection_id: str, teams_conversation_id: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{teams_conversation_id}")


def provider_message_id(teams_conversation_id: str, activity_id: str) -> str:
    return f"{teams_conversation_id}/{activity_id}"


def message_id(connection_id: str, teams_conversation_id: str, activity_id: str) -> str:
    provider_id = provider_message_id(teams_conversation_id, activity_id)
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{provider_id}")


def actor(connection_id: str) -> str:
    return connection_actor(KIND, connection_id)


class Reference(msgspec.Struct, frozen=True):
    """Where a conversation is reached: what the connector needs to post to it."""

    conversation_id: str  # Teams' own: "a:1…", "19:…@thread.v2", "19:…@thread.tacv2;messageid=…"
    service_url: str  # the Bot Connector endpoint the conversation's Activities came from
    bot_id: str  # the bot's account in it: "28:<app id>"


def reference(ref: Reference) -> str:
    """A conversation's external id: ``<conversation id>|<serviceUrl>|<bot id>`` (a URL
    cannot hold a bare ``|``, a bot id has none)."""
    return f"{ref.conversation_id}|{ref.service_url}|{ref.bot_id}"


def parse_reference(external_id: str) -> Reference:
    """The reference of an external id made by :func:`reference`; ValueError otherwise."""
    parts = external_id.rsplit("|", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError("not a Teams conversation reference")
    conversation, service_url, bot_id = parts
    if not re.match(r"https?://[^/\s|]+", service_url):
        raise ValueError("the conversation reference names no http(s) serviceUrl")
    return Reference(conversation, service_url, bot_id)


# --- what an Activity says -----------------------------------------------------------------------

# The six reactions Teams has always had, by the names Activities give them.
_REACTIONS = {"like": "👍", "heart": "❤️", "laugh": "😆", "surprised": "😮", "sad": "😢", "angry": "😠"}
_CODEPOINTS = re.compile(r"(?P<points>[0-9a-f]{4,6}(?:-[0-9a-f]{4,6})*)_[a-z0-9_]+")


def emoji(reaction_type: str) -> str:
    """A reaction's emoji: the classic names, or the code points Teams puts in front of the
    name of its newer ones ("1f440_eyes" → 👀); anything else as Teams named it."""
    known = _REACTIONS.get(reaction_type)
    if known is not None:
        return known
    coded = _CODEPOINTS.fullmatch(reaction_type.lower())
    if coded is not None:
        points = [int(point, 16) for point in coded["points"].split("-")]
        if all(point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF for point in points):
            return "".join(chr(point) for point in points)
    return reaction_type


def _is_bot(account_id: str, activity: Activity, app_id: str) -> bool:
    bot_id = activity.recipient.id if activity.recipient is not None else None
    return account_id == bot_id or account_id == f"28:{app_id}"


def mentions_bot(activity: Activity, app_id: str) -> bool:
    return any(
        entity.type == "mention"
        and entity.mentioned is not None
        and _is_bot(entity.mentioned.id, activity, app_id)
        for entity in activity.entities
    )


def plain_text(activity: Activity, app_id: str) -> str:
    """The text a person wrote: the bot's mention taken out, other people's as ``@Name``."""
    text = activity.text
    for entity in activity.entities:
        if entity.type != "mention" or entity.mentioned is None or not entity.text:
            continue
        shown = "" if _is_bot(entity.mentioned.id, activity, app_id) else f"@{entity.mentioned.name}"
        text = text.replace(entity.text, shown)
    text = re.sub(r"</?at>", "", text)  # a mention the entities did not spell out
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _kind(conversation: ConversationAccount) -> ev.ConversationKind:
    if conversation.conversation_type == "channel":
        return "thread" if ";messageid=" in conversation.id else "group"
    return "group" if conversation.conversation_type == "groupChat" else "direct"


def _title(activity: Activity, kind: ev.ConversationKind) -> str:
    conversation = activity.conversation
    if kind == "direct":
        sender = activity.sender
        return (sender.name if sender is not None else "") or "Teams chat"
    if conversation.conversation_type == "groupChat":
        return conversation.name or "Teams group chat"
    data = activity.channel_data
    names = (
        [named.name for named in (data.team, data.channel) if named is not None and named.name]
        if data
        else []
    )
    place = " / ".join(names) or conversation.name or "a Teams channel"
    return f"Thread in {place}" if kind == "thread" else place


class Delivery(msgspec.Struct, frozen=True):
    """What one Activity becomes: the conversation to create if new, then the events."""

    created: ev.ConversationCreated | None
    events: tuple[ev.Event, ...]


_NOTHING = Delivery(None, ())


def normalize(
    payload: bytes | Mapping[str, Any] | Activity,
    *,
    tenant_id: str,
    connection_id: str,
    app_id: str,
    now: datetime | None = None,
) -> Delivery:
    """The canonical events of one Activity posted to the connection of the bot ``app_id``.

    Raises ValueError (msgspec's errors among them) for a payload that is not an Activity."""
    parsed = payload if isinstance(payload, Activity) else activity(payload)
    if parsed.channel_id != CHANNEL_ID:
        return _NOTHING
    at = parsed.timestamp.astimezone(UTC) if parsed.timestamp is not None else (now or datetime.now(UTC))
    origin = Origin(KIND, tenant_id, connection_id, now)
    if parsed.type == "message":
        return _received(parsed, origin, app_id, at)
    if parsed.type == "messageUpdate":
        return _edited(parsed, origin, app_id, at)
    if parsed.type == "messageDelete":
        return _deleted(parsed, origin, at)
    if parsed.type == "messageReaction":
        return _reactions(parsed, origin, at)
    if parsed.type == "conversationUpdate":
        return _installed(parsed, origin, app_id)
    return _NOTHING  # typing, invoke, installationUpdate, …: not conversation


def _created(activity: Activity, origin: Origin, app_id: str) -> ev.ConversationCreated:
    kind = _kind(activity.conversation)
    bot_id = activity.recipient.id if activity.recipient is not None else f"28:{app_id}"
    ref = Reference(activity.conversation.id, activity.service_url, bot_id)
    return origin.conversation_created(
        conversation_id(origin.connection_id, ref.conversation_id),
        kind,
        _title(activity, kind),
        reference(ref),
    )


def _addressed(activity: Activity, app_id: str) -> bool:
    """Whether a message is the bot's to see: anything in a personal chat, elsewhere a mention."""
    return _kind(activity.conversation) == "direct" or mentions_bot(activity, app_id)


def _received(activity: Activity, origin: Origin, app_id: str, at: datetime) -> Delivery:
    sender = activity.sender
    if activity.id is None or sender is None or _is_bot(sender.id, activity, app_id):
        return _NOTHING
    if not _addressed(activity, app_id):
        return _NOTHING
    text = plain_text(activity, app_id)
    if not text:
        return _NOTHING  # files, images, cards' submits: not carried yet
    teams_conversation = activity.conversation.id
    conversation = conversation_id(origin.connection_id, teams_conversation)
    received = origin.event(
        ev.MessageReceived,
        conversation,
        ev.MessageReceivedData(
            message_id=message_id(origin.connection_id, teams_conversation, activity.id),
            connection_id=origin.connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(teams_conversation, activity.id),
            # "28:…" is a bot's account in Teams (another bot's message in a channel)
            sender=ev.Sender(
                id=f"{KIND}:{sender.id}", name=sender.name or "Teams user", is_bot=sender.id.startswith("28:")
            ),
            text=text,
            sent_at=at,
            mentions_agent=mentions_bot(activity, app_id),
        ),
    )
    return Delivery(_created(activity, origin, app_id), (received,))


def _event_type(activity: Activity) -> str | None:
    return activity.channel_data.event_type if activity.channel_data is not None else None


def _edited(activity: Activity, origin: Origin, app_id: str, at: datetime) -> Delivery:
    if activity.id is None or _event_type(activity) not in (None, "editMessage"):
        return _NOTHING  # undeleteMessage: no canonical event brings a message back
    if not _addressed(activity, app_id):
        return _NOTHING
    teams_conversation = activity.conversation.id
    provider_id = provider_message_id(teams_conversation, activity.id)
    data = ev.MessageEditedData(
        message_id=message_id(origin.connection_id, teams_conversation, activity.id),
        text=plain_text(activity, app_id),
        edited_at=at,
    )
    event_id = origin.derived_event_id(provider_id, f"edited:{at.isoformat()}", at)
    conversation = conversation_id(origin.connection_id, teams_conversation)
    return Delivery(None, (origin.event(ev.MessageEdited, conversation, data, event_id),))


def _deleted(activity: Activity, origin: Origin, at: datetime) -> Delivery:
    if activity.id is None or _event_type(activity) not in (None, "softDeleteMessage"):
        return _NOTHING
    teams_conversation = activity.conversation.id
    provider_id = provider_message_id(teams_conversation, activity.id)
    data = ev.MessageDeletedData(
        message_id=message_id(origin.connection_id, teams_conversation, activity.id), deleted_at=at
    )
    event_id = origin.derived_event_id(provider_id, "deleted", at)
    conversation = conversation_id(origin.connection_id, teams_conversation)
    return Delivery(None, (origin.event(ev.MessageDeleted, conversation, data, event_id),))


def _reactions(activity: Activity, origin: Origin, at: datetime) -> Delivery:
    sender, target = activity.sender, activity.reply_to_id
    if sender is None or not target:
        return _NOTHING
    teams_conversation = activity.conversation.id
    conversation = conversation_id(origin.connection_id, teams_conversation)
    provider_id = provider_message_id(teams_conversation, target)
    reacted = message_id(origin.connection_id, teams_conversation, target)
    events: list[ev.Event] = []
    changes: list[tuple[type[ev.ReactionAdded | ev.ReactionRemoved], str, Reaction]] = [
        *((ev.ReactionAdded, "added", reaction) for reaction in activity.reactions_added),
        *((ev.ReactionRemoved, "removed", reaction) for reaction in activity.reactions_removed),
    ]
    for cls, what, reaction in changes:
        data = ev.ReactionData(
            message_id=reacted, emoji=emoji(reaction.type), sender_id=f"{KIND}:{sender.id}"
        )
        event_id = origin.derived_event_id(
            provider_id, f"{what}:{sender.id}:{reaction.type}:{at.isoformat()}", at
        )
        events.append(origin.event(cls, conversation, data, event_id))
    return Delivery(None, tuple(events))


def _installed(activity: Activity, origin: Origin, app_id: str) -> Delivery:
    """The bot added to a personal chat: the chat exists (the person may not have written yet)."""
    if _kind(activity.conversation) != "direct":
        return _NOTHING
    if not any(_is_bot(member.id, activity, app_id) for member in activity.members_added):
        return _NOTHING
    return Delivery(_created(activity, origin, app_id), ())
