"""Executing ``send_message`` and ``edit_message`` commands with the bot of the command's connection, mapping
Telegram's answers onto ``SendDeferred`` (flood control, outages) and ``SendRejected``
(blocked, kicked, chat gone, token revoked); and "typing…" while the agent writes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)

from adapters.channels.clients import ClientPerConnection, Credentials, stored_token
from adapters.channels.errors import ChannelError
from adapters.channels.telegram import CAPABILITIES, KIND
from adapters.channels.telegram.client import api_server, new_bot
from adapters.channels.telegram.normalize import provider_message_id, utc
from domain.commands import EditMessage, SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected

log = structlog.get_logger()


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


class TelegramConnector(ClientPerConnection[Bot]):
    """Sends with one aiogram Bot per connection; tokens come from ``credentials``."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self, credentials: Credentials, *, api_base: str | None = None, request_timeout: float = 30.0
    ) -> None:
        super().__init__(credentials)
        # One HTTP session for every bot: a request names its bot by the token in its URL.
        self._session = AiohttpSession(api=api_server(api_base), timeout=request_timeout)

    async def _new_client(self, credentials: Mapping[str, Any]) -> Bot:
        missing = "This Telegram connection has no bot token; connect the bot again."
        return new_bot(stored_token(credentials, missing=missing), self._session)

    async def send(self, command: SendMessage) -> Delivered:
        bot = await self.sending_client(command)
        with self._refusals(command.connection_id):
            # reply_to_message_id names our message id; Telegram's is not known here, so no quote.
            sent = await bot.send_message(chat_id=_chat_id(command.to), text=command.text)
        return Delivered(
            provider_message_id=provider_message_id(sent.chat.id, sent.message_id), sent_at=utc(sent.date)
        )

    async def edit(self, command: EditMessage) -> None:
        bot = await self.sending_client(command)
        chat, _, message = command.provider_message_id.rpartition(":")
        try:
            with self._refusals(command.connection_id):
                await bot.edit_message_text(
                    text=command.text, chat_id=_chat_id(chat), message_id=int(message)
                )
        except SendRejected as exc:
            if "not modified" not in exc.reason:  # the same text again: nothing to change
                raise

    @contextlib.contextmanager
    def _refusals(self, connection_id: str) -> Iterator[None]:
        """Telegram's errors as SendDeferred (flood control, outages) or SendRejected."""
        try:
            yield
        except TelegramRetryAfter as exc:
            raise SendDeferred(
                f"Telegram asked us to wait {exc.retry_after} s", retry_after=float(exc.retry_after)
            ) from None
        except TelegramUnauthorizedError:
            self.forget(connection_id)
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

    async def typing(self, connection_id: str, chat_id: str | int) -> bool:
        """Show "typing…" in a chat for a few seconds; best effort (False when refused)."""
        try:
            bot = await self.client(connection_id)
            return await bot.send_chat_action(chat_id=_chat_id(str(chat_id)), action=ChatAction.TYPING.value)
        except (ChannelError, TelegramAPIError, ClientDecodeError) as exc:
            log.debug("telegram_typing_failed", connection_id=connection_id, error=str(exc))
            return False

    async def aclose(self) -> None:
        self._clients.drain()
        await self._session.close()
