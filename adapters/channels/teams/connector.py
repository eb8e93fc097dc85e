"""Executing ``send_message`` commands through the Bot Connector, as the connection's bot:
the command's ``to`` is the conversation's reference (``<conversation id>|<serviceUrl>|<bot
id>``, from a validated Activity), the token comes from the client-credentials flow and is
kept per connection until shortly before it expires.

Refusals map onto ``SendDeferred`` (rate limits, outages, a token the Bot Connector refused:
a fresh one is fetched on the retry) and ``SendRejected`` (credentials Azure AD no longer
accepts, a conversation the bot is not in, a message Teams will not take)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.channels.clients import ClientPerConnection, Credentials
from adapters.channels.errors import TokenRejected
from adapters.channels.teams import CAPABILITIES, KIND
from adapters.channels.teams.client import App, AppTokens, BotFramework, ConnectorError, LoginError
from adapters.channels.teams.normalize import parse_reference, provider_message_id
from domain.commands import SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected

CREDENTIALS_REVOKED = "credentials_revoked"
CREDENTIALS_REVOKED_REASON = (
    "Microsoft no longer accepts this bot's client secret (it expired or was deleted); make a new"
    " one in the Azure portal and connect Teams again to send."
)


def login_refusal(exc: LoginError) -> SendRejected | SendDeferred:
    """What the token endpoint's refusal means for a send."""
    if exc.retryable:
        return SendDeferred(
            f"Microsoft's token endpoint cannot issue a token now: {exc.description}", exc.retry_after
        )
    if exc.credentials_refused:
        return SendRejected(CREDENTIALS_REVOKED, CREDENTIALS_REVOKED_REASON)
    return SendRejected("login_refused", f"Microsoft refused the bot a token: {exc.description}")


def send_refusal(exc: ConnectorError) -> SendRejected | SendDeferred:
    """What the Bot Connector's refusal of a send means for the command."""
    if exc.retryable:
        return SendDeferred(f"Teams cannot take the message now: {exc.message}", retry_after=exc.retry_after)
    if exc.status == 401:  # our token: another one is fetched for the retry
        return SendDeferred(f"The Bot Connector refused the bot's token: {exc.message}")
    if exc.status == 403:
        return SendRejected(
            "not_in_conversation",
            "Teams does not let the bot write here any more (it was removed from the chat or team,"
            " or the app was blocked).",
        )
    if exc.status == 404:
        return SendRejected("conversation_not_found", "Teams no longer knows this conversation.")
    if exc.status == 413:
        return SendRejected("too_long", "Teams refused the message as too large.")
    return SendRejected("bad_request", f"Teams refused the message: {exc.message}")


class TeamsConnector(ClientPerConnection[AppTokens]):
    """Sends through one HTTP client for every connection; each connection's app id, client
    secret and tenant come from ``credentials``, its token is cached with them."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self, credentials: Credentials, *, login_base: str | None = None, request_timeout: float = 30.0
    ) -> None:
        super().__init__(credentials)
        self._api = BotFramework(login_base, timeout=request_timeout)

    async def _new_client(self, credentials: Mapping[str, Any]) -> AppTokens:
        app_id, client_secret = credentials.get("app_id"), credentials.get("client_secret")
        if (
            not isinstance(app_id, str)
            or not app_id
            or not isinstance(client_secret, str)
            or not client_secret
        ):
            raise TokenRejected("This Teams connection has no app id or client secret; connect it again.")
        tenant_id = credentials.get("tenant_id")
        app = App(app_id, client_secret, tenant_id if isinstance(tenant_id, str) and tenant_id else None)
        return AppTokens(app, self._api)

    async def send(self, command: SendMessage) -> Delivered:
        tokens = await self.sending_client(command)
        try:
            ref = parse_reference(command.to)
        except ValueError:
            raise SendRejected(
                "not_a_teams_conversation", "This conversation has no Teams address to send to."
            ) from None
        try:
            token = await tokens.token()
        except LoginError as exc:
            if exc.credentials_refused:
                self.forget(command.connection_id)  # a reconnect brings new credentials
            raise login_refusal(exc) from None
        try:
            activity_id = await self._api.send_text(ref, command.text, token)
        except ConnectorError as exc:
            if exc.status == 401:
                tokens.drop()
            raise send_refusal(exc) from None
        return Delivered(provider_message_id(ref.conversation_id, activity_id), datetime.now(UTC))

    async def aclose(self) -> None:
        self._clients.drain()
        await self._api.aclose()
