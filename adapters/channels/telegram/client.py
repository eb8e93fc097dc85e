"""Telegram's Bot API through aiogram (used as the HTTP client only): the bot a token
belongs to, a webhook set, a file downloaded."""

from __future__ import annotations

import msgspec
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)
from aiogram.utils.token import TokenValidationError

from adapters.channels.errors import ProviderUnreachable, TokenRejected


class BotIdentity(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    display_name: str


def api_server(api_base: str | None) -> TelegramAPIServer:
    return PRODUCTION if api_base is None else TelegramAPIServer.from_base(api_base)


def new_bot(token: str, session: AiohttpSession) -> Bot:
    try:
        return Bot(token, session=session)
    except TokenValidationError:
        raise TokenRejected(
            "This is not a Telegram bot token: @BotFather gives tokens like 123456789:AAE…"
        ) from None


async def set_webhook(token: str, url: str, secret: str, *, api_base: str | None = None) -> None:
    """Ask Telegram to POST this bot's updates to ``url`` with ``secret`` in the
    ``X-Telegram-Bot-Api-Secret-Token`` header (webhook mode: no long polling)."""
    session = AiohttpSession(api=api_server(api_base), timeout=15)
    try:
        bot = new_bot(token.strip(), session)
        try:
            await bot.set_webhook(url=url, secret_token=secret, allowed_updates=["message", "edited_message"])
        except (TelegramUnauthorizedError, TelegramNotFound):
            raise TokenRejected("Telegram does not accept this bot token") from None
        except (TelegramAPIError, ClientDecodeError) as exc:
            raise ProviderUnreachable(f"Telegram refused the webhook: {exc}") from None
    finally:
        await session.close()


async def validate_token(token: str, *, api_base: str | None = None) -> BotIdentity:
    """The bot a token belongs to (``getMe``); raises TokenRejected or ProviderUnreachable."""
    session = AiohttpSession(api=api_server(api_base), timeout=15)
    try:
        bot = new_bot(token.strip(), session)
        try:
            me = await bot.get_me()
        except (TelegramUnauthorizedError, TelegramNotFound):  # 404: a token Telegram cannot parse
            raise TokenRejected("Telegram does not accept this bot token") from None
        except (TelegramAPIError, ClientDecodeError) as exc:
            raise ProviderUnreachable(f"Telegram could not check the token just now: {exc}") from None
    finally:
        await session.close()
    return BotIdentity(id=me.id, username=me.username or str(me.id), display_name=me.full_name)


async def download(bot: Bot, file_id: str) -> bytes:
    """A file's bytes (``getFile``, then the download)."""
    buffer = await bot.download(file_id)
    assert buffer is not None
    return buffer.read()


async def connect(token: str, *, api_base: str | None = None) -> BotIdentity:
    """:func:`validate_token` for a person connecting: a refusal says where the token comes from."""
    try:
        return await validate_token(token, api_base=api_base)
    except TokenRejected as exc:
        detail = f"{exc}. Copy the token again from @BotFather (it looks like 123456:ABC…)."
        raise TokenRejected(detail, field="bot_token") from None
