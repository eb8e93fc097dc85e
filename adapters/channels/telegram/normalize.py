"""Telegram updates as canonical events (pure): ``message`` → ``message.received``,
``edited_message`` → ``message.edited``, and the chat's ``conversation.created``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from aiogram.types import Audio, Chat, Document, Message, Update, User, Video

from adapters.channels.normalize import Origin, connection_actor
from adapters.channels.telegram import KIND
from domain import events as ev
from domain import ids


def conversation_id(connection_id: str, chat_id: int) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{chat_id}")


def provider_message_id(chat_id: int, message_id: int) -> str:
    return f"{chat_id}:{message_id}"


def message_id(connection_id: str, chat_id: int, telegram_message_id: int) -> str:
    return ids.stable_id(
        ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(chat_id, telegram_message_id)}"
    )


def actor(connection_id: str) -> str:
    return connection_actor(KIND, connection_id)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)  # pydantic's own tzinfo, as the stdlib's


def _as_update(update: Mapping[str, Any] | Update) -> Update:
    return update if isinstance(update, Update) else Update.model_validate(dict(update))


def _person_name(user: User | Chat) -> str:
    parts = [part for part in (user.first_name, user.last_name) if part]
    if parts:
        return " ".join(parts)
    if user.username:
        return f"@{user.username}"
    return str(user.id)


def _sender(message: Message) -> ev.Sender:
    if message.from_user is not None:
        user = message.from_user
        return ev.Sender(id=f"tg:{user.id}", name=_person_name(user), is_bot=user.is_bot)
    # Anonymous group admins and channels write as a chat.
    chat = message.sender_chat or message.chat
    return ev.Sender(id=f"tg:{chat.id}", name=chat.title or _person_name(chat))


def _attachments(message: Message) -> tuple[ev.Attachment, ...]:
    found: list[ev.Attachment] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        found.append(
            ev.Attachment(
                kind="image", provider_file_id=largest.file_id, mime="image/jpeg", size=largest.file_size
            )
        )
    named: tuple[tuple[Literal["document", "video", "audio"], Document | Video | Audio | None], ...] = (
        ("document", message.document),
        ("video", message.video),
        ("audio", message.audio),
    )
    for kind, file in named:
        if file is not None:
            found.append(
                ev.Attachment(
                    kind=kind,
                    provider_file_id=file.file_id,
                    mime=file.mime_type,
                    size=file.file_size,
                    name=file.file_name,
                )
            )
    if message.voice is not None:
        voice = message.voice
        found.append(
            ev.Attachment(
                kind="audio", provider_file_id=voice.file_id, mime=voice.mime_type, size=voice.file_size
            )
        )
    if message.sticker is not None:
        sticker = message.sticker
        found.append(ev.Attachment(kind="sticker", provider_file_id=sticker.file_id, size=sticker.file_size))
    return tuple(found)


def _mentions(text: str, bot_username: str) -> bool:
    name = bot_username.lstrip("@")
    return bool(name) and re.search(rf"(?<![\w@])@{re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def _replies_to_bot(message: Message, bot_username: str) -> bool:
    replied = message.reply_to_message
    author = replied.from_user if replied is not None else None
    return (
        author is not None
        and author.is_bot
        and (author.username or "").lower() == bot_username.lstrip("@").lower()
    )


def _message_of(update: Update) -> Message | None:
    return update.message or update.edited_message


def conversation_created(
    update: Mapping[str, Any] | Update, *, tenant_id: str, connection_id: str, now: datetime | None = None
) -> ev.ConversationCreated | None:
    """The ``conversation.created`` of the chat an update comes from (None: no chat)."""
    message = _message_of(_as_update(update))
    if message is None:
        return None
    chat = message.chat
    kind: ev.ConversationKind = "direct" if chat.type == "private" else "group"
    title = chat.title or _person_name(chat)
    origin = Origin(KIND, tenant_id, connection_id, now)
    return origin.conversation_created(conversation_id(connection_id, chat.id), kind, title, str(chat.id))


def normalize(
    update: Mapping[str, Any] | Update,
    *,
    tenant_id: str,
    connection_id: str,
    bot_username: str,
    now: datetime | None = None,
) -> list[ev.Event]:
    """The canonical events of one Telegram update (none for kinds we do not carry).

    ``message`` → ``message.received``; ``edited_message`` → ``message.edited``. The
    conversation's ``conversation.created`` is the caller's (see :func:`conversation_created`).
    """
    parsed = _as_update(update)
    origin = Origin(KIND, tenant_id, connection_id, now)
    if parsed.message is not None:
        received = _received(parsed.message, origin, bot_username)
        return [received] if received is not None else []
    if parsed.edited_message is not None:
        return [_edited(parsed.edited_message, origin)]
    return []


def _received(message: Message, origin: Origin, bot_username: str) -> ev.MessageReceived | None:
    text = message.text or message.caption or ""
    attachments = _attachments(message)
    if not text and not attachments:
        return None  # service messages (members joined, pinned, ...) are not conversation
    connection_id = origin.connection_id
    chat_id = message.chat.id
    reply_to = message.reply_to_message
    return origin.event(
        ev.MessageReceived,
        conversation_id(connection_id, chat_id),
        ev.MessageReceivedData(
            message_id=message_id(connection_id, chat_id, message.message_id),
            connection_id=connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(chat_id, message.message_id),
            sender=_sender(message),
            text=text,
            sent_at=utc(message.date),
            attachments=attachments,
            reply_to_message_id=(
                message_id(connection_id, chat_id, reply_to.message_id) if reply_to is not None else None
            ),
            mentions_agent=_mentions(text, bot_username) or _replies_to_bot(message, bot_username),
        ),
    )


def _edited(message: Message, origin: Origin) -> ev.MessageEdited:
    connection_id = origin.connection_id
    chat_id = message.chat.id
    edited_at = (
        datetime.fromtimestamp(message.edit_date, UTC) if message.edit_date is not None else utc(message.date)
    )
    return origin.event(
        ev.MessageEdited,
        conversation_id(connection_id, chat_id),
        ev.MessageEditedData(
            message_id=message_id(connection_id, chat_id, message.message_id),
            text=message.text or message.caption or "",
            edited_at=edited_at,
        ),
        # message.edited is deduplicated by its event id: derive it from the edit itself, so
        # a repeated update (a crash before the offset moved) is stored once.
        origin.derived_event_id(
            provider_message_id(chat_id, message.message_id), edited_at.isoformat(), edited_at
        ),
    )
