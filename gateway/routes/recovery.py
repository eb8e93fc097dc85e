"""Getting back in and proving the address: password reset by mail, e-mail verification,
changing the password.

``POST /v1/auth/password-reset`` answers ``202`` alike for every address, in the same time
(the lookup happens either way; the mail leaves in the background), so it tells no one which
addresses have accounts. The mailed token works once, for 30 minutes; setting the password
with it ends every session of the account and proves the address.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Router, post
from litestar.di import Provide
from litestar.params import JSONBody

from gateway import credentials, one_time_tokens, sessions
from gateway.audit_log import note
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.limits import client_ip
from gateway.mailing import link, send_later
from gateway.passwords import hash_password, verify_password
from gateway.routes.accounts import (
    VERIFY_EMAIL_S,
    account_key,
    check_password,
    send_verification,
    valid_email,
    valid_password,
)

RESET_S = 30 * 60  # a reset link works for 30 minutes


class ResetBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str


class ResetConfirmBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str
    password: str


class VerifyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str


class PasswordChangeBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    current_password: str
    new_password: str


class Accepted(msgspec.Struct, frozen=True):
    detail: str


class PasswordReset(msgspec.Struct, frozen=True):
    detail: str
    sessions_ended: int


class Verified(msgspec.Struct, frozen=True):
    email: str
    email_verified: bool = True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@post("/password-reset", status_code=202)
async def password_reset(data: JSONBody[ResetBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Accepted:
    email = valid_email(data.email)
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("password_reset_per_ip", address, "Too many password resets from your address.")
    await ctx.limiter.check(
        "password_reset_per_account", account_key(email), "Too many password resets for this address."
    )
    async with ctx.pool.connection() as conn, conn.transaction():
        account = await credentials.by_email(conn, email)
        token = None
        if account is not None:
            token, _ = await one_time_tokens.issue(
                conn, "password_reset", email, valid_s=RESET_S, user_id=account.user_id
            )
    if account is not None and token is not None:
        values = {"link": link(ctx, request, f"reset={token}"), "minutes": str(RESET_S // 60)}
        send_later(ctx, "password_reset", email, values)
        await note(
            ctx, request, account.tenant_id, "password.reset_requested", actor="anonymous",
            target=account.user_id,
        )  # fmt: skip
    return Accepted("If an account uses this address, a link to set a new password is on its way.")


@post("/password-reset/confirm", status_code=200)
async def password_reset_confirm(
    data: JSONBody[ResetConfirmBody], ctx: Ctx, request: Request[Any, Any, Any]
) -> PasswordReset:
    valid_password(data.password)
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("password_reset_per_ip", address, "Too many password resets from your address.")
    password_hash = await asyncio.to_thread(hash_password, data.password)
    async with ctx.pool.connection() as conn, conn.transaction():
        used = await one_time_tokens.take(conn, data.token, "password_reset")
        if used is None or used.user_id is None:
            raise ApiError(
                400,
                "invalid_token",
                "This reset link is unknown, used or older than 30 minutes: ask for a new one.",
                field="token",
            )
        await credentials.set_password(conn, used.user_id, password_hash)
        await credentials.mark_verified(conn, used.user_id)  # the mail reached its owner
        ended = await sessions.end_all(conn, used.user_id, "password_reset")
        account = await credentials.by_user(conn, used.user_id)
    if account is not None:
        await note(
            ctx, request, account.tenant_id, "password.reset", actor=f"user:{used.user_id}",
            target=used.user_id, detail={"sessions_ended": ended},
        )  # fmt: skip
        send_later(ctx, "password_changed", account.email, {"when": _now()})
    return PasswordReset("Your password is set: sign in with it. Every other session has ended.", ended)


@post("/verify-email", status_code=200)
async def verify_email(data: JSONBody[VerifyBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Verified:
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("password_reset_per_ip", address, "Too many links tried from your address.")
    async with ctx.pool.connection() as conn, conn.transaction():
        used = await one_time_tokens.take(conn, data.token, "verify_email")
        if used is None or used.user_id is None:
            raise ApiError(
                400,
                "invalid_token",
                "This verification link is unknown, used or expired: send a new one from Settings.",
                field="token",
            )
        await credentials.mark_verified(conn, used.user_id)
        account = await credentials.by_user(conn, used.user_id)
    if account is not None:
        await note(
            ctx,
            request,
            account.tenant_id,
            "email.verified",
            actor=f"user:{used.user_id}",
            target=used.user_id,
        )
    return Verified(used.email)


@post("/me/verify-email", status_code=202)
async def resend_verification(ctx: Ctx, who: Who, request: Request[Any, Any, Any]) -> Accepted:
    async with ctx.pool.connection() as conn, conn.transaction():
        account = await credentials.by_user(conn, who.user_id)
        if account is None:
            raise ApiError(409, "no_password_account", "This account signs in elsewhere: nothing to verify.")
        if account.verified:
            raise ApiError(409, "already_verified", f"{account.email} is verified already.")
        await ctx.limiter.check(
            "password_reset_per_account", account_key(account.email), "Too many mails for this address."
        )
        token, _ = await one_time_tokens.issue(
            conn, "verify_email", account.email, valid_s=VERIFY_EMAIL_S, user_id=who.user_id
        )
    send_verification(ctx, request, account.email, token)
    return Accepted(f"A verification link is on its way to {account.email}.")


@post("/me/password", status_code=200)
async def change_password(
    data: JSONBody[PasswordChangeBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> PasswordReset:
    """Change the password (the current one proves it is you); every other session ends."""
    valid_password(data.new_password, field="new_password")
    async with ctx.pool.connection() as conn:
        account = await credentials.by_user(conn, who.user_id)
    if account is None:
        raise ApiError(
            409, "no_password_account", "This account signs in elsewhere: it has no password here."
        )
    await check_password(ctx, request, account.email, data.current_password)
    if await asyncio.to_thread(verify_password, data.new_password, account.password_hash):
        raise ApiError(
            400, "invalid_request", "Choose a password you have not used here.", field="new_password"
        )
    password_hash = await asyncio.to_thread(hash_password, data.new_password)
    async with ctx.pool.connection() as conn, conn.transaction():
        await credentials.set_password(conn, who.user_id, password_hash)
        ended = await sessions.end_all(conn, who.user_id, "password_changed", keep=who.session_id)
    await note(
        ctx, request, who.tenant_id, "password.changed", actor=f"user:{who.user_id}", target=who.user_id,
        detail={"sessions_ended": ended},
    )  # fmt: skip
    send_later(ctx, "password_changed", account.email, {"when": _now()})
    return PasswordReset("Your password is changed. Your other sessions have ended.", ended)


async def ensure_verified(ctx: GatewayContext, who: Caller, what: str) -> None:
    """With ``MOLTBOT_EMAIL_VERIFICATION=required``, refuse ``what`` (403) until the caller's
    address is verified (an OIDC account, with no address of ours, passes)."""
    if ctx.email_verification != "required":
        return
    async with ctx.pool.connection() as conn:
        account = await credentials.by_user(conn, who.user_id)
    if account is not None and not account.verified:
        raise ApiError(
            403,
            "email_unverified",
            f"Verify your e-mail address before {what}: open the link we mailed you"
            " (Settings → Resend verification mail sends a new one).",
        )


recovery_router = Router(
    path="/v1/auth", route_handlers=[password_reset, password_reset_confirm, verify_email], tags=["accounts"]
)
me_recovery_router = Router(
    path="/v1",
    route_handlers=[resend_verification, change_password],
    tags=["accounts"],
    dependencies={"who": Provide(caller)},
)
