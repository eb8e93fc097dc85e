"""Slack Events API payloads as canonical events (pure).

``message`` (and ``app_mention``) → ``message.received``; ``message_changed`` →
``message.edited``; ``message_deleted`` → ``message.deleted``; ``reaction_*`` →
``reaction.*``; and the ``conversation.created`` of a channel, DM or thread. A delivery
for another workspace than the connection's is refused (:func:`check_workspace`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adapters.channels.errors import WrongWorkspace
from adapters.channels.normalize import Origin, connection_actor, file_kind
from adapters.channels.slack import KIND
from domain import events as ev
from domain import ids

_CARRIED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})


def channel_conversation_id(connection_id: str, channel: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{channel}")


def thread_conversation_id(connection_id: str, channel: str, thread_ts: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{channel}:{thread_ts}")


def provider_message_id(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def message_id(connection_id: str, channel: str, ts: str) -> str:
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(channel, ts)}")


def actor(connection_id: str) -> str:
    return connection_actor(KIND, connection_id)


def slack_time(ts: str) -> datetime:
    """A Slack ``ts`` ("1700000000.000100") as a UTC datetime, to the microsecond."""
    seconds, _, fraction = str(ts).partition(".")
    micros = int((fraction + "000000")[:6]) if fraction else 0
    return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=micros)


def inner(event_callback: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = event_callback.get("event") if event_callback.get("type") == "event_callback" else None
    return inner if isinstance(inner, Mapping) else {}


def check_workspace(payload: Mapping[str, Any], *, team_id: str, app_id: str | None = None) -> None:
    """Refuse (WrongWorkspace) a delivery that is not for this workspace, or not from this
    app when the connection knows its app; ``url_verification`` names neither."""
    if payload.get("type") == "url_verification":
        return
    if payload.get("team_id") != team_id:
        raise WrongWorkspace("This Slack delivery is for another workspace than this connection's.")
    if app_id is not None and payload.get("api_app_id") != app_id:
        raise WrongWorkspace("This Slack delivery is from another app than this connection's.")


class _Place(msgspec.Struct, frozen=True):
    """Where a message lives: a channel (or DM), or a thread of one."""

    conversation_id: str
    kind: ev.ConversationKind
    external_id: str
    channel: str
    thread_ts: str | None


def _place(connection_id: str, channel: str, channel_type: str | None, message: Mapping[str, Any]) -> _Place:
    thread_ts = message.get("thread_ts")
    ts = message.get("ts")
    if isinstance(thread_ts, str) and thread_ts and thread_ts != ts:
        return _Place(
            thread_conversation_id(connection_id, channel, thread_ts),
            "thread",
            f"{channel}:{thread_ts}",
            channel,
            thread_ts,
        )
    is_direct = channel_type == "im" or (channel_type is None and channel.startswith("D"))
    kind: ev.ConversationKind = "direct" if is_direct else "group"
    return _Place(channel_conversation_id(connection_id, channel), kind, channel, channel, None)


def _is_ours(message: Mapping[str, Any], bot_user_id: str) -> bool:
    return message.get("user") == bot_user_id or message.get("subtype") == "bot_message"


def _sender(message: Mapping[str, Any]) -> ev.Sender:
    user = str(message.get("user") or message.get("bot_id") or "unknown")
    profile = message.get("user_profile")
    name = user
    if isinstance(profile, Mapping):
        name = str(profile.get("display_name") or profile.get("real_name") or profile.get("name") or user)
    return ev.Sender(id=f"{KIND}:{user}", name=name, is_bot="bot_id" in message)


def _attachments(message: Mapping[str, Any]) -> tuple[ev.Attachment, ...]:
    found: list[ev.Attachment] = []
    for file in message.get("files") or ():
        if not isinstance(file, Mapping) or not file.get("id"):
            continue
        mime = file.get("mimetype")
        found.append(
            ev.Attachment(
                kind=file_kind(mime),
                provider_file_id=str(file["id"]),
                mime=mime,
                size=file.get("size"),
                name=file.get("name"),
            )
        )
    return tuple(found)


def _mentions(text: str, bot_user_id: str) -> bool:
    # Slack writes a mention as <@U123> or <@U123|name>.
    return re.search(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", text) is not None


# Common reaction names as the emoji people see; others keep Slack's :name:.
_EMOJI = {
    "+1": "👍", "thumbsup": "👍", "-1": "👎", "thumbsdown": "👎", "heart": "❤️", "joy": "😂",
    "smile": "😄", "tada": "🎉", "eyes": "👀", "white_check_mark": "✅", "heavy_check_mark": "✔️",
    "pray": "🙏", "fire": "🔥", "rocket": "🚀", "100": "💯", "ok_hand": "👌", "raised_hands": "🙌",
    "wave": "👋", "thinking_face": "🤔", "cry": "😢",
}  # fmt: skip


def emoji(reaction: str) -> str:
    """A Slack reaction name ("thumbsup", "thumbsup::skin-tone-2") as the emoji it shows."""
    base = reaction.split("::", 1)[0]
    return _EMOJI.get(base, f":{reaction}:")


def normalize(
    event_callback: Mapping[str, Any],
    *,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    owner_user_id: str | None = None,
    now: datetime | None = None,
) -> list[ev.Event]:
    """The canonical events of one Events API ``event_callback`` (none for what we do not carry).

    ``message`` (and ``app_mention``, the same message: one dedupe key) → ``message.received``,
    or ``message.sent`` with ``origin="device"`` when the inbox's owner (``owner_user_id``, their
    Slack member id) wrote it — they answered themselves, and the agent steps back there;
    subtype ``message_changed`` → ``message.edited``; ``message_deleted`` →
    ``message.deleted``; ``reaction_added`` / ``reaction_removed`` → ``reaction.*`` (on the
    channel's conversation: Slack does not say which thread the message is in). Messages
    of bots (``bot_message``) and of our own bot are skipped. The conversation's
    ``conversation.created`` is the caller's (see :func:`conversation_created`).
    """
    event = inner(event_callback)
    kind = event.get("type")
    channel = event.get("channel")
    origin = Origin(KIND, tenant_id, connection_id, now)
    if kind in ("message", "app_mention") and isinstance(channel, str):
        subtype = event.get("subtype")
        if subtype == "message_changed":
            return _edited(event, channel, origin, bot_user_id)
        if subtype == "message_deleted":
            return _deleted(event, channel, origin, bot_user_id)
        received = _received(event, channel, origin, bot_user_id, owner_user_id)
        return [received] if received is not None else []
    if kind in ("reaction_added", "reaction_removed"):
        return _reaction(event, origin)
    return []


def _received(
    event: Mapping[str, Any], channel: str, origin: Origin, bot_user_id: str, owner_user_id: str | None
) -> ev.MessageReceived | ev.MessageSent | None:
    ts = event.get("ts")
    if (
        event.get("subtype") not in _CARRIED_SUBTYPES
        or not isinstance(ts, str)
        or _is_ours(event, bot_user_id)
    ):
        return None
    text = str(event.get("text") or "")
    attachments = _attachments(event)
    if not text and not attachments:
        return None
    connection_id = origin.connection_id
    place = _place(connection_id, channel, event.get("channel_type"), event)
    if owner_user_id is not None and event.get("user") == owner_user_id:
        return origin.event(
            ev.MessageSent,
            place.conversation_id,
            ev.MessageSentData(
                message_id=message_id(connection_id, channel, ts),
                connection_id=connection_id,
                channel=KIND,
                provider_message_id=provider_message_id(channel, ts),
                text=text,
                sent_at=slack_time(ts),
                sender=_sender(event),
                origin="device",
            ),
        )
    # In a thread the bot started, every reply is addressed to it.
    in_our_thread = place.thread_ts is not None and event.get("parent_user_id") == bot_user_id
    return origin.event(
        ev.MessageReceived,
        place.conversation_id,
        ev.MessageReceivedData(
            message_id=message_id(connection_id, channel, ts),
            connection_id=connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(channel, ts),
            sender=_sender(event),
            text=text,
            sent_at=slack_time(ts),
            attachments=attachments,
            mentions_agent=event.get("type") == "app_mention"
            or _mentions(text, bot_user_id)
            or in_our_thread,
        ),
    )


def _edited(event: Mapping[str, Any], channel: str, origin: Origin, bot_user_id: str) -> list[ev.Event]:
    message = event.get("message")
    if not isinstance(message, Mapping) or _is_ours(message, bot_user_id):
        return []
    edited = message.get("edited")
    ts = message.get("ts")
    # message_changed also reports unfurls and thread reply counts: only "edited" is an edit.
    if not isinstance(edited, Mapping) or not isinstance(ts, str):
        return []
    edited_at = slack_time(str(edited.get("ts") or event.get("event_ts") or ts))
    place = _place(origin.connection_id, channel, event.get("channel_type"), message)
    data = ev.MessageEditedData(
        message_id=message_id(origin.connection_id, channel, ts),
        text=str(message.get("text") or ""),
        edited_at=edited_at,
    )
    event_id = origin.derived_event_id(
        provider_message_id(channel, ts), f"edited:{edited_at.isoformat()}", edited_at
    )
    return [origin.event(ev.MessageEdited, place.conversation_id, data, event_id)]


def _deleted(event: Mapping[str, Any], channel: str, origin: Origin, bot_user_id: str) -> list[ev.Event]:
    previous = event.get("previous_message")
    previous = previous if isinstance(previous, Mapping) else {}
    ts = event.get("deleted_ts") or previous.get("ts")
    if not isinstance(ts, str) or _is_ours(previous, bot_user_id):
        return []
    deleted_at = slack_time(str(event.get("event_ts") or event.get("ts") or ts))
    place = _place(origin.connection_id, channel, event.get("channel_type"), {"ts": ts, **previous})
    data = ev.MessageDeletedData(
        message_id=message_id(origin.connection_id, channel, ts), deleted_at=deleted_at
    )
    event_id = origin.derived_event_id(provider_message_id(channel, ts), "deleted", deleted_at)
    return [origin.event(ev.MessageDeleted, place.conversation_id, data, event_id)]


def _reaction(event: Mapping[str, Any], origin: Origin) -> list[ev.Event]:
    item = event.get("item")
    if not isinstance(item, Mapping) or item.get("type") != "message":
        return []  # reactions to files and file comments are not conversation
    channel, ts, user, name = item.get("channel"), item.get("ts"), event.get("user"), event.get("reaction")
    if not all(isinstance(value, str) and value for value in (channel, ts, user, name)):
        return []
    assert isinstance(channel, str) and isinstance(ts, str)
    at = slack_time(str(event.get("event_ts") or ts))
    kind = event["type"]
    cls: type[ev.ReactionAdded | ev.ReactionRemoved] = (
        ev.ReactionAdded if kind == "reaction_added" else ev.ReactionRemoved
    )
    data = ev.ReactionData(
        message_id=message_id(origin.connection_id, channel, ts),
        emoji=emoji(str(name)),
        sender_id=f"{KIND}:{user}",
    )
    what = f"{kind}:{user}:{name}:{event.get('event_ts')}"
    event_id = origin.derived_event_id(provider_message_id(channel, ts), what, at)
    return [origin.event(cls, channel_conversation_id(origin.connection_id, channel), data, event_id)]


def conversation_created(
    event_callback: Mapping[str, Any],
    *,
    tenant_id: str,
    connection_id: str,
    title: str | None = None,
    now: datetime | None = None,
) -> ev.ConversationCreated | None:
    """The ``conversation.created`` of the channel, DM or thread a message is in (None: no message).

    Slack's events do not carry channel names; ``title`` overrides the default.
    """
    event = inner(event_callback)
    channel = event.get("channel")
    if event.get("type") not in ("message", "app_mention") or not isinstance(channel, str):
        return None
    message = event
    if event.get("subtype") == "message_changed" and isinstance(event.get("message"), Mapping):
        message = event["message"]
    place = _place(connection_id, channel, event.get("channel_type"), message)
    if title is None:
        if place.kind == "thread":
            title = f"Thread in {channel}"
        elif place.kind == "direct":
            title = f"Slack direct message with {message.get('user') or channel}"
        else:
            title = f"Slack channel {channel}"
    origin = Origin(KIND, tenant_id, connection_id, now)
    return origin.conversation_created(place.conversation_id, place.kind, title, place.external_id)


class Delivery(msgspec.Struct, frozen=True):
    """What one Slack event becomes: the conversation to create if new, then the events."""

    created: ev.ConversationCreated | None
    events: tuple[ev.Event, ...]


def delivery(
    event_callback: Mapping[str, Any],
    *,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    owner_user_id: str | None = None,
    now: datetime | None = None,
) -> Delivery:
    events = normalize(
        event_callback, tenant_id=tenant_id, connection_id=connection_id, bot_user_id=bot_user_id,
        owner_user_id=owner_user_id, now=now,
    )  # fmt: skip
    created = None
    if any(isinstance(event, ev.MessageReceived | ev.MessageSent) for event in events):
        created = conversation_created(
            event_callback, tenant_id=tenant_id, connection_id=connection_id, now=now
        )
    return Delivery(created, tuple(events))
