"""One Telegram bot's long-polling session: appends what each update says, then confirms
the update offset, so a crash repeats updates that dedupe stores once; reports the
connection's health (connecting, connected, degraded, action_required) when it changes.
aiogram is the HTTP client only: we own the polling loop to control offsets."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import Update, User

from adapters.channels.errors import TokenRejected
from adapters.channels.health import Refused, ReportingSession, Unreachable
from adapters.channels.telegram import KIND
from adapters.channels.telegram.client import api_server, download, new_bot
from adapters.channels.telegram.normalize import conversation_created, normalize
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev

if TYPE_CHECKING:
    from adapters.channels.registry import SessionEnv

log = structlog.get_logger()

DEFAULT_POLL_TIMEOUT = 25  # seconds Telegram holds a getUpdates open when nothing is new

# --- in: one connection's long-polling session --------------------------------------------

_UNREACHABLE_MESSAGE = "Telegram cannot be reached right now; Moltbot keeps trying."
_CONFLICT_MESSAGE = (
    "Another program is reading this bot's messages (or a webhook is set); stop it, or Moltbot"
    " cannot receive them."
)


class TelegramSession(ReportingSession):
    """Long-polls one bot's updates into the log and reports the connection's health.

    ``run`` returns when Telegram refuses the token (reported as ``action_required``);
    network trouble is reported as ``degraded`` and retried with exponential backoff;
    an error of the event store ends ``run`` with it (the session manager restarts it,
    and Telegram repeats the updates not yet confirmed).
    """

    def __init__(
        self, env: SessionEnv, *, poll_timeout: int = DEFAULT_POLL_TIMEOUT, first_backoff: float = 1.0
    ) -> None:
        super().__init__(
            env, kind=KIND, log=log, stored_as="telegram_update_stored", first_backoff=first_backoff
        )
        self._token = env.secret["token"]
        self._api_base = env.endpoints.telegram_api_base
        self._poll_timeout = poll_timeout
        self.offset: int | None = None  # the next update to ask for (all before it are stored)
        self._me: User | None = None

    async def run(self) -> None:
        session = AiohttpSession(api=api_server(self._api_base))
        try:
            try:
                bot = new_bot(self._token, session)
            except TokenRejected:
                message = "This is not a Telegram bot token"
                await self._health.report("action_required", "token_invalid", message, action="reconnect")
                return
            await self._health.report("connecting", "connecting", "Connecting to Telegram…")
            self._bot = bot
            await self._stay_linked(lambda: self._poll(bot), unreachable=_UNREACHABLE_MESSAGE)
        finally:
            await session.close()

    async def _poll(self, bot: Bot) -> bool:
        while True:
            raise_if_cancelled()  # storing the last updates (a publish) can swallow it
            try:
                if self._me is None:
                    self._me = await bot.get_me()
                # A short poll while not yet connected, so recovery is seen at once.
                wait = self._poll_timeout if self.state == "connected" else 0
                updates = await bot.get_updates(
                    offset=self.offset, timeout=wait, request_timeout=int(wait + 15)
                )
            except TelegramUnauthorizedError:
                raise Refused("token_revoked", "Telegram no longer accepts this bot token") from None
            except TelegramRetryAfter as exc:
                self._log.info("telegram_flood_wait", retry_after=exc.retry_after)
                await asyncio.sleep(exc.retry_after)
                continue
            except TelegramConflictError as exc:  # a webhook, or another program polling
                raise Unreachable(str(exc), code="polling_conflict", message=_CONFLICT_MESSAGE) from None
            except (TelegramAPIError, ClientDecodeError) as exc:
                raise Unreachable(str(exc)) from None
            self._backoff.reset()
            username = self._me.username or str(self._me.id)
            await self._health.report("connected", "ok", f"Connected to Telegram as @{username}")
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
        await self._intake.take(created, events, update_id=update.update_id)

    async def _download(self, attachment: ev.Attachment) -> bytes:
        return await download(self._bot, attachment.provider_file_id)
