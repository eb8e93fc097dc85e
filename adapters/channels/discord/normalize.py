"""Discord gateway dispatches as canonical events (pure): ``MESSAGE_CREATE`` →
``message.received``, ``MESSAGE_UPDATE`` → ``message.edited``, ``MESSAGE_DELETE(_BULK)`` →
``message.deleted``, ``MESSAGE_REACTION_*`` → ``reaction.*``; and a channel's
``conversation.created``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.channels.discord import KIND
from adapters.channels.normalize import Origin, connection_actor, file_kind
from domain import events as ev
from domain import ids

DISCORD_EPOCH_MS = 1_420_070_400_000
_CONVERSATION_TYPES = (0, 19)  # default and reply; joins, pins, boosts... are not conversation

Json = Mapping[str, Any]


def conversation_id(connection_id: str, channel_id: int | str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{channel_id}")


def provider_message_id(channel_id: int | str, message_id: int | str) -> str:
    return f"{channel_id}:{message_id}"


def message_id(connection_id: str, channel_id: int | str, discord_message_id: int | str) -> str:
    return ids.stable_id(
        ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(channel_id, discord_message_id)}"
    )


def actor(connection_id: str) -> str:
    return connection_actor(KIND, connection_id)


def snowflake_time(snowflake: int | str) -> datetime:
    """When Discord made an id (its top 42 bits are milliseconds since 2015)."""
    return datetime.fromtimestamp(((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _name(user: Json, member: Json | None = None) -> str:
    nick = (member or {}).get("nick")
    return str(nick or user.get("global_name") or user.get("username") or user.get("id"))


_USER_MENTION = re.compile(r"<@!?(\d+)>")


def _readable(content: str, mentions: Sequence[Json]) -> str:
    """``<@123>`` as ``@Ada`` for the people the message mentions (Discord sends their names)."""
    names = {str(user.get("id")): _name(user, user.get("member")) for user in mentions}
    return _USER_MENTION.sub(lambda m: f"@{names[m[1]]}" if m[1] in names else m[0], content)


def _attachments(data: Json) -> tuple[ev.Attachment, ...]:
    found: list[ev.Attachment] = []
    for attachment in data.get("attachments") or ():
        mime = attachment.get("content_type")
        found.append(
            ev.Attachment(
                kind=file_kind(mime),
                # Discord's CDN url (signed, refreshable through the attachment id in it).
                provider_file_id=str(attachment.get("url") or attachment["id"]),
                mime=mime,
                size=attachment.get("size"),
                name=attachment.get("filename"),
            )
        )
    for sticker in data.get("sticker_items") or ():
        found.append(
            ev.Attachment(kind="sticker", provider_file_id=str(sticker["id"]), name=sticker.get("name"))
        )
    return tuple(found)


def _replies_to(data: Json, bot_user_id: str) -> bool:
    referenced = data.get("referenced_message") or {}
    return str((referenced.get("author") or {}).get("id")) == bot_user_id


def _mentions_bot(data: Json, bot_user_id: str) -> bool:
    return any(str(user.get("id")) == bot_user_id for user in data.get("mentions") or ())


def channel_title(name: str, guild: str | None) -> str:
    """A server channel's conversation title: ``#general (Analytical Engine Club)``."""
    return f"#{name} ({guild})" if guild else f"#{name}"


def conversation_created(
    payload: Json,
    *,
    tenant_id: str,
    connection_id: str,
    title: str | None = None,
    now: datetime | None = None,
) -> ev.ConversationCreated | None:
    """The ``conversation.created`` of the channel a message dispatch comes from (None: not one).

    A guild channel is a ``group`` titled ``title`` (the session knows channel names from
    ``GUILD_CREATE``); a DM is ``direct``, titled with the person's name.
    """
    if payload.get("t") not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        return None
    data = payload.get("d") or {}
    author = data.get("author")
    if "channel_id" not in data or not author:
        return None
    channel_id = str(data["channel_id"])
    in_guild = data.get("guild_id") is not None
    kind: ev.ConversationKind = "group" if in_guild else "direct"
    fallback = f"#{channel_id}" if in_guild else _name(author)
    origin = Origin(KIND, tenant_id, connection_id, now)
    return origin.conversation_created(
        conversation_id(connection_id, channel_id), kind, title or fallback, channel_id
    )


@dataclass(frozen=True)
class _Origin(Origin):
    """Where a dispatch comes from, and which bot is ours; its events are a channel's."""

    bot_user_id: str
    owner_user_id: str | None = None  # the person who owns the bot's application: their messages are "ours"

    def in_channel(
        self, event_cls: type[ev.E], channel_id: str, data: msgspec.Struct, event_id: str | None = None
    ) -> ev.E:
        return self.event(event_cls, conversation_id(self.connection_id, channel_id), data, event_id)

    def message_id(self, channel_id: str, discord_message_id: int | str) -> str:
        return message_id(self.connection_id, channel_id, discord_message_id)

    def message_event_id(
        self, channel_id: str, discord_message_id: int | str, what: str, at: datetime
    ) -> str:
        return self.derived_event_id(provider_message_id(channel_id, discord_message_id), what, at)


def normalize(
    payload: Json,
    *,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    owner_user_id: str | None = None,
    now: datetime | None = None,
) -> list[ev.Event]:
    """The canonical events of one gateway dispatch (``{"op": 0, "t": ..., "s": ..., "d": ...}``).

    ``MESSAGE_CREATE`` → ``message.received``, or ``message.sent`` with ``origin="device"``
    when the bot's owner (``owner_user_id``: the application's owner) wrote it — they answered
    themselves, and the agent steps back there; ``MESSAGE_UPDATE`` with an edit time →
    ``message.edited``; ``MESSAGE_DELETE`` (and ``_BULK``) → ``message.deleted``;
    ``MESSAGE_REACTION_ADD`` / ``_REMOVE`` → ``reaction.added`` / ``reaction.removed``.
    What our own bot does is not news to us, and other dispatches have no events. The
    conversation's ``conversation.created`` is the caller's (see :func:`conversation_created`).
    """
    name = payload.get("t")
    data = payload.get("d")
    if not isinstance(data, Mapping):
        return []
    origin = _Origin(
        KIND, tenant_id, connection_id, now, bot_user_id=str(bot_user_id), owner_user_id=owner_user_id
    )
    found: list[ev.Event | None] = []
    if name == "MESSAGE_CREATE":
        found = [_received(data, origin)]
    elif name == "MESSAGE_UPDATE":
        found = [_edited(data, origin)]
    elif name == "MESSAGE_DELETE":
        found = [_deleted(str(data["channel_id"]), data["id"], origin)]
    elif name == "MESSAGE_DELETE_BULK":
        found = [_deleted(str(data["channel_id"]), each, origin) for each in data["ids"]]
    elif name in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
        found = [_reaction(data, origin, added=name == "MESSAGE_REACTION_ADD", seq=payload.get("s"))]
    return [event for event in found if event is not None]


def _received(data: Json, origin: _Origin) -> ev.MessageReceived | ev.MessageSent | None:
    author = data["author"]
    if str(author["id"]) == origin.bot_user_id or data.get("type", 0) not in _CONVERSATION_TYPES:
        return None
    text = _readable(data.get("content") or "", data.get("mentions") or ())
    attachments = _attachments(data)
    if not text and not attachments:
        return None  # an embed-only message, or one whose text the bot may not read
    channel_id = str(data["channel_id"])
    if origin.owner_user_id is not None and str(author["id"]) == origin.owner_user_id:
        return origin.in_channel(
            ev.MessageSent,
            channel_id,
            ev.MessageSentData(
                message_id=origin.message_id(channel_id, data["id"]),
                connection_id=origin.connection_id,
                channel=KIND,
                provider_message_id=provider_message_id(channel_id, data["id"]),
                text=text,
                sent_at=_timestamp(data["timestamp"]),
                sender=ev.Sender(id=f"dc:{author['id']}", name=_name(author, data.get("member"))),
                origin="device",
            ),
        )
    reference = data.get("message_reference") or {}
    is_reply = bool(reference.get("message_id")) and reference.get("type", 0) == 0  # 1 is a forward
    return origin.in_channel(
        ev.MessageReceived,
        channel_id,
        ev.MessageReceivedData(
            message_id=origin.message_id(channel_id, data["id"]),
            connection_id=origin.connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(channel_id, data["id"]),
            sender=ev.Sender(
                id=f"dc:{author['id']}",
                name=_name(author, data.get("member")),
                is_bot=bool(author.get("bot")),
            ),
            text=text,
            sent_at=_timestamp(data["timestamp"]),
            attachments=attachments,
            reply_to_message_id=(
                origin.message_id(str(reference.get("channel_id", channel_id)), reference["message_id"])
                if is_reply
                else None
            ),
            mentions_agent=_mentions_bot(data, origin.bot_user_id) or _replies_to(data, origin.bot_user_id),
        ),
    )


def _edited(data: Json, origin: _Origin) -> ev.MessageEdited | None:
    if not data.get("edited_timestamp") or "content" not in data:
        return None  # an embed unfurled, a pin: Discord's update, not the person's edit
    if str((data.get("author") or {}).get("id")) == origin.bot_user_id:
        return None
    channel_id = str(data["channel_id"])
    edited_at = _timestamp(data["edited_timestamp"])
    return origin.in_channel(
        ev.MessageEdited,
        channel_id,
        ev.MessageEditedData(
            message_id=origin.message_id(channel_id, data["id"]),
            text=_readable(data.get("content") or "", data.get("mentions") or ()),
            edited_at=edited_at,
        ),
        event_id=origin.message_event_id(
            channel_id, data["id"], f"edited:{edited_at.isoformat()}", edited_at
        ),
    )


def _deleted(channel_id: str, discord_message_id: int | str, origin: _Origin) -> ev.MessageDeleted:
    return origin.in_channel(
        ev.MessageDeleted,
        channel_id,
        ev.MessageDeletedData(
            message_id=origin.message_id(channel_id, discord_message_id),
            deleted_at=origin.now or datetime.now(UTC),
        ),
        # Discord does not say when; dated by the message, a repeat has the same id.
        event_id=origin.message_event_id(
            channel_id, discord_message_id, "deleted", snowflake_time(discord_message_id)
        ),
    )


def _emoji(emoji: Json) -> str:
    if emoji.get("id") is None:
        return str(emoji.get("name") or "")
    return f"<{'a' if emoji.get('animated') else ''}:{emoji.get('name') or '_'}:{emoji['id']}>"


def _reaction(
    data: Json, origin: _Origin, *, added: bool, seq: Any
) -> ev.ReactionAdded | ev.ReactionRemoved | None:
    if str(data["user_id"]) == origin.bot_user_id:
        return None
    channel_id = str(data["channel_id"])
    emoji = _emoji(data.get("emoji") or {})
    reaction = ev.ReactionData(
        message_id=origin.message_id(channel_id, data["message_id"]),
        emoji=emoji,
        sender_id=f"dc:{data['user_id']}",
    )
    # The dispatch's sequence tells a replay after RESUME (same seq) from a new reaction.
    what = f"reaction_{'added' if added else 'removed'}:{data['user_id']}:{emoji}:{seq}"
    event_id = origin.message_event_id(
        channel_id, data["message_id"], what, snowflake_time(data["message_id"])
    )
    if added:
        return origin.in_channel(ev.ReactionAdded, channel_id, reaction, event_id)
    return origin.in_channel(ev.ReactionRemoved, channel_id, reaction, event_id)
