"""Connecting and disconnecting channels.

``POST /v1/channels/telegram/connect`` takes a bot token, asks Telegram whose it is, seals
it in the vault and records the connection (``connection.created``, then ``connecting``);
the Telegram connector's session picks it up and reports ``connected``. The token never
appears in an event, a log line or an answer. ``DELETE /v1/channels/{id}`` records
``connection.deleted`` and forgets the credentials; its session stops.

``POST /v1/channels/slack/connect`` does the same for a Slack app; its events arrive by
Socket Mode (a session like Telegram's) or at ``POST /v1/webhooks/slack/{connection_id}``,
where the signature is checked before anything is stored. ``gateway.webhooks`` maps a
connection to its tenant for those unauthenticated requests.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect

from adapters.vault.store import CredentialStore
from domain import events as ev
from domain import ids
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, SlackApp, Who, caller
from gateway.errors import ApiError

WEBHOOKS_SQL = """
CREATE TABLE IF NOT EXISTS gateway.webhooks (
    connection_id text PRIMARY KEY,
    tenant_id     text NOT NULL,
    kind          text NOT NULL
);
GRANT SELECT, INSERT ON gateway.webhooks TO moltbot_gateway;
"""


class TelegramConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bot_token: str
    # "polling" (default: nothing to expose) or "webhook" (Telegram posts to this gateway's
    # public URL, /v1/webhooks/telegram/{connection_id}, with a secret header)
    mode: Literal["polling", "webhook"] = "polling"


class DiscordConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bot_token: str


class SlackConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A Slack app's tokens: the bot token, and either the app-level token (Socket Mode,
    nothing to expose) or the signing secret (Events API to our webhook)."""

    bot_token: str
    app_token: str | None = None
    signing_secret: str | None = None


class ChannelAccepted(msgspec.Struct, frozen=True):
    connection_id: str
    display_name: str
    event_id: str
    seq: int


def _may_connect(who: Caller) -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", "Only the inbox's owner or an admin can connect or remove channels.")


@post("/channels/telegram/connect", status_code=202)
async def connect_telegram(ctx: Ctx, who: Who, data: JSONBody[TelegramConnect]) -> ChannelAccepted:
    """Connect a Telegram bot: paste the token @BotFather gave you."""
    from adapters.channels import telegram  # provider SDKs load on first use

    _may_connect(who)
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    token = data.bot_token.strip()
    try:
        bot = await telegram.validate_token(token, api_base=ctx.endpoints.telegram_api_base)
    except telegram.TokenRejected as exc:
        detail = f"{exc}. Copy the token again from @BotFather (it looks like 123456:ABC…)."
        raise ApiError(400, "token_rejected", detail, field="bot_token") from None
    except telegram.TelegramUnreachable as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    secret = {"token": token, "bot_username": bot.username}
    if data.mode == "polling":
        return await _record(ctx, who, telegram.KIND, f"@{bot.username}", secret, "Telegram")
    if ctx.public_url is None:
        detail = "Webhook mode needs the gateway's public https address (MOLTBOT_PUBLIC_URL); use polling."
        raise ApiError(400, "invalid_request", detail, field="mode")
    secret["webhook_secret"] = secrets.token_urlsafe(32)
    accepted = await _record(ctx, who, telegram.KIND, f"@{bot.username}", secret, "Telegram")
    url = f"{ctx.public_url}/v1/webhooks/telegram/{accepted.connection_id}"
    try:
        await telegram.set_webhook(
            token, url, secret["webhook_secret"], api_base=ctx.endpoints.telegram_api_base
        )
    except telegram.TelegramConnectorError as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    return accepted


@post("/webhooks/telegram/{connection_id:str}", status_code=200, include_in_schema=False)
async def telegram_updates(
    ctx: Ctx, connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> Response[Any]:
    """Telegram's webhook: the secret header must match, or nothing is stored (401)."""
    from adapters.channels import telegram  # provider SDKs load on first use

    tenant_id, secret = await _webhook_secret(ctx, connection_id, telegram.KIND)
    given = request.headers.get("x-telegram-bot-api-secret-token", "")
    expected = secret.get("webhook_secret", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "bad_secret", "The X-Telegram-Bot-Api-Secret-Token header does not match.")
    try:
        update = json.loads(await request.body())
        await telegram.store_update(
            ctx.store, update, tenant_id=tenant_id, connection_id=connection_id,
            bot_username=secret.get("bot_username", ""),
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid_request", f"Not a Telegram update: {exc}") from None
    return Response({"ok": True})


async def _webhook_secret(ctx: GatewayContext, connection_id: str, kind: str) -> tuple[str, dict[str, str]]:
    """The tenant and the opened credentials of a connection a provider posts to (or 404)."""
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id FROM gateway.webhooks WHERE connection_id = %s AND kind = %s",
            (connection_id, kind),
        )
        row = await cur.fetchone()
    if row is None or ctx.keyring is None:
        raise ApiError(404, "not_found", f"No {kind} connection here.")
    tenant_id = str(row["tenant_id"])
    async with ctx.tenant(tenant_id) as conn:
        secret = await CredentialStore(conn, ctx.keyring).get(tenant_id, connection_id) or {}
    return tenant_id, secret


async def _record(
    ctx: GatewayContext, who: Caller, kind: str, display_name: str, secret: dict[str, str], provider: str
) -> ChannelAccepted:
    """Seal the credentials, then record the connection (created, connecting)."""
    assert ctx.keyring is not None
    connection_id = ids.new_id(ids.CONNECTION)
    async with ctx.tenant(who.tenant_id) as conn:
        await CredentialStore(conn, ctx.keyring).put(who.tenant_id, connection_id, kind, secret)
        await conn.execute(
            "INSERT INTO gateway.webhooks (connection_id, tenant_id, kind) VALUES (%s, %s, %s)",
            (connection_id, who.tenant_id, kind),
        )
    actor = f"user:{who.user_id}"
    created = ev.new_event(
        ev.ConnectionCreated, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=actor,
        data=ev.ConnectionCreatedData(channel=kind, display_name=display_name),
    )  # fmt: skip
    connecting = ev.new_event(
        ev.ConnectionStateChanged, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=actor,
        causation_id=created.id,
        data=ev.ConnectionStateChangedData(
            state="connecting", code="starting", message=f"Connecting to {provider} as {display_name}…"
        ),
    )  # fmt: skip
    appended = await ctx.store.append_many([created, connecting])
    return ChannelAccepted(connection_id, display_name, created.id, appended[-1].seq)


@post("/channels/discord/connect", status_code=202)
async def connect_discord(ctx: Ctx, who: Who, data: JSONBody[DiscordConnect]) -> ChannelAccepted:
    """Connect a Discord bot: the token from the Developer Portal (Bot → Reset Token)."""
    from adapters.channels import discord  # provider SDKs load on first use

    _may_connect(who)
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    token = data.bot_token.strip().removeprefix("Bot ").strip()
    try:
        bot = await discord.validate_token(token, api_base=ctx.endpoints.discord_api_base)
    except discord.TokenRejected as exc:
        detail = f"{exc}. Copy it again from the Developer Portal (Bot → Reset Token)."
        raise ApiError(400, "token_rejected", detail, field="bot_token") from None
    except discord.DiscordUnreachable as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    return await _record(ctx, who, discord.KIND, bot.display_name, {"token": token}, "Discord")


@post("/channels/slack/connect", status_code=202)
async def connect_slack(ctx: Ctx, who: Who, data: JSONBody[SlackConnect]) -> ChannelAccepted:
    """Connect a Slack app: its bot token (xoxb-…) and its app-level token (xapp-…, Socket
    Mode) or signing secret (events sent to /v1/webhooks/slack/{connection_id})."""
    from adapters.channels import slack  # provider SDKs load on first use

    _may_connect(who)
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    if not (data.app_token or data.signing_secret):
        detail = "Add the app-level token (xapp-…, for Socket Mode) or the signing secret (Events API)."
        raise ApiError(400, "invalid_request", detail, field="app_token")
    if data.app_token is not None and not data.app_token.strip().startswith("xapp-"):
        raise ApiError(400, "invalid_request", "An app-level token starts with xapp-.", field="app_token")
    try:
        workspace = await slack.validate_token(data.bot_token, api_base=ctx.endpoints.slack_api_base)
    except slack.TokenRejected as exc:
        raise ApiError(400, "token_rejected", str(exc), field="bot_token") from None
    except slack.SlackUnreachable as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    secret = {"token": data.bot_token.strip(), "bot_user_id": workspace.bot_user_id}
    if data.app_token:
        secret["app_token"] = data.app_token.strip()
    if data.signing_secret:
        secret["signing_secret"] = data.signing_secret.strip()
    return await _record(ctx, who, slack.KIND, workspace.team_name, secret, "Slack")


@post("/webhooks/slack/{connection_id:str}", status_code=200, include_in_schema=False)
async def slack_events(
    ctx: Ctx, connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> Response[Any]:
    """Slack's Events API: a bad or stale signature gets 401 and nothing is stored."""
    from adapters.channels import slack  # provider SDKs load on first use

    body = await request.body()
    tenant_id, secret = await _webhook_secret(ctx, connection_id, slack.KIND)
    if not secret.get("signing_secret"):
        raise ApiError(404, "not_found", "This Slack connection uses Socket Mode, not the Events API.")
    try:
        answer = slack.SlackEvents(secret["signing_secret"]).handle(
            dict(request.headers), body, now=datetime.now(UTC), tenant_id=tenant_id,
            connection_id=connection_id, bot_user_id=secret.get("bot_user_id", ""),
        )  # fmt: skip
    except slack.BadSignature as exc:
        raise ApiError(401, "bad_signature", str(exc)) from None
    except slack.BadRequest as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    if answer.challenge is not None:
        return Response({"challenge": answer.challenge})
    if answer.delivery is not None:
        await slack.append_delivery(ctx.store, answer.delivery)
        if ctx.media is not None:
            await slack.fetch_delivery_media(
                ctx.store, ctx.media, answer.delivery, secret["token"], connection_id,
                api_base=ctx.endpoints.slack_api_base,
            )  # fmt: skip
    return Response({"ok": True})


async def _channel(ctx: GatewayContext, who: Caller, connection_id: str) -> str:
    async with ctx.tenant(who.tenant_id) as conn:
        cur = await conn.execute(
            "SELECT channel FROM rm_connections.connections WHERE connection_id = %s AND deleted_at IS NULL",
            (connection_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"No channel {connection_id} in your inbox.", field="id")
    return str(row["channel"])


class SlackInstallStart(msgspec.Struct, frozen=True):
    url: str  # send the person's browser here; Slack brings them back to the callback


OAUTH_STATES_SQL = """
CREATE TABLE IF NOT EXISTS gateway.oauth_states (
    state      text PRIMARY KEY,
    tenant_id  text NOT NULL,
    user_id    text NOT NULL,
    kind       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, DELETE ON gateway.oauth_states TO moltbot_gateway;
"""
STATE_TTL_MINUTES = 10


def _slack_app(ctx: GatewayContext) -> SlackApp:
    if ctx.slack_app is None:
        raise ApiError(
            503,
            "not_configured",
            "Slack installs need MOLTBOT_SLACK_CLIENT_ID, _CLIENT_SECRET and _SIGNING_SECRET.",
        )
    return ctx.slack_app


@get("/channels/slack/install")
async def slack_install(ctx: Ctx, who: Who) -> SlackInstallStart:
    """Start "Add to Slack": the URL of Slack's consent page for this inbox."""
    from adapters.channels import slack  # provider SDKs load on first use

    _may_connect(who)
    app = _slack_app(ctx)
    state = secrets.token_urlsafe(24)
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO gateway.oauth_states (state, tenant_id, user_id, kind) VALUES (%s, %s, %s, %s)",
            (state, who.tenant_id, who.user_id, slack.KIND),
        )
    return SlackInstallStart(slack.install_url(app.client_id, app.redirect_uri, state, slack.BOT_SCOPES))


@get("/channels/slack/oauth/callback", status_code=302, include_in_schema=False)
async def slack_oauth_callback(
    ctx: Ctx,
    code: FromQuery[str | None] = None,
    oauth_state: Annotated[str | None, QueryParameter(query="state")] = None,
    error: FromQuery[str | None] = None,
) -> Redirect:
    """Where Slack sends the browser back: the state must be one we issued (once, recently)."""
    from adapters.channels import slack  # provider SDKs load on first use

    app = _slack_app(ctx)
    state = oauth_state
    if not state:
        raise ApiError(
            400, "invalid_state", "This install link is incomplete: start again from the channels page."
        )
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.oauth_states WHERE state = %s AND kind = %s"
            " AND created_at > now() - make_interval(mins => %s) RETURNING tenant_id, user_id",
            (state, slack.KIND, STATE_TTL_MINUTES),
        )
        row = await cur.fetchone()
    if row is None:
        raise ApiError(
            400, "invalid_state", "This install link expired or was used: start again from the channels page."
        )
    if error or not code:
        return Redirect(f"/?slack={error or 'cancelled'}#channels")
    try:
        install = await slack.exchange_code(
            app.client_id, app.client_secret, code, app.redirect_uri, api_base=ctx.endpoints.slack_api_base
        )
    except slack.InstallRejected as exc:
        raise ApiError(400, "install_rejected", str(exc)) from None
    who = Caller(user_id=row["user_id"], tenant_id=row["tenant_id"], role="owner")
    secret = {
        "token": install.bot_token,
        "bot_user_id": install.bot_user_id,
        "signing_secret": app.signing_secret,
    }
    await _record(ctx, who, slack.KIND, install.team_name, secret, "Slack")
    return Redirect("/?slack=connected#channels")


@delete("/channels/{connection_id:str}", status_code=202)
async def disconnect(ctx: Ctx, who: Who, connection_id: FromPath[str]) -> ChannelAccepted:
    """Remove a channel: its conversations stay in your inbox, nothing more comes in or goes out."""
    _may_connect(who)
    channel = await _channel(ctx, who, connection_id)
    if channel == "webchat":
        raise ApiError(
            400, "invalid_request", "The website chat belongs to every inbox and cannot be removed."
        )
    deleted = ev.new_event(
        ev.ConnectionDeleted,
        tenant_id=who.tenant_id,
        aggregate_id=connection_id,
        actor=f"user:{who.user_id}",
        data=ev.ConnectionDeletedData(reason="removed by a person"),
    )
    appended = await ctx.store.append(deleted)
    if ctx.keyring is not None:
        async with ctx.tenant(who.tenant_id) as conn:
            await CredentialStore(conn, ctx.keyring).delete(connection_id)
    return ChannelAccepted(connection_id, channel, appended.event_id, appended.seq)


channels_router = Router(
    path="/v1",
    route_handlers=[
        connect_telegram,
        connect_discord,
        connect_slack,
        slack_install,
        slack_oauth_callback,
        slack_events,
        telegram_updates,
        disconnect,
    ],
    tags=["channels"],
    dependencies={"who": Provide(caller)},
)
