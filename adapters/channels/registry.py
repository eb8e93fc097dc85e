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
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import msgspec

from adapters.channels import (
    discord,
    imessage,
    signal,
    slack,
    teams,
    telegram,
    webchat,
    whatsapp,
    whatsapp_business,
)
from adapters.channels.clients import Credentials
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.installs import Installer
from domain.agent import DEFAULT_MAX_TEXT_LENGTH
from domain.connectors import Capabilities, Connector
from domain.events import AgentMode

if TYPE_CHECKING:
    from nats.aio.client import Client
    from psycopg_pool import AsyncConnectionPool

    from adapters.channels.whatsapp.client import NewClient as NewWhatsAppClient
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


@runtime_checkable
class SubscriptionCheck(Protocol):
    """A webhook the provider checks before posting to it (Meta's ``hub.challenge``), on
    ``GET /v1/webhooks/{kind}/{connection_id}``; a kind's webhook without it answers 404 there."""

    async def confirm(self, hooks: Any, connection_id: str, query: Mapping[str, str]) -> str:
        """The body to answer (the challenge); a channel error when the check fails."""
        ...


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
    device_id: str | None = None  # the Personal Bridge device it runs on (None: the cloud)
    then: Callable[[str], Awaitable[None]] | None = None  # called with the new connection id
    # shown once, with the connection's webhook URL, to paste in the provider's dashboard
    verify_token: str | None = None
    # the answer shows the connection's webhook URL to paste in the provider's dashboard (it
    # does whenever there is a verify_token)
    show_webhook_url: bool = False


@dataclass(frozen=True)
class SessionEnv:
    """What a live session of a connection gets."""

    store: EventStore
    tenant_id: str
    connection_id: str
    secret: Mapping[str, str]
    endpoints: ProviderEndpoints
    media: MediaStore | None
    nc: Client | None = None  # for what a session shows live or answers (pairing codes, relayed sends)
    database_url: str | None = None  # the product's database (a session store of the kind's own)
    pool: AsyncConnectionPool[Any] | None = None  # connections to it as the connectors' login
    new_client: Callable[..., Any] | None = None  # the kind's protocol library, when not its default


@dataclass(frozen=True)
class ChannelKind:
    kind: str  # the channel token in subjects and events
    provider: str  # its name for people: "Connecting to Telegram…"
    capabilities: Capabilities
    runs_on: frozenset[Where]
    # None: the cloud relays its sends (adapters/channels/relayed.py) to whoever holds the
    # connection's session: a device's tunnel, or the connector replica holding a cloud
    # session that answers them itself (WhatsApp).
    connector: Callable[[Credentials, ProviderEndpoints], Connector] | None = None
    connect_body: type[msgspec.Struct] | None = None  # None: not connected by a person
    connect: Callable[[Any, ConnectEnv], Awaitable[Connected]] | None = None
    session: Callable[[SessionEnv], Awaitable[None]] | None = None  # None: no live session
    webhook: Callable[[], Webhook] | None = None  # None: the provider does not push
    installer: Callable[[], Installer] | None = None  # None: no "Add to …" (OAuth) install
    # Called now and then by the connectors with the env of no session in particular
    # (tenant and connection ""): forget the session data of removed connections.
    forget_removed: Callable[[SessionEnv], Awaitable[None]] | None = None
    # How the agent starts in a new connection of the kind: "draft" (a person sends what it
    # proposes) unless the kind is the owner's own front door (the website chat answers).
    agent_mode: AgentMode = "draft"


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
    # your own Slack member id (U…, Profile → ⋮ → Copy member ID): what you write yourself
    # in Slack is you answering, and the agent steps back there
    owner_user_id: str | None = None


async def _slack_connect(body: SlackConnect, env: ConnectEnv) -> Connected:
    import re

    from adapters.channels.errors import BadRequest
    from adapters.channels.slack import client

    workspace = await client.connect_tokens(
        body.bot_token, body.app_token, body.signing_secret, api_base=env.endpoints.slack_api_base
    )
    secret = {"token": body.bot_token.strip(), "bot_user_id": workspace.bot_user_id}
    if body.app_token:
        secret["app_token"] = body.app_token.strip()
    if body.signing_secret:
        secret["signing_secret"] = body.signing_secret.strip()
    if body.owner_user_id is not None:
        if not re.fullmatch(r"[UW][A-Z0-9]{2,20}", body.owner_user_id.strip()):
            detail = "owner_user_id is a Slack member id such as U012AB3CD (Profile → ⋮ → Copy member ID)."
            raise BadRequest(detail, field="owner_user_id")
        secret["owner_user_id"] = body.owner_user_id.strip()
    return Connected(workspace.team_name, secret, team_id=workspace.team_id)


def _slack_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.slack.connector import SlackConnector

    return SlackConnector(credentials, api_base=endpoints.slack_api_base)


async def _slack_session(env: SessionEnv) -> None:
    from adapters.channels.slack.session import SlackSocketSession, events_api_session

    if not env.secret.get("app_token"):
        await events_api_session(env)  # the Events API: Slack posts to the gateway
        return
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


def _discord_installer() -> Installer:
    from adapters.channels.discord.install import DiscordInstaller

    return DiscordInstaller()


async def _discord_session(env: SessionEnv) -> None:
    from adapters.channels.discord.gateway_session import DiscordSession

    await DiscordSession(env).run()


# --- WhatsApp --------------------------------------------------------------------------------


class WhatsAppConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Link the user's own WhatsApp account as a device: in the cloud (the session's keys in
    the product's database) or on their Personal Bridge ``device_id`` (the keys stay on that
    device). With ``phone_number`` the channels page shows a code to type on the phone
    instead of a QR code to scan."""

    mode: Literal["cloud", "bridge"] = "cloud"
    device_id: str | None = None
    phone_number: str | None = None  # with the country code: "+49 151 2345678"


async def _whatsapp_connect(body: WhatsAppConnect, env: ConnectEnv) -> Connected:
    from adapters.channels.errors import BadRequest

    if body.mode == "bridge" and not body.device_id:
        raise BadRequest(
            "device_id names the paired device (GET /v1/devices) to run WhatsApp on.", field="device_id"
        )
    if body.mode == "cloud" and body.device_id:
        raise BadRequest('device_id is for "mode": "bridge".', field="device_id")
    if body.mode == "bridge" and body.phone_number:
        raise BadRequest(
            "On the Personal Bridge, link by QR code (a code to type instead is planned there).",
            field="phone_number",
        )
    secret: dict[str, str] = {"mode": body.mode}
    if body.phone_number is not None:
        digits = "".join(ch for ch in body.phone_number if ch.isdigit())
        if not 8 <= len(digits) <= 15 or body.phone_number.strip().lstrip("+")[:1] == "0":
            raise BadRequest(
                "phone_number must be your WhatsApp number with its country code, e.g. +49 151 2345678.",
                field="phone_number",
            )
        secret["phone_number"] = digits
    return Connected("WhatsApp", secret, device_id=body.device_id)


async def _whatsapp_session(env: SessionEnv) -> None:
    from adapters.channels.whatsapp.session import WhatsAppSession
    from adapters.channels.whatsapp.store import SessionStore, ensure_schema, library_dsn

    assert env.nc is not None and env.pool is not None and env.database_url is not None
    async with env.pool.connection() as conn:
        await ensure_schema(conn)
    library: NewWhatsAppClient = env.new_client or _neonize()
    session = WhatsAppSession(
        env, nc=env.nc, new_client=library, database=library_dsn(env.database_url),
        sessions=SessionStore(env.pool),
    )  # fmt: skip
    await session.run()


def _neonize() -> NewWhatsAppClient:
    """The real library, imported only here: it loads a native library and takes seconds."""
    from adapters.channels.whatsapp.neonize_client import new_client

    return new_client


async def _whatsapp_forget_removed(env: SessionEnv) -> None:
    from adapters.channels.whatsapp.store import SessionStore, ensure_schema

    assert env.pool is not None
    async with env.pool.connection() as conn:
        await ensure_schema(conn)
    await SessionStore(env.pool).forget_removed()


# --- Signal ----------------------------------------------------------------------------------


class SignalConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Link the user's own Signal account as a device of it, on their Personal Bridge
    ``device_id``: signal-cli runs there and the account's keys stay there
    (adapters/channels/signal/). The channels page then shows the QR code to scan."""

    device_id: str
    mode: Literal["bridge"] = "bridge"  # Signal runs on a device only


async def _signal_connect(body: SignalConnect, env: ConnectEnv) -> Connected:
    from adapters.channels.errors import BadRequest

    if not body.device_id.strip():
        raise BadRequest(
            "device_id names the paired device (GET /v1/devices) to run Signal on.", field="device_id"
        )
    return Connected("Signal", {"mode": "bridge"}, device_id=body.device_id.strip())


# --- WhatsApp Business -----------------------------------------------------------------------


class WhatsAppBusinessConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A business phone number on Meta's Cloud API: an access token that reaches it, its phone
    number id, the app's secret (Meta signs deliveries with it) and, optionally, the verify
    token to paste in Meta's dashboard (one is made when not given)."""

    access_token: str
    phone_number_id: str
    app_secret: str
    verify_token: str | None = None


async def _whatsapp_business_connect(body: WhatsAppBusinessConnect, env: ConnectEnv) -> Connected:
    import secrets

    from adapters.channels.errors import BadRequest
    from adapters.channels.whatsapp_business import client

    if env.public_url is None:
        raise BadRequest(
            "Meta posts WhatsApp messages to this gateway, so it needs its public https address"
            " (MOLTBOT_PUBLIC_URL); set it, then connect again."
        )
    app_secret = body.app_secret.strip()
    if not app_secret:
        detail = "The app secret is empty: copy it from Meta's dashboard, App settings → Basic."
        raise BadRequest(detail, field="app_secret")
    token, phone_number_id = body.access_token.strip(), body.phone_number_id.strip()
    number = await client.connect(token, phone_number_id, api_base=env.endpoints.whatsapp_business_api_base)
    verify_token = (body.verify_token or "").strip() or secrets.token_urlsafe(24)
    secret = {
        "token": token, "phone_number_id": phone_number_id, "app_secret": app_secret,
        "verify_token": verify_token, "display_phone_number": number.display_phone_number,
    }  # fmt: skip
    return Connected(number.shown_as, secret, verify_token=verify_token)


def _whatsapp_business_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.whatsapp_business.connector import WhatsAppBusinessConnector

    return WhatsAppBusinessConnector(credentials, api_base=endpoints.whatsapp_business_api_base)


async def _whatsapp_business_session(env: SessionEnv) -> None:
    from adapters.channels.whatsapp_business.session import WhatsAppBusinessSession

    await WhatsAppBusinessSession(env).run()  # Meta posts to the gateway; this checks the token


def _whatsapp_business_webhook() -> Webhook:
    from adapters.channels.whatsapp_business.webhook import WhatsAppBusinessWebhook

    return WhatsAppBusinessWebhook()


# --- Microsoft Teams -------------------------------------------------------------------------


class TeamsConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A bot registered with the Bot Framework (an Azure Bot with the Teams channel on): its
    Microsoft App ID, a client secret of that app and, for a single-tenant bot, the Azure AD
    tenant (directory) id it lives in."""

    app_id: str
    client_secret: str
    tenant_id: str | None = None


async def _teams_connect(body: TeamsConnect, env: ConnectEnv) -> Connected:
    from adapters.channels.errors import BadRequest
    from adapters.channels.teams import client

    if env.public_url is None:
        raise BadRequest(
            "The Bot Connector posts Teams messages to this gateway, so it needs its public https address"
            " (MOLTBOT_PUBLIC_URL); set it, then connect again."
        )
    app_id, client_secret = body.app_id.strip(), body.client_secret.strip()
    tenant_id = (body.tenant_id or "").strip() or None
    if not client.is_app_id(app_id):
        raise BadRequest(f"This is not a Microsoft App ID. {client.WHERE_APP_ID_IS}", field="app_id")
    if not client_secret:
        raise BadRequest(f"The client secret is empty. {client.WHERE_SECRETS_ARE}", field="client_secret")
    if tenant_id is not None and not client.is_tenant_id(tenant_id):
        detail = "tenant_id is the Directory (tenant) ID of the bot's app registration: a GUID."
        raise BadRequest(detail, field="tenant_id")
    app = client.App(app_id, client_secret, tenant_id)
    await client.connect(app, login_base=env.endpoints.teams_login_base)
    secret = {"app_id": app_id, "client_secret": client_secret}
    if tenant_id is not None:
        secret["tenant_id"] = tenant_id
    return Connected(f"Teams bot {app_id}", secret, show_webhook_url=True)


def _teams_connector(credentials: Credentials, endpoints: ProviderEndpoints) -> Connector:
    from adapters.channels.teams.connector import TeamsConnector

    return TeamsConnector(credentials, login_base=endpoints.teams_login_base)


async def _teams_session(env: SessionEnv) -> None:
    from adapters.channels.teams.session import TeamsSession

    await TeamsSession(env).run()  # the Bot Connector posts to the gateway; this checks the secret


def _teams_webhook() -> Webhook:
    from adapters.channels.teams.webhook import TeamsWebhook

    return TeamsWebhook()


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
            agent_mode="auto",
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
            installer=_discord_installer,
        ),
        ChannelKind(
            kind=whatsapp.KIND,
            provider="WhatsApp",
            capabilities=whatsapp.CAPABILITIES,
            runs_on=frozenset({"cloud", "bridge"}),
            connect_body=WhatsAppConnect,
            connect=_whatsapp_connect,
            session=_whatsapp_session,
            forget_removed=_whatsapp_forget_removed,
        ),
        ChannelKind(
            kind=imessage.KIND,
            provider="iMessage",
            capabilities=imessage.CAPABILITIES,
            runs_on=frozenset({"bridge"}),
        ),
        ChannelKind(
            kind=signal.KIND,
            provider="Signal",
            capabilities=signal.CAPABILITIES,
            runs_on=frozenset({"bridge"}),
            connect_body=SignalConnect,
            connect=_signal_connect,
        ),
        ChannelKind(
            kind=whatsapp_business.KIND,
            provider="WhatsApp Business",
            capabilities=whatsapp_business.CAPABILITIES,
            runs_on=frozenset({"cloud"}),
            connector=_whatsapp_business_connector,
            connect_body=WhatsAppBusinessConnect,
            connect=_whatsapp_business_connect,
            session=_whatsapp_business_session,
            webhook=_whatsapp_business_webhook,
        ),
        ChannelKind(
            kind=teams.KIND,
            provider="Microsoft Teams",
            capabilities=teams.CAPABILITIES,
            runs_on=frozenset({"cloud"}),
            connector=_teams_connector,
            connect_body=TeamsConnect,
            connect=_teams_connect,
            session=_teams_session,
            webhook=_teams_webhook,
        ),
    )
}


def entry(kind: str) -> ChannelKind:
    """The kind's entry; LookupError names the known kinds."""
    found = KINDS.get(kind)
    if found is None:
        raise LookupError(f"no channel kind {kind!r}; known: {', '.join(KINDS)}")
    return found


def agent_mode_for(channel: str) -> AgentMode:
    """How the agent starts in a connection of ``channel`` until the owner says otherwise."""
    found = KINDS.get(channel)
    return found.agent_mode if found is not None else "draft"


def answering_kinds() -> list[str]:
    """The kinds whose new connections start with the agent answering (``auto``)."""
    return [kind for kind, found in KINDS.items() if found.agent_mode == "auto"]


def capabilities_for(channel: str) -> Capabilities:
    """What ``channel`` supports (a kind the registry does not know: plain text only)."""
    found = KINDS.get(channel)
    return found.capabilities if found is not None else Capabilities(max_text_length=DEFAULT_MAX_TEXT_LENGTH)


def max_text_for(channel: str) -> int:
    """The longest text one message of ``channel`` may hold (the agent chunks to it)."""
    found = KINDS.get(channel)
    return found.capabilities.max_text_length if found is not None else DEFAULT_MAX_TEXT_LENGTH
