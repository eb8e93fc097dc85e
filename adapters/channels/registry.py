"""The channel kinds, one entry each: what the core (the gateway's connect and webhook
routes, the process roles, the agent's chunking) reads instead of naming a provider.

An entry says what a kind is (capabilities, the connect body, where it may run) and how
to make its parts (credential check, connector, session, webhook). Entries stay light:
each factory imports its provider's SDK only when called, because those imports take
seconds and most processes never need them. Adding a kind: a package
``adapters/channels/<kind>/`` and one entry in :data:`KINDS` (docs/connectors.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from adapters.channels import discord, imessage, slack, telegram, webchat
from adapters.channels.clients import Credentials
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.installs import Installer
from domain.agent import DEFAULT_MAX_TEXT_LENGTH
from domain.connectors import Capabilities, Connector

if TYPE_CHECKING:
    from adapters.media.store import MediaStore
    from domain.ports import EventStore

Where = Literal["cloud", "bridge"]


class ProviderConnector(Connector, Protocol):
    """A provider-backed connector: it caches a client per connection and closes them."""

    def forget(self, connection_id: str) -> None: ...

    async def aclose(self) -> None: ...


class Webhook(Protocol):
    """A kind's inbound webhook (see :mod:`adapters.channels.webhooks`)."""

    async def receive(
        self, hooks: Any, connection_id: str | None, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ConnectEnv:
    """What a connect flow may use besides the body."""

    endpoints: ProviderEndpoints
    public_url: str | None  # where providers reach the gateway (webhooks); None: not public


@dataclass(frozen=True)
class Connected:
    """What a connect flow found: the connection's name, the secret to vault, and what to do
    once the connection has its id (e.g. tell the provider where to post)."""

    display_name: str
    secret: dict[str, str]
    team_id: str | None = None  # the workspace deliveries must name, where a provider has them
    then: Callable[[str], Awaitable[None]] | None = None  # called with the new connection id


@dataclass(frozen=True)
class SessionEnv:
    """What a live session of a connection gets."""

    store: EventStore
    tenant_id: str
    connection_id: str
    secret: Mapping[str, str]
    endpoints: ProviderEndpoints
    media: MediaStore | None


@dataclass(frozen=True)
class ChannelKind:
    kind: str  # the channel token in subjects and events
    provider: str  # its name for people: "Connecting to Telegram…"
    capabilities: Capabilities
    runs_on: frozenset[Where]
    # None: the kind runs on a device only; the cloud relays its sends to the device's
    # tunnel (adapters/channels/relayed.py) and the tunnel makes its connections.
    connector: Callable[[Credentials, ProviderEndpoints], Connector] | None = None
    connect_body: type[msgspec.Struct] | None = None  # None: not connected by a person
    connect: Callable[[Any, ConnectEnv], Awaitable[Connected]] | None = None
    session: Callable[[SessionEnv], Awaitable[None]] | None = None  # None: no live session
    webhook: Callable[[], Webhook] | None = None  # None: the provider does not push
    installer: Callable[[], Installer] | None = None  # None: no "Add to …" (OAuth) install


async def _hold() -> None:
    """A session with nothing to poll (the provider posts to the webhook): hold the lease."""
    await asyncio.Event().wait()


def _webchat_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.webchat.connector import WebchatConnector

    return WebchatConnector()


# --- Telegram --------------------------------------------------------------------------------


class TelegramConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bot_token: str
    # "polling" (default: nothing to expose) or "webhook" (Telegram posts to this gateway's
    # public URL, /v1/webhooks/telegram/{connection_id}, with a secret header)
    mode: Literal["polling", "webhook"] = "polling"


async def _telegram_connect(body: TelegramConnect, env: ConnectEnv) -> Connected:
    import secrets

    from adapters.channels.errors import BadRequest, ChannelError, ProviderUnreachable
    from adapters.channels.telegram import client

    token = body.bot_token.strip()
    api_base = env.endpoints.telegram_api_base
    bot = await client.connect(token, api_base=api_base)
    secret = {"token": token, "bot_username": bot.username}
    if body.mode == "polling":
        return Connected(f"@{bot.username}", secret)
    if env.public_url is None:
        detail = "Webhook mode needs the gateway's public https address (MOLTBOT_PUBLIC_URL); use polling."
        raise BadRequest(detail, field="mode")
    secret["webhook_secret"] = hook_secret = secrets.token_urlsafe(32)
    public_url = env.public_url

    async def set_webhook(connection_id: str) -> None:
        url = f"{public_url}/v1/webhooks/{telegram.KIND}/{connection_id}"
        try:
            await client.set_webhook(token, url, hook_secret, api_base=api_base)
        except ChannelError as exc:
            raise ProviderUnreachable(str(exc)) from None

    return Connected(f"@{bot.username}", secret, then=set_webhook)


def _telegram_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.telegram.connector import TelegramConnector

    return TelegramConnector(credentials, api_base=endpoints.telegram_api_base)


async def _telegram_session(env: SessionEnv) -> None:
    if env.secret.get("webhook_secret"):
        await _hold()  # webhook mode: Telegram posts to the gateway
        return
    from adapters.channels.telegram.session import TelegramSession

    await TelegramSession(env).run()


def _telegram_webhook() -> Webhook:
    from adapters.channels.telegram.webhook import TelegramWebhook

    return TelegramWebhook()


# --- Slack -----------------------------------------------------------------------------------


class SlackConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A Slack app's tokens: the bot token, and either the app-level token (Socket Mode,
    nothing to expose) or the signing secret (Events API to our webhook)."""

    bot_token: str
    app_token: str | None = None
    signing_secret: str | None = None


async def _slack_connect(body: SlackConnect, env: ConnectEnv) -> Connected:
    from adapters.channels.slack import client

    workspace = await client.connect_tokens(
        body.bot_token, body.app_token, body.signing_secret, api_base=env.endpoints.slack_api_base
    )
    secret = {"token": body.bot_token.strip(), "bot_user_id": workspace.bot_user_id}
    if body.app_token:
        secret["app_token"] = body.app_token.strip()
    if body.signing_secret:
        secret["signing_secret"] = body.signing_secret.strip()
    return Connected(workspace.team_name, secret, team_id=workspace.team_id)


def _slack_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.slack.connector import SlackConnector

    return SlackConnector(credentials, api_base=endpoints.slack_api_base)


async def _slack_session(env: SessionEnv) -> None:
    if not env.secret.get("app_token"):
        await _hold()  # the Events API: Slack posts to the gateway
        return
    from adapters.channels.slack.session import SlackSocketSession

    await SlackSocketSession(env).run()


def _slack_webhook() -> Webhook:
    from adapters.channels.slack.webhook import SlackWebhook

    return SlackWebhook()


def _slack_installer() -> Installer:
    from adapters.channels.slack.install import SlackInstaller

    return SlackInstaller()


# --- Discord ---------------------------------------------------------------------------------


class DiscordConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bot_token: str


async def _discord_connect(body: DiscordConnect, env: ConnectEnv) -> Connected:
    from adapters.channels.discord import client

    bot, token = await client.connect(body.bot_token, api_base=env.endpoints.discord_api_base)
    return Connected(bot.display_name, {"token": token})


def _discord_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.discord.connector import DiscordConnector

    return DiscordConnector(credentials, api_base=endpoints.discord_api_base)


async def _discord_session(env: SessionEnv) -> None:
    from adapters.channels.discord.gateway_session import DiscordSession

    await DiscordSession(env).run()


# --- the registry ----------------------------------------------------------------------------

KINDS: Mapping[str, ChannelKind] = {
    entry.kind: entry
    for entry in (
        ChannelKind(
            kind=webchat.KIND,
            provider="the website chat",
            capabilities=webchat.CAPABILITIES,
            runs_on=frozenset({"cloud"}),
            connector=_webchat_connector,
        ),
        ChannelKind(
            kind=telegram.KIND,
            provider="Telegram",
            capabilities=telegram.CAPABILITIES,
            runs_on=frozenset({"cloud"}),
            connector=_telegram_connector,
            connect_body=TelegramConnect,
            connect=_telegram_connect,
            session=_telegram_session,
            webhook=_telegram_webhook,
        ),
        ChannelKind(
            kind=slack.KIND,
            provider="Slack",
            capabilities=slack.CAPABILITIES,
            runs_on=frozenset({"cloud"}),
            connector=_slack_connector,
            connect_body=SlackConnect,
            connect=_slack_connect,
            session=_slack_session,
            webhook=_slack_webhook,
            installer=_slack_installer,
        ),
        ChannelKind(
            kind=discord.KIND,
            provider="Discord",
            capabilities=discord.CAPABILITIES,
            runs_on=frozenset({"cloud"}),
            connector=_discord_connector,
            connect_body=DiscordConnect,
            connect=_discord_connect,
            session=_discord_session,
        ),
        ChannelKind(
            kind=imessage.KIND,
            provider="iMessage",
            capabilities=imessage.CAPABILITIES,
            runs_on=frozenset({"bridge"}),
        ),
    )
}


def entry(kind: str) -> ChannelKind:
    """The kind's entry; LookupError names the known kinds."""
    found = KINDS.get(kind)
    if found is None:
        raise LookupError(f"no channel kind {kind!r}; known: {', '.join(KINDS)}")
    return found


def max_text_for(channel: str) -> int:
    """The longest text one message of ``channel`` may hold (the agent chunks to it)."""
    found = KINDS.get(channel)
    return found.capabilities.max_text_length if found is not None else DEFAULT_MAX_TEXT_LENGTH
