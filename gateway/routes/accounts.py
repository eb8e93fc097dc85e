"""Sign-up, sign-in (with the second factor when enrolled), token refresh, sign-out,
switching inboxes, ``/me`` and linking external identities.

Sign-up is events (``user.registered``, ``tenant.created``, ``member.added``, the
tenant's website chat connection and its default agent) plus a credentials row and a
widget row; their transaction commits only after the events are stored, and a taken
e-mail is refused before anything is appended. It mails a verification link.

A sign-in starts a session (``gateway/sessions.py``): its refresh tokens rotate, a reused
one ends it, every refresh and every request reads the membership again. A password of an
older scheme (scrypt) is rehashed as argon2id at the first sign-in that proves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Router, delete, get, post
from litestar.di import Provide
from litestar.params import JSONBody, Parameter
from psycopg import AsyncConnection

from adapters.postgres import tenancy
from domain import agent, ids, plans
from domain import events as ev
from gateway import credentials, one_time_tokens, sessions, two_factor
from gateway.audit_log import note
from gateway.auth import Caller, Role, TokenPair, member_role
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.erasure import AccountDeleted, delete_account
from gateway.errors import ApiError
from gateway.limits import client_ip
from gateway.mailing import link, send_later
from gateway.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from gateway.plan_limits import plan_catalog
from gateway.routes.webchat import new_widget_key, widget_events
from projections import inbox_queries, tenants_queries

log = structlog.get_logger()

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MIN_PASSWORD = 10
VERIFY_EMAIL_S = 2 * 86400  # a verification link works for two days


class SignupBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str
    display_name: str | None = None


class LoginBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str
    otp: str | None = None  # the authenticator's 6 digits, or a recovery code, once 2FA is on


class RefreshBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: str


class SwitchBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant_id: str


class ConfirmBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a destructive request asks again: the password (and a code with 2FA on)."""

    password: str
    otp: str | None = None


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
    email_verified: bool = False
    two_factor: bool = False
    inboxes: list[tenants_queries.Membership] = msgspec.field(default_factory=list)  # to switch to
    time_zone: str | None = None  # PUT /v1/me/preferences (None: never set; UTC)
    quiet_hours: ev.QuietHours | None = None  # no push notifications then, on time_zone's clock
    needs_reply: int = 0  # conversations waiting for a reply (GET /v1/conversations?needs_reply=true)
    follow_ups_due: int = 0  # reminders that came due and wait to be dealt with (GET /v1/follow-ups)
    digest_hour: int | None = None  # the morning digest's hour on time_zone's clock (None: none)
    digest_email: bool = True


def valid_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.fullmatch(email) or len(email) > 254:
        raise ApiError(400, "invalid_request", "Give an e-mail address like ada@example.com.", field="email")
    return email


def valid_password(password: str, field: str = "password") -> str:
    if len(password) < MIN_PASSWORD:
        raise ApiError(
            400, "invalid_request", f"Use a password of at least {MIN_PASSWORD} characters.", field=field
        )
    if len(password) > 1024:
        raise ApiError(400, "invalid_request", "Use a password of at most 1,024 characters.", field=field)
    return password


def account_key(email: str) -> str:
    """The per-account rate-limit key: a digest, so the counters hold no addresses."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


async def check_password(
    ctx: GatewayContext, request: Request[Any, Any, Any], email: str, password: str
) -> credentials.Credentials:
    """The account of ``email`` if ``password`` is its password; 401 otherwise.

    Limits are checked before any hashing; an unknown address costs the same argon2id work
    as a known one, so neither the time nor the answer tells whether it has an account. A
    wrong password is written to the account's audit log."""
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("login_per_ip", address, "Too many sign-in attempts from your address.")
    await ctx.limiter.check(
        "login_per_account", account_key(email), "Too many sign-in attempts for this account."
    )
    async with ctx.pool.connection() as conn:
        account = await credentials.by_email(conn, email)
    stored = account.password_hash if account is not None else DUMMY_HASH
    matches = await asyncio.to_thread(verify_password, password, stored)
    if account is None or not matches:
        if account is not None:
            await note(
                ctx, request, account.tenant_id, "signin.failed", actor=f"user:{account.user_id}",
                target=account.user_id, detail={"reason": "password"},
            )  # fmt: skip
        raise ApiError(401, "invalid_credentials", "E-mail or password is wrong.")
    if needs_rehash(account.password_hash):
        rehashed = await asyncio.to_thread(hash_password, password)
        async with ctx.pool.connection() as conn:
            await credentials.set_password(conn, account.user_id, rehashed, changed=False)
        log.info("password_rehashed", user_id=account.user_id)
    return account


async def check_second_factor(
    ctx: GatewayContext, request: Request[Any, Any, Any], account: credentials.Credentials, otp: str | None
) -> None:
    """With 2FA on, ``otp`` must be a fresh authenticator code or an unused recovery code."""
    async with ctx.pool.connection() as conn:
        if not await two_factor.enabled(conn, account.user_id):
            return
    if not otp:
        raise ApiError(
            401,
            "otp_required",
            "This account has two-factor sign-in: send the 6-digit code from your authenticator app"
            " (or a recovery code) as otp.",
            field="otp",
        )
    await ctx.limiter.check(
        "otp_per_account", account_key(account.email), "Too many two-factor codes tried for this account."
    )
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    async with ctx.pool.connection() as conn, conn.transaction():
        used = await two_factor.verify(conn, ctx.keyring, account.user_id, otp)
        left = (
            await two_factor.recovery_codes_left(conn, account.user_id) if used == "recovery_code" else None
        )
    actor = f"user:{account.user_id}"
    if used is None:
        await note(
            ctx, request, account.tenant_id, "signin.failed", actor=actor, target=account.user_id,
            detail={"reason": "otp"},
        )  # fmt: skip
        raise ApiError(
            401, "invalid_otp", "That code is wrong or already used: try the next one.", field="otp"
        )
    if used == "recovery_code":
        await note(
            ctx, request, account.tenant_id, "2fa.recovery_code_used", actor=actor, target=account.user_id,
            detail={"left": left},
        )  # fmt: skip


async def current_role(ctx: GatewayContext, tenant_id: str, user_id: str) -> Role | None:
    """The user's role now, from the members read model; ``None`` when not a member."""
    role = await member_role(ctx.pool, tenant_id, user_id)
    if role is None:
        # The read model may lag a sign-up by a few ms: decide once it has read the log.
        await ctx.wait_for(await ctx.store.last_seq(), ("tenants",), tenant_id)
        role = await member_role(ctx.pool, tenant_id, user_id)
    return role


def not_a_member() -> ApiError:
    return ApiError(
        401,
        "not_a_member",
        "This account is not a member of its inbox: ask the inbox's owner to add it again.",
    )


async def landing(ctx: GatewayContext, account: credentials.Credentials) -> Caller:
    """Where a sign-in lands: the home inbox, else the first inbox the user still belongs to."""
    role = await current_role(ctx, account.tenant_id, account.user_id)
    if role is not None:
        return Caller(user_id=account.user_id, tenant_id=account.tenant_id, role=role)
    async with tenancy.user_transaction(ctx.pool, account.user_id) as conn:
        inboxes = await tenants_queries.memberships(conn, account.user_id)
    if not inboxes:
        raise not_a_member()
    first = inboxes[0]
    return Caller(user_id=account.user_id, tenant_id=first.tenant_id, role=first.role)  # type: ignore[arg-type]


async def start_session(
    ctx: GatewayContext,
    request: Request[Any, Any, Any],
    who: Caller,
    conn: AsyncConnection[Any] | None = None,
) -> TokenPair:
    """A new session of ``who`` from this request's client; its first token pair."""
    device = sessions.device_name(request.headers.get("user-agent"))
    address = client_ip(request, ctx.trusted_proxies)
    if conn is not None:
        return (await sessions.start(conn, ctx.tokens, who, device=device, ip=address))[1]
    async with ctx.pool.connection() as own, own.transaction():
        return (await sessions.start(own, ctx.tokens, who, device=device, ip=address))[1]


def send_verification(ctx: GatewayContext, request: Request[Any, Any, Any], email: str, token: str) -> None:
    send_later(ctx, "verify_email", email, {"link": link(ctx, request, f"verify={token}")})


@post("/signup", status_code=201)
async def signup(data: JSONBody[SignupBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Session:
    email = valid_email(data.email)
    valid_password(data.password)
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("signup_per_ip", address, "Too many sign-ups from your address.")
    user_id, tenant_id = ids.new_id(ids.USER), ids.new_id(ids.TENANT)
    password_hash = await asyncio.to_thread(hash_password, data.password)
    actor = f"user:{user_id}"
    name = (data.display_name or email.split("@")[0]).strip()[:100]
    async with ctx.pool.connection() as conn, conn.transaction():
        if not await credentials.create(
            conn, email=email, user_id=user_id, tenant_id=tenant_id, password_hash=password_hash
        ):
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
        token, _ = await one_time_tokens.issue(
            conn, "verify_email", email, valid_s=VERIFY_EMAIL_S, user_id=user_id
        )
        appended = await ctx.store.append_many([created, registered, member, *webchat, assistant])
        # The members read model has not read the membership yet: the tokens name its seq.
        membership_seq = appended[2].seq
        who = Caller(user_id=user_id, tenant_id=tenant_id, role="owner", membership_seq=membership_seq)
        tokens = await start_session(ctx, request, who, conn)
    await note(ctx, request, tenant_id, "account.created", actor=actor, target=user_id)
    send_verification(ctx, request, email, token)
    return Session(user_id, tenant_id, "owner", tokens, appended[-1].seq)


@post("/login", status_code=200)
async def login(data: JSONBody[LoginBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Session:
    account = await check_password(ctx, request, valid_email(data.email), data.password)
    await check_second_factor(ctx, request, account, data.otp)
    try:
        who = await landing(ctx, account)
    except ApiError:
        await note(
            ctx, request, account.tenant_id, "signin.failed", actor=f"user:{account.user_id}",
            target=account.user_id, detail={"reason": "not_a_member"},
        )  # fmt: skip
        raise
    tokens = await start_session(ctx, request, who)
    await note(
        ctx, request, who.tenant_id, "signin.succeeded", actor=f"user:{who.user_id}", target=who.user_id
    )
    return Session(who.user_id, who.tenant_id, who.role, tokens, 0)


@post("/refresh", status_code=200)
async def refresh(data: JSONBody[RefreshBody], ctx: Ctx, request: Request[Any, Any, Any]) -> TokenPair:
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("refresh_per_ip", address, "Too many token refreshes from your address.")
    presented = ctx.tokens.verify(data.refresh_token, kind="refresh")
    role = await current_role(ctx, presented.tenant_id, presented.user_id)
    if role is None:
        async with ctx.pool.connection() as conn:
            await sessions.end_by_token(conn, data.refresh_token, "removed")
        raise not_a_member()
    async with ctx.pool.connection() as conn, conn.transaction():
        state = await sessions.presented(conn, data.refresh_token)
        if state is None:
            refusal = ApiError(401, "invalid_token", "This refresh token is not known here: log in again.")
        elif state.ended:
            refusal = ApiError(
                401, "session_ended", "This session has ended (logged out or revoked): log in again."
            )
        elif state.used:
            # Used before: someone else holds a copy. End the session for both.
            await sessions.end(conn, state.session_id, "token_reused")
            log.warning("refresh_token_reused", user_id=presented.user_id, session_id=state.session_id)
            refusal = ApiError(
                401,
                "refresh_token_reused",
                "This refresh token was already used, so the session is ended for safety: log in again.",
            )
        else:
            await sessions.mark_used(conn, data.refresh_token, ip=address)
            who = msgspec.structs.replace(presented, role=role, session_id=state.session_id)
            return await sessions.issue(conn, ctx.tokens, who)
    raise refusal  # after the commit, so an ended session stays ended


@post("/logout", status_code=204)
async def logout(data: JSONBody[RefreshBody], ctx: Ctx) -> None:
    """End the session: its refresh tokens and access tokens stop working."""
    ctx.tokens.verify(data.refresh_token, kind="refresh")
    async with ctx.pool.connection() as conn:
        await sessions.end_by_token(conn, data.refresh_token, "logged_out")


@post("/switch", status_code=200, dependencies={"who": Provide(caller)})
async def switch(data: JSONBody[SwitchBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]) -> Session:
    """Tokens for another inbox the caller belongs to, in the same session (so signing out
    ends both); the next sign-in lands there too."""
    role = await member_role(ctx.pool, data.tenant_id, who.user_id)
    if role is None:
        raise ApiError(
            403,
            "not_a_member",
            "You are not a member of that inbox: see GET /v1/me for yours.",
            field="tenant_id",
        )
    target = Caller(user_id=who.user_id, tenant_id=data.tenant_id, role=role, session_id=who.session_id)
    async with ctx.pool.connection() as conn, conn.transaction():
        if who.session_id is not None:
            tokens = await sessions.issue(conn, ctx.tokens, target)
        else:  # an OIDC caller has no session of ours: start one
            device = sessions.device_name(request.headers.get("user-agent"))
            _, tokens = await sessions.start(
                conn, ctx.tokens, target, device=device, ip=client_ip(request, ctx.trusted_proxies)
            )
        await credentials.set_home(conn, who.user_id, data.tenant_id)
    await note(
        ctx, request, data.tenant_id, "signin.switched", actor=f"user:{who.user_id}", target=who.user_id,
        detail={"from": who.tenant_id},
    )  # fmt: skip
    return Session(who.user_id, data.tenant_id, role, tokens, 0)


@get("/me")
async def me(
    ctx: Ctx,
    who: Who,
    min_seq: Annotated[int | None, Parameter(ge=0, description="wait until read models reach seq")] = None,
) -> Me:
    await ctx.wait_for(min_seq, ("tenants",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await tenants_queries.account(conn, who.tenant_id, who.user_id)
        chosen = await tenants_queries.preferences(conn, who.user_id)
        waiting = await inbox_queries.needing_reply(conn, who.tenant_id)
        reminders = await inbox_queries.follow_ups_due(conn, who.tenant_id)
    quiet = (
        ev.QuietHours(start=chosen.quiet_start, end=chosen.quiet_end)
        if chosen.quiet_start is not None and chosen.quiet_end is not None
        else None
    )
    async with tenancy.user_transaction(ctx.pool, who.user_id) as conn:
        inboxes = await tenants_queries.memberships(conn, who.user_id)
    async with ctx.pool.connection() as conn:
        account = await credentials.by_user(conn, who.user_id)
        second_factor = await two_factor.enabled(conn, who.user_id)
    # An account known only to the identity provider (OIDC) has no address of ours to verify.
    verified = account.verified if account is not None else True
    if found is None:  # the read model lags a brand-new inbox
        return Me(
            who.user_id, who.tenant_id, who.role, None, None, None, None, verified, second_factor, inboxes,
            needs_reply=waiting, follow_ups_due=reminders,
        )  # fmt: skip
    return Me(
        who.user_id, who.tenant_id, who.role, found.email, found.display_name, found.tenant_name, found.plan,
        verified, second_factor, inboxes, chosen.time_zone, quiet, waiting, reminders, chosen.digest_hour,
        chosen.digest_email,
    )  # fmt: skip


async def confirm_identity(
    ctx: GatewayContext, request: Request[Any, Any, Any], who: Caller, body: ConfirmBody
) -> None:
    """The password (and second factor) prove it is the person, not a stolen token."""
    async with ctx.pool.connection() as conn:
        account = await credentials.by_user(conn, who.user_id)
    if account is None:
        raise ApiError(409, "no_password_account", "This account signs in elsewhere: ask an operator.")
    account = await check_password(ctx, request, account.email, body.password)
    await check_second_factor(ctx, request, account, body.otp)


@delete("/me", status_code=200)
async def delete_me(
    data: JSONBody[ConfirmBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> AccountDeleted:
    """Delete the caller's account (``gateway/erasure.py``): the inboxes only they are in
    are erased, the others are left."""
    await confirm_identity(ctx, request, who, data)
    return await delete_account(ctx, who)


@post("/me/identities", status_code=201)
async def link_identity(
    data: JSONBody[LinkIdentityBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> LinkedIdentity:
    """Link an identity of the configured OIDC provider to the caller's account: its access
    tokens then act as this user, with the role the members read model gives (never a claim)."""
    if ctx.oidc is None or ctx.oidc.links is None:
        raise ApiError(404, "oidc_off", "No external identity provider is configured on this gateway.")
    async with ctx.pool.connection() as conn:
        account = await credentials.by_user(conn, who.user_id)
    if account is None:
        raise ApiError(403, "forbidden", "Only an account with a password can link identities.")
    await check_password(ctx, request, account.email, data.password)
    identity = await ctx.oidc.identity(data.token)
    if not await ctx.oidc.links.link(identity, who):
        raise ApiError(
            409, "identity_taken", "This identity is already linked to another account.", field="token"
        )
    log.info("identity_linked", user_id=who.user_id, tenant_id=who.tenant_id, issuer=identity.issuer)
    await note(
        ctx, request, who.tenant_id, "identity.linked", actor=f"user:{who.user_id}", target=who.user_id,
        detail={"issuer": identity.issuer},
    )  # fmt: skip
    return LinkedIdentity(identity.issuer, identity.subject, who.user_id, who.tenant_id)


auth_router = Router(
    path="/v1/auth", route_handlers=[signup, login, refresh, logout, switch], tags=["accounts"]
)
me_router = Router(
    path="/v1",
    route_handlers=[me, delete_me, link_identity],
    tags=["accounts"],
    dependencies={"who": Provide(caller)},
)
