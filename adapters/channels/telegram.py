"""The Telegram connector: a bot (token from @BotFather) linked to a tenant's inbox.

- **In:** :class:`TelegramSession` long-polls ``getUpdates`` for one connection and
  appends what :func:`normalize` makes of each update (``message.received``,
  ``message.edited``), after ``conversation.created`` for a chat seen for the first
  time. The offset moves past an update only once its events are stored, so a crash
  repeats updates and their dedupe keys store them once.
- **Out:** :class:`TelegramConnector` executes ``send_message`` commands with the bot of
  the command's connection, mapping Telegram's answers onto ``SendDeferred`` (flood
  control, outages) and ``SendRejected`` (blocked, kicked, chat gone, token revoked).
- Connection health goes on the connection aggregate as ``connection.state_changed``
  (connecting, connected, degraded, action_required), only when it changes.

Ids are derived from Telegram's: a chat is ``stable_id("c", "telegram:<connection>:<chat
id>")``, a message ``stable_id("m", "telegram:<connection>:<chat id>:<message id>")``.
aiogram is used as the HTTP client only; we own the polling loop to control offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import Chat, Message, Update, User
from aiogram.utils.token import TokenValidationError

from adapters.channels.health import record_state
from adapters.channels.media import fetch_media
from adapters.media.store import MediaStore
from adapters.nats.errors import ConcurrencyConflict
from adapters.nats.event_store import EventStore
from domain import events as ev
from domain import ids
from domain.commands import SendMessage
from domain.connectors import Capabilities, Delivered, SendDeferred, SendRejected

log = structlog.get_logger()

KIND = "telegram"
TELEGRAM_CAPABILITIES = Capabilities(
    max_text_length=4096, edits=True, deletes=False, reactions=False, typing=True, media=True
)
DEFAULT_POLL_TIMEOUT = 25  # seconds Telegram holds a getUpdates open when nothing is new
MAX_BACKOFF = 30.0

Credentials = Callable[[str], Awaitable[Mapping[str, Any]]]  # connection id -> {"token": ...}


# --- errors ------------------------------------------------------------------------------


class TelegramConnectorError(Exception):
    """Base of the Telegram connector's own errors; ``str()`` is written for a person."""


class TokenRejected(TelegramConnectorError):
    """Telegram does not accept the bot token (malformed, revoked or never issued)."""


class TelegramUnreachable(TelegramConnectorError):
    """Telegram could not be asked (network error, outage); try again later."""


# --- identity -----------------------------------------------------------------------------


class BotIdentity(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    display_name: str


def _api_server(api_base: str | None) -> TelegramAPIServer:
    return PRODUCTION if api_base is None else TelegramAPIServer.from_base(api_base)


def _new_bot(token: str, session: AiohttpSession) -> Bot:
    try:
        return Bot(token, session=session)
    except TokenValidationError:
        raise TokenRejected(
            "This is not a Telegram bot token: @BotFather gives tokens like 123456789:AAE…"
        ) from None


async def set_webhook(token: str, url: str, secret: str, *, api_base: str | None = None) -> None:
    """Ask Telegram to POST this bot's updates to ``url`` with ``secret`` in the
    ``X-Telegram-Bot-Api-Secret-Token`` header (webhook mode: no long polling)."""
    session = AiohttpSession(api=_api_server(api_base), timeout=15)
    try:
        bot = _new_bot(token.strip(), session)
        try:
            await bot.set_webhook(url=url, secret_token=secret, allowed_updates=["message", "edited_message"])
        except (TelegramUnauthorizedError, TelegramNotFound):
            raise TokenRejected("Telegram does not accept this bot token") from None
        except (TelegramAPIError, ClientDecodeError) as exc:
            raise TelegramUnreachable(f"Telegram refused the webhook: {exc}") from None
    finally:
        await session.close()


async def store_update(
    store: EventStore,
    update: Mapping[str, Any] | Update,
    *,
    tenant_id: str,
    connection_id: str,
    bot_username: str,
) -> list[ev.Event]:
    """Append what one update says (the conversation first if it is new); what a webhook
    delivery does. Dedupe keys store a redelivered update once."""
    events = normalize(update, tenant_id=tenant_id, connection_id=connection_id, bot_username=bot_username)
    created = conversation_created(update, tenant_id=tenant_id, connection_id=connection_id)
    if events and created is not None:
        with contextlib.suppress(ConcurrencyConflict):
            await store.append(created, expected_seq=0)
    for event in events:
        await store.append(event)
    return events


async def validate_token(token: str, *, api_base: str | None = None) -> BotIdentity:
    """The bot a token belongs to (``getMe``); raises TokenRejected or TelegramUnreachable."""
    session = AiohttpSession(api=_api_server(api_base), timeout=15)
    try:
        bot = _new_bot(token.strip(), session)
        try:
            me = await bot.get_me()
        except (TelegramUnauthorizedError, TelegramNotFound):  # 404: a token Telegram cannot parse
            raise TokenRejected("Telegram does not accept this bot token") from None
        except (TelegramAPIError, ClientDecodeError) as exc:
            raise TelegramUnreachable(f"Telegram could not check the token just now: {exc}") from None
    finally:
        await session.close()
    return BotIdentity(id=me.id, username=me.username or str(me.id), display_name=me.full_name)


# --- normalization (pure) ------------------------------------------------------------------


def conversation_id(connection_id: str, chat_id: int) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{chat_id}")


def provider_message_id(chat_id: int, message_id: int) -> str:
    return f"{chat_id}:{message_id}"


def message_id(connection_id: str, chat_id: int, telegram_message_id: int) -> str:
    return ids.stable_id(
        ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(chat_id, telegram_message_id)}"
    )


def actor(connection_id: str) -> str:
    return f"connector:{KIND}:{connection_id}"


def _utc(moment: datetime) -> datetime:
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
    if message.document is not None:
        doc = message.document
        found.append(
            ev.Attachment(
                kind="document",
                provider_file_id=doc.file_id,
                mime=doc.mime_type,
                size=doc.file_size,
                name=doc.file_name,
            )
        )
    if message.video is not None:
        video = message.video
        found.append(
            ev.Attachment(
                kind="video",
                provider_file_id=video.file_id,
                mime=video.mime_type,
                size=video.file_size,
                name=video.file_name,
            )
        )
    if message.audio is not None:
        audio = message.audio
        found.append(
            ev.Attachment(
                kind="audio",
                provider_file_id=audio.file_id,
                mime=audio.mime_type,
                size=audio.file_size,
                name=audio.file_name,
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
    return ev.new_event(
        ev.ConversationCreated,
        tenant_id=tenant_id,
        aggregate_id=conversation_id(connection_id, chat.id),
        actor=actor(connection_id),
        occurred_at=now,
        data=ev.ConversationCreatedData(
            channel=KIND, connection_id=connection_id, kind=kind, title=title, external_id=str(chat.id)
        ),
    )


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
    if parsed.message is not None:
        received = _received(parsed.message, tenant_id, connection_id, bot_username, now)
        return [received] if received is not None else []
    if parsed.edited_message is not None:
        return [_edited(parsed.edited_message, tenant_id, connection_id, now)]
    return []


def _received(
    message: Message, tenant_id: str, connection_id: str, bot_username: str, now: datetime | None
) -> ev.MessageReceived | None:
    text = message.text or message.caption or ""
    attachments = _attachments(message)
    if not text and not attachments:
        return None  # service messages (members joined, pinned, ...) are not conversation
    chat_id = message.chat.id
    reply_to = message.reply_to_message
    return ev.new_event(
        ev.MessageReceived,
        tenant_id=tenant_id,
        aggregate_id=conversation_id(connection_id, chat_id),
        actor=actor(connection_id),
        occurred_at=now,
        data=ev.MessageReceivedData(
            message_id=message_id(connection_id, chat_id, message.message_id),
            connection_id=connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(chat_id, message.message_id),
            sender=_sender(message),
            text=text,
            sent_at=_utc(message.date),
            attachments=attachments,
            reply_to_message_id=(
                message_id(connection_id, chat_id, reply_to.message_id) if reply_to is not None else None
            ),
            mentions_agent=_mentions(text, bot_username) or _replies_to_bot(message, bot_username),
        ),
    )


def _edited(message: Message, tenant_id: str, connection_id: str, now: datetime | None) -> ev.MessageEdited:
    chat_id = message.chat.id
    edited_at = (
        datetime.fromtimestamp(message.edit_date, UTC)
        if message.edit_date is not None
        else _utc(message.date)
    )
    # message.edited is deduplicated by its event id: derive it from the edit itself, so a
    # repeated update (a crash before the offset moved) is stored once.
    key = f"{KIND}:{connection_id}:{provider_message_id(chat_id, message.message_id)}:{edited_at.isoformat()}"
    event_id = ids.ulid(
        at_ms=int(edited_at.timestamp() * 1000),
        randomness=hashlib.blake2b(key.encode(), digest_size=10).digest(),
    )
    return ev.new_event(
        ev.MessageEdited,
        tenant_id=tenant_id,
        aggregate_id=conversation_id(connection_id, chat_id),
        actor=actor(connection_id),
        occurred_at=now,
        event_id=event_id,
        data=ev.MessageEditedData(
            message_id=message_id(connection_id, chat_id, message.message_id),
            text=message.text or message.caption or "",
            edited_at=edited_at,
        ),
    )


# --- in: one connection's long-polling session --------------------------------------------

_UNREACHABLE_MESSAGE = "Telegram cannot be reached right now; Moltbot keeps trying."
_CONFLICT_MESSAGE = (
    "Another program is reading this bot's messages (or a webhook is set); stop it, or Moltbot"
    " cannot receive them."
)


class TelegramSession:
    """Long-polls one bot's updates into the log and reports the connection's health.

    ``run`` returns when Telegram refuses the token (reported as ``action_required``);
    network trouble is reported as ``degraded`` and retried with exponential backoff;
    an error of the event store ends ``run`` with it (the session manager restarts it,
    and Telegram repeats the updates not yet confirmed).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        tenant_id: str,
        connection_id: str,
        token: str,
        api_base: str | None = None,
        poll_timeout: int = DEFAULT_POLL_TIMEOUT,
        first_backoff: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
        media: MediaStore | None = None,
    ) -> None:
        self._store = store
        self._media = media  # where attachments are kept; None: they stay at Telegram
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self._token = token
        self._api_base = api_base
        self._poll_timeout = poll_timeout
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self.state: ev.ConnectionState | None = None  # the last state this session recorded
        self._state_code: str | None = None
        self.offset: int | None = None  # the next update to ask for (all before it are stored)
        self._known_conversations: set[str] = set()
        self._log = log.bind(tenant_id=tenant_id, connection_id=connection_id)

    async def run(self) -> None:
        session = AiohttpSession(api=_api_server(self._api_base))
        try:
            try:
                bot = _new_bot(self._token, session)
            except TokenRejected:
                await self._token_refused("token_invalid", "This is not a Telegram bot token")
                return
            await self._report("connecting", "connecting", "Connecting to Telegram…")
            self._bot = bot
            await self._poll(bot)
        finally:
            await session.close()

    async def _poll(self, bot: Bot) -> None:
        me: User | None = None
        backoff = self._first_backoff
        while True:
            try:
                if me is None:
                    me = await bot.get_me()
                # A short poll while not yet connected, so recovery is seen at once.
                wait = self._poll_timeout if self.state == "connected" else 0
                updates = await bot.get_updates(
                    offset=self.offset, timeout=wait, request_timeout=int(wait + 15)
                )
            except TelegramUnauthorizedError:
                await self._token_refused()
                return
            except TelegramRetryAfter as exc:
                self._log.info("telegram_flood_wait", retry_after=exc.retry_after)
                await asyncio.sleep(exc.retry_after)
                continue
            except (TelegramAPIError, ClientDecodeError) as exc:
                if isinstance(exc, TelegramConflictError):  # a webhook, or another program polling
                    code, message = "polling_conflict", _CONFLICT_MESSAGE
                else:
                    code, message = "telegram_unreachable", _UNREACHABLE_MESSAGE
                await self._report("degraded", code, message)
                self._log.warning("telegram_poll_failed", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._first_backoff
            username = me.username or str(me.id)
            await self._report("connected", "ok", f"Connected to Telegram as @{username}")
            for update in updates:
                await self._store_update(update, username)
                self.offset = update.update_id + 1  # confirmed to Telegram by the next getUpdates

    async def _store_update(self, update: Update, bot_username: str) -> None:
        try:
            events = normalize(
                update, tenant_id=self.tenant_id, connection_id=self.connection_id, bot_username=bot_username
            )
            created = conversation_created(update, tenant_id=self.tenant_id, connection_id=self.connection_id)
        except Exception as exc:  # one unreadable update must not stop the connection for good
            self._log.error("telegram_update_unreadable", update_id=update.update_id, error=repr(exc))
            return
        if not events:
            return
        if created is not None and created.aggregate_id not in self._known_conversations:
            with contextlib.suppress(ConcurrencyConflict):  # the chat is known already
                await self._store.append(created, expected_seq=0)
            self._known_conversations.add(created.aggregate_id)
        for event in events:
            appended = await self._store.append(event)
            self._log.info(
                "telegram_update_stored",
                update_id=update.update_id,
                event_type=event.type,
                seq=appended.seq,
                duplicate=appended.duplicate,
            )
            if self._media is not None and isinstance(event, ev.MessageReceived) and event.data.attachments:
                await fetch_media(
                    self._store, self._media, event, self._download, actor=actor(self.connection_id)
                )

    async def _download(self, attachment: ev.Attachment) -> bytes:
        buffer = await self._bot.download(attachment.provider_file_id)
        assert buffer is not None
        return buffer.read()

    async def _token_refused(
        self, code: str = "token_revoked", message: str = "Telegram no longer accepts this bot token"
    ) -> None:
        await self._report("action_required", code, message, action="reconnect")
        self._log.warning("telegram_token_refused", code=code)

    async def _report(
        self, state: ev.ConnectionState, code: str, message: str, *, action: str | None = None
    ) -> None:
        """Record the connection's state when it changed (from the log's last one)."""
        if (state, code) == (self.state, self._state_code):
            return
        await record_state(
            self._store, tenant_id=self.tenant_id, connection_id=self.connection_id,
            actor=actor(self.connection_id), state=state, code=code, message=message, action=action,
        )  # fmt: skip
        self.state, self._state_code = state, code
        self._log.info("telegram_connection_state", state=state, code=code)


# --- out: executing commands --------------------------------------------------------------


def _chat_id(to: str) -> int | str:
    try:
        return int(to)
    except ValueError:
        return to  # a public channel's @username


def _rejected_for_forbidden(exc: TelegramForbiddenError) -> SendRejected:
    text = exc.message.lower()
    if "blocked" in text:
        return SendRejected(
            "bot_blocked", "This person blocked the bot, so Telegram does not deliver to them."
        )
    if "kicked" in text or "not a member" in text:
        return SendRejected("bot_removed", "The bot was removed from this chat, so it cannot write here.")
    if "deactivated" in text:
        return SendRejected("user_deactivated", "This Telegram account was deleted.")
    return SendRejected("forbidden", f"Telegram does not let the bot write to this chat ({exc.message}).")


class TelegramConnector:
    """Sends with one aiogram Bot per connection; tokens come from ``credentials``."""

    kind = KIND
    capabilities = TELEGRAM_CAPABILITIES

    def __init__(
        self, credentials: Credentials, *, api_base: str | None = None, request_timeout: float = 30.0
    ) -> None:
        self._credentials = credentials
        # One HTTP session for every bot: a request names its bot by the token in its URL.
        self._session = AiohttpSession(api=_api_server(api_base), timeout=request_timeout)
        self._bots: dict[str, Bot] = {}
        self._lock = asyncio.Lock()

    async def bot(self, connection_id: str) -> Bot:
        """The connection's bot, built from its credentials on first use."""
        bot = self._bots.get(connection_id)
        if bot is not None:
            return bot
        async with self._lock:
            if connection_id not in self._bots:
                credentials = await self._credentials(connection_id)
                token = credentials.get("token")
                if not isinstance(token, str) or not token:
                    raise TokenRejected("This Telegram connection has no bot token; connect the bot again.")
                self._bots[connection_id] = _new_bot(token, self._session)
            return self._bots[connection_id]

    def forget(self, connection_id: str) -> None:
        """Drop a cached bot (its token was rotated or revoked): the next use reads it anew."""
        self._bots.pop(connection_id, None)

    async def send(self, command: SendMessage) -> Delivered:
        try:
            bot = await self.bot(command.connection_id)
        except TokenRejected as exc:
            raise SendRejected("token_invalid", str(exc)) from None
        try:
            # reply_to_message_id names our message id; Telegram's is not known here, so no quote.
            sent = await bot.send_message(chat_id=_chat_id(command.to), text=command.text)
        except TelegramRetryAfter as exc:
            raise SendDeferred(
                f"Telegram asked us to wait {exc.retry_after} s", retry_after=float(exc.retry_after)
            ) from None
        except TelegramUnauthorizedError:
            self.forget(command.connection_id)
            raise SendRejected(
                "token_revoked", "Telegram no longer accepts this bot token; reconnect the bot to send."
            ) from None
        except TelegramForbiddenError as exc:
            raise _rejected_for_forbidden(exc) from None
        except TelegramMigrateToChat:
            raise SendRejected(
                "chat_migrated", "This group became a supergroup; Telegram delivers there from now on."
            ) from None
        except TelegramBadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise SendRejected("chat_not_found", "Telegram cannot find this chat any more.") from None
            raise SendRejected("bad_request", f"Telegram refused the message: {exc.message}") from None
        except (TelegramNetworkError, TelegramServerError, ClientDecodeError) as exc:
            raise SendDeferred(f"Telegram cannot be reached: {exc}") from None
        return Delivered(
            provider_message_id=provider_message_id(sent.chat.id, sent.message_id), sent_at=_utc(sent.date)
        )

    async def typing(self, connection_id: str, chat_id: str | int) -> bool:
        """Show "typing…" in a chat for a few seconds; best effort (False when refused)."""
        try:
            bot = await self.bot(connection_id)
            return await bot.send_chat_action(chat_id=_chat_id(str(chat_id)), action=ChatAction.TYPING.value)
        except (TelegramConnectorError, TelegramAPIError, ClientDecodeError) as exc:
            log.debug("telegram_typing_failed", connection_id=connection_id, error=str(exc))
            return False

    async def aclose(self) -> None:
        self._bots.clear()
        await self._session.close()
