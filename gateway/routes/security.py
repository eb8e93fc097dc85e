"""A person's sign-in security: their sessions (each device signed in) and two-factor sign-in.

Ending a session refuses its tokens at once, access tokens included. Two-factor sign-in is
enrolled in two steps — ``POST /v1/me/2fa`` (secret, ``otpauth://`` URI, QR as SVG) and
``POST /v1/me/2fa/confirm`` with a first code, which answers ten recovery codes, shown once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from adapters.vault.cipher import Keyring
from gateway import credentials, sessions, two_factor
from gateway.audit_log import note
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.mailing import send_later
from gateway.routes.accounts import account_key, check_password, check_second_factor


class Sessions(msgspec.Struct, frozen=True):
    sessions: list[sessions.SessionView]


class ConfirmBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str


class DisableBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    password: str
    otp: str  # a current code or an unused recovery code


class RecoveryCodes(msgspec.Struct, frozen=True):
    recovery_codes: list[str]
    detail: str = (
        "Two-factor sign-in is on. Keep these codes somewhere safe: each works once,"
        " and they are not shown again."
    )


class TwoFactorState(msgspec.Struct, frozen=True):
    enabled: bool
    recovery_codes_left: int


def _keyring(ctx: GatewayContext) -> Keyring:
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    return ctx.keyring


async def _email(ctx: GatewayContext, who: Caller) -> str:
    async with ctx.pool.connection() as conn:
        account = await credentials.by_user(conn, who.user_id)
    if account is None:
        raise ApiError(
            409, "no_password_account", "This account signs in with your identity provider: set 2FA up there."
        )
    return account.email


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@get("/me/sessions", cache=False)
async def list_sessions(ctx: Ctx, who: Who) -> Sessions:
    async with ctx.pool.connection() as conn:
        return Sessions(await sessions.listing(conn, who.user_id, who.session_id))


@delete("/me/sessions/{session_id:str}", status_code=204)
async def end_session(ctx: Ctx, who: Who, session_id: FromPath[str], request: Request[Any, Any, Any]) -> None:
    async with ctx.pool.connection() as conn:
        ended = await sessions.end(conn, session_id, "revoked", user_id=who.user_id)
    if not ended:
        raise ApiError(404, "not_found", "No such session of yours is going: see GET /v1/me/sessions.")
    await note(
        ctx, request, who.tenant_id, "session.revoked", actor=f"user:{who.user_id}", target=session_id,
        detail={"own": session_id == who.session_id},
    )  # fmt: skip


@get("/me/2fa", cache=False)
async def two_factor_state(ctx: Ctx, who: Who) -> TwoFactorState:
    async with ctx.pool.connection() as conn:
        on = await two_factor.enabled(conn, who.user_id)
        left = await two_factor.recovery_codes_left(conn, who.user_id) if on else 0
    return TwoFactorState(on, left)


@post("/me/2fa", status_code=201)
async def enrol(ctx: Ctx, who: Who) -> two_factor.Enrolment:
    """Start enrolment: add the secret to an authenticator app (scan the QR), then confirm a code."""
    keyring = _keyring(ctx)
    email = await _email(ctx, who)
    async with ctx.pool.connection() as conn, conn.transaction():
        if await two_factor.enabled(conn, who.user_id):
            raise ApiError(
                409, "two_factor_on", "Two-factor sign-in is on already: turn it off first to use a new app."
            )
        return await two_factor.begin(conn, keyring, who.user_id, email)


@post("/me/2fa/confirm", status_code=200)
async def confirm(
    data: JSONBody[ConfirmBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> RecoveryCodes:
    keyring = _keyring(ctx)
    email = await _email(ctx, who)
    await ctx.limiter.check("otp_per_account", account_key(email), "Too many two-factor codes tried.")
    async with ctx.pool.connection() as conn, conn.transaction():
        codes = await two_factor.confirm(conn, keyring, who.user_id, data.code)
    if codes is None:
        raise ApiError(
            400,
            "invalid_otp",
            "That code does not match: check the app's clock, or start again with POST /v1/me/2fa.",
            field="code",
        )
    await note(ctx, request, who.tenant_id, "2fa.enabled", actor=f"user:{who.user_id}", target=who.user_id)
    send_later(ctx, "two_factor_changed", email, {"state": "turned on", "when": _now()})
    return RecoveryCodes(codes)


@post("/me/2fa/disable", status_code=204)
async def disable(data: JSONBody[DisableBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]) -> None:
    """Turn two-factor sign-in off: the password and a second factor prove it is you."""
    email = await _email(ctx, who)
    account = await check_password(ctx, request, email, data.password)
    async with ctx.pool.connection() as conn:
        if not await two_factor.enabled(conn, who.user_id):
            raise ApiError(409, "two_factor_off", "Two-factor sign-in is not on.")
    await check_second_factor(ctx, request, account, data.otp)
    async with ctx.pool.connection() as conn, conn.transaction():
        await two_factor.disable(conn, who.user_id)
    await note(ctx, request, who.tenant_id, "2fa.disabled", actor=f"user:{who.user_id}", target=who.user_id)
    send_later(ctx, "two_factor_changed", email, {"state": "turned off", "when": _now()})


security_router = Router(
    path="/v1",
    route_handlers=[list_sessions, end_session, two_factor_state, enrol, confirm, disable],
    tags=["accounts"],
    dependencies={"who": Provide(caller)},
)
