"""Sign-up, log-in, token refresh, log-out, ``/me`` and linking external identities.

Sign-up is events (``user.registered``, ``tenant.created``, ``member.added``, the
tenant's website chat connection and its default agent) plus a credentials row and a
widget row; their transaction commits only after the events are stored, and a taken
e-mail is refused before anything is appended.

Refresh tokens rotate: each works once. A sign-up or log-in starts a *family*; a refresh
marks the presented token used and answers a new pair of the same family. A used token
presented again means two parties hold it, so the whole family is revoked. Every refresh
reads the membership again (the role may have changed; no membership, no tokens). Only
digests of refresh tokens are stored (``gateway.refresh_tokens``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Router, get, post
from litestar.di import Provide
from litestar.params import JSONBody, Parameter
from psycopg import AsyncConnection

from domain import agent, ids, plans
from domain import events as ev
from gateway.auth import (
    DUMMY_PASSWORD_HASH,
    Caller,
    Role,
    TokenPair,
    hash_password,
    member_role,
    token_digest,
    verify_password,
)
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.limits import client_ip
from gateway.plan_limits import plan_catalog
from gateway.routes.webchat import new_widget_key, widget_events
from projections import tenants_queries

log = structlog.get_logger()

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MIN_PASSWORD = 10

CREDENTIALS_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.credentials (
    email         text PRIMARY KEY,  -- lower-cased
    user_id       text NOT NULL UNIQUE,
    tenant_id     text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT ON gateway.credentials TO moltbot_gateway;
"""

REFRESH_TOKENS_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.refresh_tokens (
    token_hash text PRIMARY KEY,  -- SHA-256 of the token; the token itself is never stored
    family_id  text NOT NULL,     -- every token of one log-in, each rotated from the one before
    user_id    text NOT NULL,
    tenant_id  text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,       -- exchanged for a new pair: presenting it again is reuse
    revoked_at timestamptz        -- log-out, reuse or a lost membership ended its family
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON gateway.refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON gateway.refresh_tokens (user_id, expires_at);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.refresh_tokens TO moltbot_gateway;
"""

_REVOKE_FAMILY = """
UPDATE gateway.refresh_tokens SET revoked_at = now()
WHERE revoked_at IS NULL
  AND family_id = (SELECT family_id FROM gateway.refresh_tokens WHERE token_hash = %s)
"""


class SignupBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str
    display_name: str | None = None


class LoginBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str


class RefreshBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: str


class LinkIdentityBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str  # an access token of the identity provider, for the identity to link
    password: str  # the account's password: linking adds a way in, so it asks again


class LinkedIdentity(msgspec.Struct, frozen=True):
    issuer: str
    subject: str
    user_id: str
    tenant_id: str


class Session(msgspec.Struct, frozen=True):
    user_id: str
    tenant_id: str
    role: str
    tokens: TokenPair
    seq: int  # EVENTS sequence of the last sign-up event: use as ?min_seq=


class Me(msgspec.Struct, frozen=True):
    user_id: str
    tenant_id: str
    role: str
    email: str | None
    display_name: str | None
    tenant_name: str | None
    plan: str | None


def _email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise ApiError(400, "invalid_request", "Give an e-mail address like ada@example.com.", field="email")
    return email


def _account_key(email: str) -> str:
    """The per-account rate-limit key: a digest, so the counters hold no addresses."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


async def _check_password(
    ctx: GatewayContext, request: Request[Any, Any, Any], email: str, password: str
) -> dict[str, Any]:
    """The credentials row of ``email`` if ``password`` is its password; 401 otherwise.

    Limits are checked before any hashing; an unknown address costs the same scrypt work
    as a known one, so neither the time nor the answer tells whether it has an account."""
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("login_per_ip", address, "Too many sign-in attempts from your address.")
    await ctx.limiter.check(
        "login_per_account", _account_key(email), "Too many sign-in attempts for this account."
    )
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT email, user_id, tenant_id, password_hash FROM gateway.credentials WHERE email = %s",
            (email,),
        )
        row: dict[str, Any] | None = await cur.fetchone()
    stored = row["password_hash"] if row is not None else DUMMY_PASSWORD_HASH
    matches = await asyncio.to_thread(verify_password, password, stored)
    if row is None or not matches:
        raise ApiError(401, "invalid_credentials", "E-mail or password is wrong.")
    return row


async def _current_role(ctx: GatewayContext, tenant_id: str, user_id: str) -> Role | None:
    """The user's role now, from the members read model; ``None`` when not a member."""
    role = await member_role(ctx.pool, tenant_id, user_id)
    if role is None:
        # The read model may lag a sign-up by a few ms: decide once it has read the log.
        await ctx.wait_for(await ctx.store.last_seq(), ("tenants",), tenant_id)
        role = await member_role(ctx.pool, tenant_id, user_id)
    return role


def _not_a_member() -> ApiError:
    return ApiError(
        401,
        "not_a_member",
        "This account is not a member of its inbox: ask the inbox's owner to add it again.",
    )


async def _issue(conn: AsyncConnection[Any], ctx: GatewayContext, who: Caller, family_id: str) -> TokenPair:
    """A new token pair, its refresh token recorded in ``family_id``."""
    tokens = ctx.tokens.issue(who)
    # Expired tokens are refused by their signature's exp already: forget the user's old ones.
    await conn.execute(
        "DELETE FROM gateway.refresh_tokens WHERE user_id = %s AND expires_at < now()", (who.user_id,)
    )
    await conn.execute(
        "INSERT INTO gateway.refresh_tokens (token_hash, family_id, user_id, tenant_id, expires_at)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
        (token_digest(tokens.refresh_token), family_id, who.user_id, who.tenant_id, ctx.tokens.refresh_ttl),
    )
    return tokens


@post("/signup", status_code=201)
async def signup(data: JSONBody[SignupBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Session:
    email = _email(data.email)
    if len(data.password) < MIN_PASSWORD:
        raise ApiError(
            400, "invalid_request", f"Use a password of at least {MIN_PASSWORD} characters.", field="password"
        )
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("signup_per_ip", address, "Too many sign-ups from your address.")
    user_id, tenant_id = ids.new_id(ids.USER), ids.new_id(ids.TENANT)
    password_hash = await asyncio.to_thread(hash_password, data.password)
    actor = f"user:{user_id}"
    name = (data.display_name or email.split("@")[0]).strip()[:100]
    async with ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO gateway.credentials (email, user_id, tenant_id, password_hash)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (email) DO NOTHING RETURNING user_id",
            (email, user_id, tenant_id, password_hash),
        )
        if await cur.fetchone() is None:
            raise ApiError(
                409, "email_taken", "An account with this e-mail exists: log in instead.", field="email"
            )
        created = ev.new_event(
            ev.TenantCreated, tenant_id=tenant_id, aggregate_id=tenant_id, actor=actor,
            data=ev.TenantCreatedData(name="Personal"),
        )  # fmt: skip
        registered = ev.new_event(
            ev.UserRegistered, tenant_id=tenant_id, aggregate_id=user_id, actor=actor,
            data=ev.UserRegisteredData(email=email, display_name=name), correlation_id=created.id,
        )  # fmt: skip
        member = ev.new_event(
            ev.MemberAdded, tenant_id=tenant_id, aggregate_id=tenant_id, actor=actor,
            data=ev.MemberAddedData(user_id=user_id, role="owner"), correlation_id=created.id,
        )  # fmt: skip
        # Every tenant starts with a website chat, so there is a channel to try at once.
        widget_key, webchat_id = new_widget_key(), ids.new_id(ids.CONNECTION)
        await conn.execute(
            "INSERT INTO gateway.webchat_widgets (widget_key, tenant_id, connection_id) VALUES (%s, %s, %s)",
            (widget_key, tenant_id, webchat_id),
        )
        webchat = widget_events(tenant_id, webchat_id, actor)
        template = agent.TEMPLATES["personal_assistant"]
        model = plans.model_for_plan(plan_catalog(ctx).limits(plans.DEFAULT_PLAN), template.model)
        assistant = ev.new_event(
            ev.AgentConfigured, tenant_id=tenant_id, aggregate_id=agent.default_agent_id(tenant_id),
            actor=actor, data=msgspec.structs.replace(template, model=model), correlation_id=created.id,
        )  # fmt: skip
        caller_ = Caller(user_id=user_id, tenant_id=tenant_id, role="owner")
        tokens = await _issue(conn, ctx, caller_, uuid.uuid4().hex)
        appended = await ctx.store.append_many([created, registered, member, *webchat, assistant])
    return Session(user_id, tenant_id, "owner", tokens, appended[-1].seq)


@post("/login", status_code=200)
async def login(data: JSONBody[LoginBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Session:
    row = await _check_password(ctx, request, _email(data.email), data.password)
    role = await _current_role(ctx, row["tenant_id"], row["user_id"])
    if role is None:
        raise _not_a_member()
    caller_ = Caller(user_id=row["user_id"], tenant_id=row["tenant_id"], role=role)
    async with ctx.pool.connection() as conn, conn.transaction():
        tokens = await _issue(conn, ctx, caller_, uuid.uuid4().hex)
    return Session(caller_.user_id, caller_.tenant_id, role, tokens, 0)


@post("/refresh", status_code=200)
async def refresh(data: JSONBody[RefreshBody], ctx: Ctx, request: Request[Any, Any, Any]) -> TokenPair:
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("refresh_per_ip", address, "Too many token refreshes from your address.")
    presented = ctx.tokens.verify(data.refresh_token, kind="refresh")
    digest = token_digest(data.refresh_token)
    role = await _current_role(ctx, presented.tenant_id, presented.user_id)
    if role is None:
        async with ctx.pool.connection() as conn:
            await conn.execute(_REVOKE_FAMILY, (digest,))
        raise _not_a_member()
    async with ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT family_id, used_at, revoked_at FROM gateway.refresh_tokens"
            " WHERE token_hash = %s FOR UPDATE",
            (digest,),
        )
        row: dict[str, Any] | None = await cur.fetchone()
        if row is None:
            refusal = ApiError(401, "invalid_token", "This refresh token is not known here: log in again.")
        elif row["revoked_at"] is not None:
            refusal = ApiError(
                401, "session_ended", "This session has ended (logged out or revoked): log in again."
            )
        elif row["used_at"] is not None:
            # Used before: someone else holds a copy. End the session for both.
            await conn.execute(_REVOKE_FAMILY, (digest,))
            log.warning("refresh_token_reused", user_id=presented.user_id, family_id=row["family_id"])
            refusal = ApiError(
                401,
                "refresh_token_reused",
                "This refresh token was already used, so the session is ended for safety: log in again.",
            )
        else:
            await conn.execute(
                "UPDATE gateway.refresh_tokens SET used_at = now() WHERE token_hash = %s", (digest,)
            )
            who = Caller(user_id=presented.user_id, tenant_id=presented.tenant_id, role=role)
            return await _issue(conn, ctx, who, row["family_id"])
    raise refusal  # after the commit, so a revocation stays


@post("/logout", status_code=204)
async def logout(data: JSONBody[RefreshBody], ctx: Ctx) -> None:
    """End the session: every refresh token of its log-in stops working."""
    ctx.tokens.verify(data.refresh_token, kind="refresh")
    async with ctx.pool.connection() as conn:
        await conn.execute(_REVOKE_FAMILY, (token_digest(data.refresh_token),))


@get("/me")
async def me(
    ctx: Ctx,
    who: Who,
    min_seq: Annotated[int | None, Parameter(ge=0, description="wait until read models reach seq")] = None,
) -> Me:
    await ctx.wait_for(min_seq, ("tenants",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await tenants_queries.account(conn, who.tenant_id, who.user_id)
    if found is None:  # the read model lags a brand-new inbox
        return Me(who.user_id, who.tenant_id, who.role, None, None, None, None)
    return Me(
        who.user_id, who.tenant_id, who.role, found.email, found.display_name, found.tenant_name, found.plan
    )


@post("/me/identities", status_code=201)
async def link(
    data: JSONBody[LinkIdentityBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> LinkedIdentity:
    """Link an identity of the configured OIDC provider to the caller's account: its access
    tokens then act as this user, with the role the members read model gives (never a claim)."""
    if ctx.oidc is None or ctx.oidc.links is None:
        raise ApiError(404, "oidc_off", "No external identity provider is configured on this gateway.")
    async with ctx.pool.connection() as conn:
        cur = await conn.execute("SELECT email FROM gateway.credentials WHERE user_id = %s", (who.user_id,))
        account: dict[str, Any] | None = await cur.fetchone()
    if account is None:
        raise ApiError(403, "forbidden", "Only an account with a password can link identities.")
    await _check_password(ctx, request, account["email"], data.password)
    identity = await ctx.oidc.identity(data.token)
    if not await ctx.oidc.links.link(identity, who):
        raise ApiError(
            409, "identity_taken", "This identity is already linked to another account.", field="token"
        )
    log.info("identity_linked", user_id=who.user_id, tenant_id=who.tenant_id, issuer=identity.issuer)
    return LinkedIdentity(identity.issuer, identity.subject, who.user_id, who.tenant_id)


auth_router = Router(path="/v1/auth", route_handlers=[signup, login, refresh, logout], tags=["accounts"])
me_router = Router(
    path="/v1",
    route_handlers=[me, link],
    tags=["accounts"],
    dependencies={"who": Provide(caller)},
)
