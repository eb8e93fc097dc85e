"""Executing ``send_message`` through hikari's REST client, chunked to Discord's 2000
characters, each part with a nonce Discord enforces (a retried command does not post
twice), mapping refusals onto ``SendDeferred`` (rate limits, outages) and
``SendRejected`` (no access, channel gone, DMs closed, token revoked); and "typing…"."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC
from typing import Any

import hikari
import structlog
from hikari.impl import RESTClientImpl

from adapters.channels.clients import ClientPerConnection, Credentials
from adapters.channels.discord import CAPABILITIES, KIND
from adapters.channels.discord.client import DEFAULT_MAX_RATE_LIMIT, clean_token, is_token_shaped, rest_app
from adapters.channels.discord.normalize import provider_message_id
from adapters.channels.errors import ChannelError, TokenRejected
from domain.agent import chunk_text
from domain.commands import EditMessage, SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected

log = structlog.get_logger()


def _nonce(message_id_: str, part: int) -> str:
    """Discord's idempotency key (25 characters at most) for one part of one message."""
    return hashlib.blake2b(f"{message_id_}:{part}".encode(), digest_size=12).hexdigest()


def _rejected_for_forbidden(exc: hikari.ForbiddenError) -> SendRejected:
    if exc.code == 50007:
        return SendRejected(
            "dm_closed",
            "This person does not accept direct messages from the bot, so Discord does not deliver.",
        )
    if exc.code == 50001:
        return SendRejected(
            "no_access",
            "The bot cannot see this channel any more (removed from the server, or the channel is private).",
        )
    if exc.code == 50013:
        return SendRejected(
            "missing_permissions",
            "The bot may not write in this channel; give it the Send Messages permission there.",
        )
    return SendRejected("forbidden", f"Discord does not let the bot write here ({exc.message}).")


class DiscordConnector(ClientPerConnection[RESTClientImpl]):
    """Sends with one hikari REST client per connection (sharing one HTTP pool and rate-limit
    buckets); tokens come from ``credentials``."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_base: str | None = None,
        max_rate_limit: float = DEFAULT_MAX_RATE_LIMIT,
        max_retries: int = 1,
        request_timeout: float = 30.0,
    ) -> None:
        super().__init__(credentials)
        self._app = rest_app(
            api_base, max_rate_limit=max_rate_limit, max_retries=max_retries, timeout=request_timeout
        )
        self._started = False

    async def _new_client(self, credentials: Mapping[str, Any]) -> RESTClientImpl:
        if not self._started:
            await self._app.start()
            self._started = True
        token = credentials.get("token")
        token = clean_token(token) if isinstance(token, str) else ""
        if not is_token_shaped(token):
            raise TokenRejected("This Discord connection has no bot token; connect the bot again.")
        client = self._app.acquire(token, hikari.TokenType.BOT)
        client.start()
        return client

    async def send(self, command: SendMessage) -> Delivered:
        try:
            channel = int(command.to)
        except ValueError:
            raise SendRejected(
                "bad_channel", "This conversation has no Discord channel to send to."
            ) from None
        parts = chunk_text(command.text, CAPABILITIES.max_text_length)
        if not parts:
            raise SendRejected("empty", "There is nothing to send: the message is empty.")
        client = await self.sending_client(command)
        first: hikari.Message | None = None
        for part, text in enumerate(parts):
            # A retried command posts no part twice: Discord returns the message of a known nonce.
            sent = await self._create(client, command, channel, text, _nonce(command.message_id, part))
            first = first or sent
        assert first is not None
        return Delivered(
            provider_message_id=provider_message_id(channel, int(first.id)),
            sent_at=first.timestamp.astimezone(UTC),
        )

    async def _create(
        self, client: RESTClientImpl, command: SendMessage, channel: int, text: str, nonce: str
    ) -> hikari.Message:
        with self._refusals(command.connection_id):
            return await client.create_message(
                channel, text, nonce=nonce, user_mentions=True, role_mentions=False, mentions_everyone=False
            )

    async def edit(self, command: EditMessage) -> None:
        client = await self.sending_client(command)
        channel, _, message = command.provider_message_id.rpartition(":")
        with self._refusals(command.connection_id):
            await client.edit_message(
                int(channel), int(message), command.text[: CAPABILITIES.max_text_length],
                user_mentions=True, role_mentions=False, mentions_everyone=False,
            )  # fmt: skip

    @contextlib.contextmanager
    def _refusals(self, connection_id: str) -> Iterator[None]:
        """Discord's errors as SendDeferred (rate limits, outages) or SendRejected."""
        try:
            yield
        except hikari.RateLimitTooLongError as exc:
            raise SendDeferred(
                f"Discord asked us to wait {exc.retry_after:.1f} s", retry_after=float(exc.retry_after)
            ) from None
        except hikari.UnauthorizedError:
            self.forget(connection_id)
            raise SendRejected(
                "token_revoked", "Discord no longer accepts this bot token; reconnect the bot to send."
            ) from None
        except hikari.ForbiddenError as exc:
            raise _rejected_for_forbidden(exc) from None
        except hikari.NotFoundError:
            raise SendRejected(
                "channel_not_found",
                "Discord cannot find this channel any more (deleted, or the bot left the server).",
            ) from None
        except hikari.BadRequestError as exc:
            raise SendRejected("bad_request", f"Discord refused the message: {exc.message}") from None
        except hikari.ClientHTTPResponseError as exc:
            raise SendRejected(
                "refused", f"Discord refused the message ({exc.status}): {exc.message}"
            ) from None
        except hikari.HTTPError as exc:  # 5xx after hikari's retries, network errors
            raise SendDeferred(f"Discord cannot be reached: {exc}") from None

    async def typing(self, connection_id: str, channel_id: str | int) -> bool:
        """Show "typing…" in a channel for ~10 seconds; best effort (False when refused)."""
        try:
            client = await self.client(connection_id)
            await client.trigger_typing(int(channel_id))
        except (ChannelError, hikari.HTTPError, ValueError) as exc:
            log.debug("discord_typing_failed", connection_id=connection_id, error=str(exc))
            return False
        return True

    async def aclose(self) -> None:
        for client in self._clients.drain():
            with contextlib.suppress(hikari.ComponentStateConflictError):
                await client.close()
        if self._started:
            self._started = False
            await self._app.close()
