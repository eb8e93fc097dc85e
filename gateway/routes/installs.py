"""Connecting a channel by OAuth ("Add to Slack" and the like), for the kinds whose
registry entry has an installer.

``GET /v1/channels/{kind}/install`` binds its OAuth ``state`` to the browser that started
it with an HttpOnly cookie; the callback refuses another browser (burning the state) and
asks the person to confirm the inbox before anything is stored. The provider's part (where
to send the person, what the returned code installs) is the kind's ``install.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import msgspec
import structlog
from litestar import Request, Response, get, head, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect

from adapters.channels.errors import AlreadyConnected, InstallStateInvalid, NotConfigured, WrongBrowser
from adapters.channels.installs import Installer, OAuthApp
from adapters.channels.registry import KINDS, ChannelKind
from gateway.audit_log import note
from gateway.auth import Caller
from gateway.connections import GatewayHooks, may_connect, need_vault, record
from gateway.context import Ctx, GatewayContext, Who
from gateway.errors import ApiError
from gateway.plan_limits import ensure_room
from gateway.routes.recovery import ensure_verified
from projections import tenants_queries

log = structlog.get_logger()


class InstallStart(msgspec.Struct, frozen=True):
    url: str  # send the person's browser here; the provider brings them back to the callback


class InstallConfirm(msgspec.Struct, frozen=True):
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


def _installable(kind: str) -> tuple[ChannelKind, Installer]:
    entry = KINDS.get(kind)
    if entry is None or entry.installer is None:
        raise ApiError(404, "not_found", f"No channel kind {kind!r} installs by OAuth.", field="kind")
    return entry, entry.installer()


def _app(ctx: GatewayContext, entry: ChannelKind) -> OAuthApp:
    app = ctx.channel_app(entry.kind)
    if app is None:
        prefix = f"MOLTBOT_{entry.kind.upper()}"
        third = "_BOT_TOKEN" if entry.kind == "discord" else "_SIGNING_SECRET"
        needs = f"{prefix}_CLIENT_ID, _CLIENT_SECRET and {third}"
        raise NotConfigured(f"{entry.provider} installs need {needs}.")
    return app


def cookie_name(kind: str) -> str:
    return f"moltbot_{kind}_install"


def install_cookie(
    app: OAuthApp, value: str, *, kind: str = "oauth", max_age: int = STATE_TTL_MINUTES * 60
) -> Cookie:
    """The cookie binding an install to the browser that started it: sent back only to the
    callback (its path), on the provider's redirect (a top-level navigation, so Lax), never
    to scripts."""
    callback = urlsplit(app.redirect_uri)
    return Cookie(
        key=cookie_name(kind), value=value, path=callback.path or "/", max_age=max_age,
        secure=callback.scheme == "https", httponly=True, samesite="lax",
    )  # fmt: skip


def _digest(browser: str) -> str:
    return hashlib.sha256(browser.encode()).hexdigest()


@get("/channels/{kind:str}/install")
async def install(ctx: Ctx, who: Who, kind: FromPath[str]) -> Response[InstallStart]:
    """Start "Add to …": the URL of the provider's consent page for this inbox, and a cookie
    that only this browser holds; only this browser can complete the install."""
    entry, installer = _installable(kind)
    may_connect(who)
    await ensure_verified(ctx, who, "connecting channels")
    app = _app(ctx, entry)
    state, browser = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO gateway.oauth_states (state, tenant_id, user_id, kind, browser_digest)"
            " VALUES (%s, %s, %s, %s, %s)",
            (state, who.tenant_id, who.user_id, kind, _digest(browser)),
        )
    url = installer.authorize_url(app, state)
    cookie = install_cookie(app, browser, kind=kind)
    return Response(InstallStart(url), cookies=[cookie], headers={"Cache-Control": "no-store"})


@head("/channels/{kind:str}/install", include_in_schema=False)
async def installable(ctx: Ctx, who: Who, kind: FromPath[str]) -> None:
    """Whether "Add to …" is offered to this caller (200), without starting an install."""
    entry, _ = _installable(kind)
    may_connect(who)
    _app(ctx, entry)


async def _installer(
    ctx: GatewayContext, entry: ChannelKind, state: str | None, browser: str | None, *, use: bool
) -> Caller:
    """Who started the install ``state``, if it is fresh and this browser holds its cookie.

    ``use`` spends the state (it works once). A state that reaches a browser without its
    cookie is spent too: its link went where it should not have, so it never works again.
    """
    if not state:
        raise InstallStateInvalid("This install link is incomplete: start again from the channels page.")
    columns = "tenant_id, user_id, browser_digest, created_at > now() - make_interval(mins => %s) AS fresh"
    async with ctx.pool.connection() as conn:
        if use:
            sql = f"DELETE FROM gateway.oauth_states WHERE state = %s AND kind = %s RETURNING {columns}"
            cur = await conn.execute(sql, (state, entry.kind, STATE_TTL_MINUTES))
        else:
            sql = f"SELECT {columns} FROM gateway.oauth_states WHERE state = %s AND kind = %s"
            cur = await conn.execute(sql, (STATE_TTL_MINUTES, state, entry.kind))
        row = await cur.fetchone()
        digest = row["browser_digest"] if row is not None else None
        same_browser = bool(digest and browser and hmac.compare_digest(digest, _digest(browser)))
        if row is not None and not same_browser and not use:
            await conn.execute("DELETE FROM gateway.oauth_states WHERE state = %s", (state,))
    if row is None or not row["fresh"]:
        detail = "This install link expired or was used: start again from the channels page."
        raise InstallStateInvalid(detail)
    if not same_browser:
        log.warning("install_refused", kind=entry.kind, reason="another_browser", tenant_id=row["tenant_id"])
        raise WrongBrowser(
            f"This {entry.provider} install was started in another browser, so it has been cancelled and"
            f" nothing was connected. To add {entry.provider}, start again from the channels page in this"
            " browser."
        )
    return Caller(user_id=row["user_id"], tenant_id=row["tenant_id"], role="owner")


@get("/channels/{kind:str}/oauth/callback", include_in_schema=False)
async def oauth_callback(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    kind: FromPath[str],
    code: FromQuery[str | None] = None,
    oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
    error: FromQuery[str | None] = None,
) -> Response[Any]:
    """Where the provider sends the browser back: the state must be one we issued (recently)
    to this browser. Nothing is connected yet: a page names the inbox and asks to confirm."""
    entry, _ = _installable(kind)
    app = _app(ctx, entry)
    browser = request.cookies.get(cookie_name(kind))
    who = await _installer(ctx, entry, oauth_state, browser, use=bool(error or not code))
    if error or not code:
        forget = install_cookie(app, "", kind=kind, max_age=0)
        return Redirect(f"/?{kind}={quote(error or 'cancelled')}#channels", cookies=[forget])
    inbox, owner = await _inbox_names(ctx, who.tenant_id)
    form = InstallConfirm(oauth_state or "", code)
    page = _confirm_page(entry.provider, urlsplit(app.redirect_uri).path, form, inbox, owner)
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


@post("/channels/{kind:str}/oauth/callback", status_code=303, include_in_schema=False)
async def oauth_confirm(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    kind: FromPath[str],
    data: Annotated[InstallConfirm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """The person confirmed the inbox: from the same browser, the state is spent, the
    provider's code exchanged, and the workspace connected (unless another connection
    already receives it)."""
    entry, installer = _installable(kind)
    app = _app(ctx, entry)
    who = await _installer(ctx, entry, data.state, request.cookies.get(cookie_name(kind)), use=True)
    need_vault(ctx)
    await ensure_room(ctx, who, "cloud_channels")  # before the provider's code is exchanged
    installed = await installer.finish(app, data.code, ctx.endpoints)
    existing = await GatewayHooks(ctx).targets_in(kind, installed.app_id or "", installed.team_id)
    if existing:  # deliveries are routed by workspace: one connection receives each
        where = "this inbox" if existing[0].tenant_id == who.tenant_id else "another Moltbot inbox"
        name = installed.display_name
        raise AlreadyConnected(f"{name} is already connected to {where}; remove it there to connect it here.")
    accepted = await record(
        ctx, who, kind, installed.display_name, installed.secret, entry.provider,
        team_id=installed.team_id, app_id=installed.app_id,
    )  # fmt: skip
    await note(
        ctx, request, who.tenant_id, "channel.connected", actor=f"user:{who.user_id}",
        target=accepted.connection_id, detail={"kind": kind, "install": True},
    )  # fmt: skip
    forget = install_cookie(app, "", kind=kind, max_age=0)
    return Redirect(f"/?{kind}=connected#channels", status_code=303, cookies=[forget])


async def _inbox_names(ctx: GatewayContext, tenant_id: str) -> tuple[str, str | None]:
    """An inbox's name and its owner's e-mail, to show whose inbox an install joins."""
    async with ctx.tenant(tenant_id) as conn:
        names = await tenants_queries.inbox_names(conn, tenant_id)
    if names is None:  # the read model lags a brand-new inbox
        return tenant_id, None
    return names.name, names.owner_email


def _confirm_page(provider: str, action: str, form: InstallConfirm, inbox: str, owner: str | None) -> str:
    """The page asking the person to confirm which inbox the workspace joins."""
    e = html.escape
    whose = f" (owner: <strong>{e(owner)}</strong>)" if owner else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect {e(provider)} — Moltbot</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main class="stack">
<h1>Connect {e(provider)} to this inbox?</h1>
<p>The {e(provider)} workspace you just approved will be connected to the Moltbot inbox
<strong>{e(inbox)}</strong>{whose}: its messages will arrive there.</p>
<p>If that is not your inbox, or you did not just add {e(provider)}, close this page:
nothing is connected until you confirm.</p>
<form method="post" action="{e(action)}">
<input type="hidden" name="state" value="{e(form.state)}">
<input type="hidden" name="code" value="{e(form.code)}">
<button type="submit">Connect {e(provider)} to {e(inbox)}</button>
<a href="/#channels">Cancel</a>
</form>
</main>
</body>
</html>
"""


install_routes = [install, installable, oauth_callback, oauth_confirm]
