"""Connecting and disconnecting channels.

``POST /v1/channels/telegram/connect`` takes a bot token, asks Telegram whose it is, seals
it in the vault and records the connection (``connection.created``, then ``connecting``);
the Telegram connector's session picks it up and reports ``connected``. The token never
appears in an event, a log line or an answer. ``DELETE /v1/channels/{id}`` records
``connection.deleted`` and forgets the credentials; its session stops.

``POST /v1/channels/slack/connect`` does the same for a Slack app; its events arrive by
Socket Mode (a session like Telegram's) or at ``POST /v1/webhooks/slack/{connection_id}``,
where the signature is checked before anything is stored. ``gateway.webhooks`` maps a
connection to its tenant for those unauthenticated requests, and a Slack connection to
its workspace (``team_id``; and app, ``app_id``, for "Add to Slack" installs): a signed
delivery for another workspace is refused, and the deployment app's Request URL,
``POST /v1/webhooks/slack``, routes each delivery by ``(api_app_id, team_id)``.

"Add to Slack" (``GET /v1/channels/slack/install``) binds its OAuth ``state`` to the
browser that started it with an HttpOnly cookie; the callback refuses another browser
(burning the state) and asks the person to confirm the inbox before anything is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import msgspec
import structlog
from litestar import Request, Response, Router, delete, get, head, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body, CookieParameter, FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect

from adapters.vault.store import CredentialStore
from domain import events as ev
from domain import ids
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, SlackApp, Who, caller
from gateway.errors import ApiError

if TYPE_CHECKING:
    from adapters.channels.slack import SlackEvents

log = structlog.get_logger()

WEBHOOKS_SQL = """
CREATE TABLE IF NOT EXISTS gateway.webhooks (
    connection_id text PRIMARY KEY,
    tenant_id     text NOT NULL,
    kind          text NOT NULL
);
-- Slack: the workspace a connection receives for, and the app of an "Add to Slack" install.
ALTER TABLE gateway.webhooks ADD COLUMN IF NOT EXISTS team_id text, ADD COLUMN IF NOT EXISTS app_id text;
CREATE INDEX IF NOT EXISTS webhooks_app_team ON gateway.webhooks (app_id, team_id) WHERE app_id IS NOT NULL;
GRANT SELECT, INSERT ON gateway.webhooks TO moltbot_gateway;
GRANT UPDATE (team_id) ON gateway.webhooks TO moltbot_gateway;
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
    return tenant_id, await _opened(ctx, tenant_id, connection_id)


async def _opened(ctx: GatewayContext, tenant_id: str, connection_id: str) -> dict[str, str]:
    """A connection's credentials, or {} once it is removed (they are forgotten)."""
    if ctx.keyring is None:
        return {}
    async with ctx.tenant(tenant_id) as conn:
        return await CredentialStore(conn, ctx.keyring).get(tenant_id, connection_id) or {}


async def _record(
    ctx: GatewayContext,
    who: Caller,
    kind: str,
    display_name: str,
    secret: dict[str, str],
    provider: str,
    *,
    team_id: str | None = None,
    app_id: str | None = None,
) -> ChannelAccepted:
    """Seal the credentials, then record the connection (created, connecting); a Slack
    connection with its workspace (``team_id``) and, when installed by OAuth, its app."""
    assert ctx.keyring is not None
    connection_id = ids.new_id(ids.CONNECTION)
    async with ctx.tenant(who.tenant_id) as conn:
        await CredentialStore(conn, ctx.keyring).put(who.tenant_id, connection_id, kind, secret)
        await conn.execute(
            "INSERT INTO gateway.webhooks (connection_id, tenant_id, kind, team_id, app_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            (connection_id, who.tenant_id, kind, team_id, app_id),
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
    return await _record(
        ctx, who, slack.KIND, workspace.team_name, secret, "Slack", team_id=workspace.team_id
    )


class _SlackRoute(msgspec.Struct, frozen=True, kw_only=True):
    """Where a Slack delivery goes: a connection, its tenant and credentials, and the
    workspace (and app, for an "Add to Slack" install) it was connected for."""

    connection_id: str
    tenant_id: str
    secret: dict[str, str]
    team_id: str
    app_id: str | None = None


@post("/webhooks/slack/{connection_id:str}", status_code=200, include_in_schema=False)
async def slack_events(
    ctx: Ctx, connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> Response[Any]:
    """Slack's Events API for one connection: a bad or stale signature gets 401, a delivery
    for another workspace than the connection's 403; either way nothing is stored."""
    from adapters.channels import slack  # provider SDKs load on first use

    body = await request.body()
    tenant_id, secret = await _webhook_secret(ctx, connection_id, slack.KIND)
    if not secret.get("signing_secret"):
        raise ApiError(404, "not_found", "This Slack connection uses Socket Mode, not the Events API.")
    events = slack.SlackEvents(secret["signing_secret"])
    payload = _verified(events, request, body)
    if payload.get("type") == "url_verification":
        return Response({"challenge": str(payload.get("challenge") or "")})
    team_id, app_id = await _slack_workspace(ctx, connection_id, secret)
    route = _SlackRoute(
        connection_id=connection_id, tenant_id=tenant_id, secret=secret, team_id=team_id, app_id=app_id
    )
    return await _deliver_slack(ctx, events, payload, route)


@post("/webhooks/slack", status_code=200, include_in_schema=False)
async def slack_app_events(ctx: Ctx, request: Request[Any, Any, Any]) -> Response[Any]:
    """The Events API of the deployment's Slack app (its Request URL): each delivery goes to
    the connection installed for its ``(api_app_id, team_id)``; another workspace gets 404."""
    from adapters.channels import slack  # provider SDKs load on first use

    app = _slack_app(ctx)
    body = await request.body()
    events = slack.SlackEvents(app.signing_secret)
    payload = _verified(events, request, body)
    if payload.get("type") == "url_verification":
        return Response({"challenge": str(payload.get("challenge") or "")})
    routes = await _slack_routes(ctx, str(payload.get("api_app_id") or ""), str(payload.get("team_id") or ""))
    if not routes:
        log.warning("slack_delivery_refused", reason="unknown_workspace", team_id=payload.get("team_id"))
        raise ApiError(404, "not_found", "No Slack connection for this workspace and app.")
    return await _deliver_slack(ctx, events, payload, routes[0])


def _verified(events: SlackEvents, request: Request[Any, Any, Any], body: bytes) -> dict[str, Any]:
    """The request's JSON once its Slack signature checks out (401), or 400."""
    from adapters.channels import slack  # provider SDKs load on first use

    try:
        payload = events.verify(dict(request.headers), body, now=datetime.now(UTC))
    except slack.BadSignature as exc:
        raise ApiError(401, "bad_signature", str(exc)) from None
    except slack.BadRequest as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    return payload


async def _deliver_slack(
    ctx: GatewayContext, events: SlackEvents, payload: dict[str, Any], route: _SlackRoute
) -> Response[Any]:
    """Store a verified delivery for its connection, unless it is another workspace's (403)."""
    from adapters.channels import slack  # provider SDKs load on first use

    try:
        answer = events.answer(
            payload, tenant_id=route.tenant_id, connection_id=route.connection_id,
            bot_user_id=route.secret.get("bot_user_id", ""), team_id=route.team_id, app_id=route.app_id,
        )  # fmt: skip
    except slack.WrongWorkspace as exc:
        log.warning(
            "slack_delivery_refused", reason="wrong_workspace", connection_id=route.connection_id,
            team_id=payload.get("team_id"), api_app_id=payload.get("api_app_id"),
        )  # fmt: skip
        raise ApiError(403, "wrong_workspace", str(exc)) from None
    if answer.delivery is not None:
        await slack.append_delivery(ctx.store, answer.delivery)
        if ctx.media is not None:
            await slack.fetch_delivery_media(
                ctx.store, ctx.media, answer.delivery, route.secret["token"], route.connection_id,
                api_base=ctx.endpoints.slack_api_base,
            )  # fmt: skip
    return Response({"ok": True})


async def _slack_workspace(
    ctx: GatewayContext, connection_id: str, secret: dict[str, str]
) -> tuple[str, str | None]:
    """The workspace (and app) a Slack connection was connected for. One recorded before
    workspaces were learns it once from Slack: whose is its bot token (auth.test)."""
    from adapters.channels import slack  # provider SDKs load on first use

    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT team_id, app_id FROM gateway.webhooks WHERE connection_id = %s", (connection_id,)
        )
        row = await cur.fetchone()
    app_id = row["app_id"] if row is not None else None
    if row is not None and row["team_id"] is not None:
        return str(row["team_id"]), app_id
    try:
        identity = await slack.validate_token(secret.get("token", ""), api_base=ctx.endpoints.slack_api_base)
    except slack.TokenRejected:
        raise ApiError(
            403, "token_rejected", "Slack no longer accepts this connection's bot token."
        ) from None
    except slack.SlackUnreachable as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "UPDATE gateway.webhooks SET team_id = %s WHERE connection_id = %s AND team_id IS NULL",
            (identity.team_id, connection_id),
        )
    return identity.team_id, app_id


async def _slack_routes(ctx: GatewayContext, app_id: str, team_id: str) -> list[_SlackRoute]:
    """The live connections installed for a workspace of an app, newest first."""
    from adapters.channels import slack  # provider SDKs load on first use

    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT connection_id, tenant_id FROM gateway.webhooks WHERE kind = %s AND app_id = %s"
            " AND team_id = %s ORDER BY connection_id DESC",  # ids are ULIDs: newest first
            (slack.KIND, app_id, team_id),
        )
        rows = await cur.fetchall()
    routes = []
    for row in rows:
        secret = await _opened(ctx, row["tenant_id"], row["connection_id"])
        if secret:  # a removed connection's credentials are forgotten
            route = _SlackRoute(
                connection_id=row["connection_id"], tenant_id=row["tenant_id"], secret=secret,
                team_id=team_id, app_id=app_id,
            )  # fmt: skip
            routes.append(route)
    return routes


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


class SlackInstallConfirm(msgspec.Struct, frozen=True):
    """The confirmation page's form, posted back to the callback with the install cookie."""

    state: str
    code: str


OAUTH_STATES_SQL = """
CREATE TABLE IF NOT EXISTS gateway.oauth_states (
    state      text PRIMARY KEY,
    tenant_id  text NOT NULL,
    user_id    text NOT NULL,
    kind       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The digest of the cookie given to the browser that started the install.
ALTER TABLE gateway.oauth_states ADD COLUMN IF NOT EXISTS browser_digest text;
GRANT SELECT, INSERT, DELETE ON gateway.oauth_states TO moltbot_gateway;
"""
STATE_TTL_MINUTES = 10
INSTALL_COOKIE = "moltbot_slack_install"


def _slack_app(ctx: GatewayContext) -> SlackApp:
    if ctx.slack_app is None:
        raise ApiError(
            503,
            "not_configured",
            "Slack installs need MOLTBOT_SLACK_CLIENT_ID, _CLIENT_SECRET and _SIGNING_SECRET.",
        )
    return ctx.slack_app


def install_cookie(app: SlackApp, value: str, *, max_age: int = STATE_TTL_MINUTES * 60) -> Cookie:
    """The cookie binding an install to the browser that started it: sent back only to the
    callback (its path), on Slack's redirect (a top-level navigation, so Lax), never to scripts."""
    callback = urlsplit(app.redirect_uri)
    return Cookie(
        key=INSTALL_COOKIE, value=value, path=callback.path or "/", max_age=max_age,
        secure=callback.scheme == "https", httponly=True, samesite="lax",
    )  # fmt: skip


def _digest(browser: str) -> str:
    return hashlib.sha256(browser.encode()).hexdigest()


@get("/channels/slack/install")
async def slack_install(ctx: Ctx, who: Who) -> Response[SlackInstallStart]:
    """Start "Add to Slack": the URL of Slack's consent page for this inbox, and a cookie
    that only this browser holds; only this browser can complete the install."""
    from adapters.channels import slack  # provider SDKs load on first use

    _may_connect(who)
    app = _slack_app(ctx)
    state, browser = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO gateway.oauth_states (state, tenant_id, user_id, kind, browser_digest)"
            " VALUES (%s, %s, %s, %s, %s)",
            (state, who.tenant_id, who.user_id, slack.KIND, _digest(browser)),
        )
    url = slack.install_url(app.client_id, app.redirect_uri, state, slack.BOT_SCOPES)
    return Response(
        SlackInstallStart(url), cookies=[install_cookie(app, browser)], headers={"Cache-Control": "no-store"}
    )


@head("/channels/slack/install", include_in_schema=False)
async def slack_installable(ctx: Ctx, who: Who) -> None:
    """Whether "Add to Slack" is offered to this caller (200), without starting an install."""
    _may_connect(who)
    _slack_app(ctx)


async def _installer(ctx: GatewayContext, state: str | None, browser: str | None, *, use: bool) -> Caller:
    """Who started the install ``state``, if it is fresh and this browser holds its cookie.

    ``use`` spends the state (it works once). A state that reaches a browser without its
    cookie is spent too: its link went where it should not have, so it never works again.
    """
    from adapters.channels import slack  # provider SDKs load on first use

    if not state:
        raise ApiError(
            400, "invalid_state", "This install link is incomplete: start again from the channels page."
        )
    columns = "tenant_id, user_id, browser_digest, created_at > now() - make_interval(mins => %s) AS fresh"
    async with ctx.pool.connection() as conn:
        if use:
            sql = f"DELETE FROM gateway.oauth_states WHERE state = %s AND kind = %s RETURNING {columns}"
            cur = await conn.execute(sql, (state, slack.KIND, STATE_TTL_MINUTES))
        else:
            sql = f"SELECT {columns} FROM gateway.oauth_states WHERE state = %s AND kind = %s"
            cur = await conn.execute(sql, (STATE_TTL_MINUTES, state, slack.KIND))
        row = await cur.fetchone()
        digest = row["browser_digest"] if row is not None else None
        same_browser = bool(digest and browser and hmac.compare_digest(digest, _digest(browser)))
        if row is not None and not same_browser and not use:
            await conn.execute("DELETE FROM gateway.oauth_states WHERE state = %s", (state,))
    if row is None or not row["fresh"]:
        raise ApiError(
            400, "invalid_state", "This install link expired or was used: start again from the channels page."
        )
    if not same_browser:
        log.warning("slack_install_refused", reason="another_browser", tenant_id=row["tenant_id"])
        raise ApiError(
            403, "wrong_browser",
            "This Slack install was started in another browser, so it has been cancelled and nothing"
            " was connected. To add Slack, start again from the channels page in this browser.",
        )  # fmt: skip
    return Caller(user_id=row["user_id"], tenant_id=row["tenant_id"], role="owner")


@get("/channels/slack/oauth/callback", include_in_schema=False)
async def slack_oauth_callback(
    ctx: Ctx,
    code: FromQuery[str | None] = None,
    oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
    error: FromQuery[str | None] = None,
    browser: Annotated[str | None, CookieParameter(name=INSTALL_COOKIE)] = None,
) -> Response[Any]:
    """Where Slack sends the browser back: the state must be one we issued (recently) to this
    browser. Nothing is connected yet: a page names the inbox and asks to confirm."""
    app = _slack_app(ctx)
    who = await _installer(ctx, oauth_state, browser, use=bool(error or not code))
    if error or not code:
        forget = install_cookie(app, "", max_age=0)
        return Redirect(f"/?slack={quote(error or 'cancelled')}#channels", cookies=[forget])
    inbox, owner = await _inbox_names(ctx, who.tenant_id)
    page = _confirm_page(
        urlsplit(app.redirect_uri).path, SlackInstallConfirm(oauth_state or "", code), inbox, owner
    )
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'",
            "X-Frame-Options": "DENY",  # the confirmation is a click: no one may frame it
        },
    )


@post("/channels/slack/oauth/callback", status_code=303, include_in_schema=False)
async def slack_oauth_confirm(
    ctx: Ctx,
    data: Annotated[SlackInstallConfirm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    browser: Annotated[str | None, CookieParameter(name=INSTALL_COOKIE)] = None,
) -> Redirect:
    """The person confirmed the inbox: from the same browser, the state is spent, Slack's code
    exchanged, and the workspace connected (unless another connection already receives it)."""
    from adapters.channels import slack  # provider SDKs load on first use

    app = _slack_app(ctx)
    who = await _installer(ctx, data.state, browser, use=True)
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    try:
        install = await slack.exchange_code(
            app.client_id,
            app.client_secret,
            data.code,
            app.redirect_uri,
            api_base=ctx.endpoints.slack_api_base,
        )
    except slack.InstallRejected as exc:
        raise ApiError(400, "install_rejected", str(exc)) from None
    except slack.SlackUnreachable as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    existing = await _slack_routes(ctx, install.app_id or "", install.team_id)
    if existing:  # deliveries are routed by workspace: one connection receives each
        where = "this inbox" if existing[0].tenant_id == who.tenant_id else "another Moltbot inbox"
        detail = f"{install.team_name} is already connected to {where}; remove it there to connect it here."
        raise ApiError(409, "already_connected", detail)
    secret = {
        "token": install.bot_token,
        "bot_user_id": install.bot_user_id,
        "signing_secret": app.signing_secret,
    }
    await _record(
        ctx,
        who,
        slack.KIND,
        install.team_name,
        secret,
        "Slack",
        team_id=install.team_id,
        app_id=install.app_id,
    )
    return Redirect(
        "/?slack=connected#channels", status_code=303, cookies=[install_cookie(app, "", max_age=0)]
    )


async def _inbox_names(ctx: GatewayContext, tenant_id: str) -> tuple[str, str | None]:
    """An inbox's name and its owner's e-mail, to show whose inbox an install joins."""
    async with ctx.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "SELECT t.name, (SELECT u.email FROM rm_tenants.members m JOIN rm_tenants.users u"
            " ON u.user_id = m.user_id WHERE m.tenant_id = t.tenant_id AND m.role = 'owner'"
            " ORDER BY m.added_at LIMIT 1) AS owner_email FROM rm_tenants.tenants t WHERE t.tenant_id = %s",
            (tenant_id,),
        )
        row = await cur.fetchone()
    if row is None:  # the read model lags a brand-new inbox
        return tenant_id, None
    return str(row["name"]), row["owner_email"]


def _confirm_page(action: str, form: SlackInstallConfirm, inbox: str, owner: str | None) -> str:
    """The page asking the person to confirm which inbox the Slack workspace joins."""
    e = html.escape
    whose = f" (owner: <strong>{e(owner)}</strong>)" if owner else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect Slack — Moltbot</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main class="stack">
<h1>Connect Slack to this inbox?</h1>
<p>The Slack workspace you just approved will be connected to the Moltbot inbox
<strong>{e(inbox)}</strong>{whose}: its messages will arrive there.</p>
<p>If that is not your inbox, or you did not just add Slack, close this page:
nothing is connected until you confirm.</p>
<form method="post" action="{e(action)}">
<input type="hidden" name="state" value="{e(form.state)}">
<input type="hidden" name="code" value="{e(form.code)}">
<button type="submit">Connect Slack to {e(inbox)}</button>
<a href="/#channels">Cancel</a>
</form>
</main>
</body>
</html>
"""


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
        slack_installable,
        slack_oauth_callback,
        slack_oauth_confirm,
        slack_events,
        slack_app_events,
        telegram_updates,
        disconnect,
    ],
    tags=["channels"],
    dependencies={"who": Provide(caller)},
)
