"""The people of an inbox: invitations by mail, roles, removal and leaving — as ``member.*``
events; who may do what is ``domain/members.py``.

Changes to one inbox's people are taken one at a time (an advisory lock per inbox, and the
members read model caught up before deciding), so two owners demoting each other at once
cannot leave the inbox without one. A change answers once the read model has it: a removed
member's next request is refused.

Accepting an invitation (``POST /v1/auth/invitations/accept``) signs in with the invited
address's password (and second factor) when it has an account, or creates the account in
that inbox; the mailed token proves the address.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from domain import events as ev
from domain import ids
from domain import members as rules
from domain.envelope import Role
from gateway import credentials, one_time_tokens
from gateway.audit_log import note
from gateway.auth import Caller, member_role
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.limits import client_ip
from gateway.mailing import link, send_later
from gateway.passwords import hash_password
from gateway.plan_limits import ensure_room
from gateway.routes.accounts import (
    Session,
    check_password,
    check_second_factor,
    start_session,
    valid_email,
    valid_password,
)
from projections import tenants_queries

INVITATION_DAYS = 7


class InviteBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    role: Role = "member"


class RoleBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: Role


class TokenBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str


class AcceptBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str
    password: str  # the account's password, or the new account's
    display_name: str | None = None  # for a new account
    otp: str | None = None  # an existing account's second factor, when on


class Invitation(msgspec.Struct, frozen=True):
    id: str
    email: str
    role: str
    invited_by: str | None
    created_at: datetime
    expires_at: datetime


class Members(msgspec.Struct, frozen=True):
    members: list[tenants_queries.Member]
    invitations: list[Invitation]  # open ones; empty for members (only owners and admins see them)


class MemberChanged(msgspec.Struct, frozen=True):
    user_id: str
    role: str | None  # None: removed
    event_id: str
    seq: int


class InvitationPreview(msgspec.Struct, frozen=True):
    """What the invitation page shows before accepting."""

    email: str
    role: str
    inbox: str
    invited_by: str | None
    account_exists: bool  # sign in (True) or choose a password (False)
    expires_at: datetime


def _invitation(row: one_time_tokens.OneTimeToken) -> Invitation:
    return Invitation(row.id, row.email, row.role or "member", row.created_by, row.created_at, row.expires_at)


def _refuse(refusal: rules.Refusal | None) -> None:
    if refusal is not None:
        raise ApiError(refusal.status, refusal.code, refusal.detail)


@contextlib.asynccontextmanager
async def _one_at_a_time(ctx: GatewayContext, tenant_id: str) -> AsyncIterator[dict[str, Role]]:
    """Hold the inbox's member lock; yields its members (user id → role), read once the read
    model has every event so far."""
    async with ctx.pool.connection() as lock, lock.transaction():
        await lock.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"members:{tenant_id}",))
        await ctx.wait_for(await ctx.store.last_seq(), ("tenants",), tenant_id)
        async with ctx.tenant(tenant_id) as conn:
            people = await tenants_queries.members(conn, tenant_id)
        yield {person.user_id: person.role for person in people}  # type: ignore[misc]


async def _append_and_wait(ctx: GatewayContext, event: ev.Event) -> int:
    appended = await ctx.store.append(event)
    await ctx.wait_for(appended.seq, ("tenants",), event.tenant_id)
    return appended.seq


@get("/members", cache=False)
async def list_members(ctx: Ctx, who: Who) -> Members:
    async with ctx.tenant(who.tenant_id) as conn:
        people = await tenants_queries.members(conn, who.tenant_id)
    invitations: list[Invitation] = []
    if who.role in ("owner", "admin"):
        async with ctx.pool.connection() as conn:
            invitations = [_invitation(row) for row in await one_time_tokens.invitations(conn, who.tenant_id)]
    return Members(people, invitations)


@post("/members/invitations", status_code=201)
async def invite(
    data: JSONBody[InviteBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> Invitation:
    """Invite someone by e-mail: they get a link valid for 7 days."""
    _refuse(rules.invite(who.role, data.role))
    email = valid_email(data.email)
    await ctx.limiter.check("invitations_per_tenant", who.tenant_id, "Too many invitations from your inbox.")
    async with ctx.tenant(who.tenant_id) as conn:
        people = await tenants_queries.members(conn, who.tenant_id)
        inbox = await tenants_queries.inbox_names(conn, who.tenant_id)
        inviter = await tenants_queries.display_name(conn, who.user_id)
    if any(person.email == email for person in people):
        raise ApiError(409, "already_member", f"{email} is a member of this inbox already.", field="email")
    await ensure_room(ctx, who, "seats")
    async with ctx.pool.connection() as conn, conn.transaction():
        token, row = await one_time_tokens.issue(
            conn, "invitation", email, valid_s=INVITATION_DAYS * 86400, tenant_id=who.tenant_id,
            role=data.role, created_by=who.user_id,
        )  # fmt: skip
        await note(
            ctx, request, who.tenant_id, "member.invited", actor=f"user:{who.user_id}", target=email,
            detail={"role": data.role, "invitation_id": row.id},
        )  # fmt: skip
    values = {
        "link": link(ctx, request, f"invite={token}"), "inviter": inviter or "Someone",
        "inbox": inbox.name if inbox else "an inbox", "role": data.role, "days": str(INVITATION_DAYS),
    }  # fmt: skip
    send_later(ctx, "invitation", email, values)
    return _invitation(row)


@delete("/members/invitations/{invitation_id:str}", status_code=204)
async def withdraw(ctx: Ctx, who: Who, invitation_id: FromPath[str], request: Request[Any, Any, Any]) -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", "Only the inbox's owners and admins can manage its people.")
    async with ctx.pool.connection() as conn:
        row = await one_time_tokens.withdraw(conn, who.tenant_id, invitation_id)
    if row is None:
        raise ApiError(404, "not_found", "No such open invitation: see GET /v1/members.")
    await note(
        ctx, request, who.tenant_id, "member.invitation_withdrawn", actor=f"user:{who.user_id}",
        target=row.email, detail={"invitation_id": invitation_id},
    )  # fmt: skip


@patch("/members/{user_id:str}", status_code=200)
async def change_role(
    data: JSONBody[RoleBody], ctx: Ctx, who: Who, user_id: FromPath[str], request: Request[Any, Any, Any]
) -> MemberChanged:
    async with _one_at_a_time(ctx, who.tenant_id) as people:
        _refuse(rules.change_role(people, who.user_id, user_id, data.role))
        before = people[user_id]
        event = ev.new_event(
            ev.MemberRoleChanged, tenant_id=who.tenant_id, aggregate_id=who.tenant_id,
            actor=f"user:{who.user_id}", data=ev.MemberRoleChangedData(user_id=user_id, role=data.role),
        )  # fmt: skip
        seq = await _append_and_wait(ctx, event)
    await note(
        ctx, request, who.tenant_id, "member.role_changed", actor=f"user:{who.user_id}", target=user_id,
        detail={"from": before, "to": data.role},
    )  # fmt: skip
    return MemberChanged(user_id, data.role, event.id, seq)


@delete("/members/{user_id:str}", status_code=200)
async def remove(
    ctx: Ctx, who: Who, user_id: FromPath[str], request: Request[Any, Any, Any]
) -> MemberChanged:
    """Remove a member (or yourself: leave). Their next request to this inbox is refused."""
    async with _one_at_a_time(ctx, who.tenant_id) as people:
        _refuse(rules.remove(people, who.user_id, user_id))
        event = ev.new_event(
            ev.MemberRemoved, tenant_id=who.tenant_id, aggregate_id=who.tenant_id,
            actor=f"user:{who.user_id}", data=ev.MemberRemovedData(user_id=user_id),
        )  # fmt: skip
        seq = await _append_and_wait(ctx, event)
    action = "member.left" if user_id == who.user_id else "member.removed"
    await note(ctx, request, who.tenant_id, action, actor=f"user:{who.user_id}", target=user_id)
    return MemberChanged(user_id, None, event.id, seq)


@post("/invitations/preview", status_code=200)
async def preview(data: JSONBody[TokenBody], ctx: Ctx, request: Request[Any, Any, Any]) -> InvitationPreview:
    """What an invitation offers, for the page that accepts it (the token is not used up)."""
    address = client_ip(request, ctx.trusted_proxies)
    await ctx.limiter.check("password_reset_per_ip", address, "Too many links tried from your address.")
    async with ctx.pool.connection() as conn:
        row = await one_time_tokens.peek(conn, data.token, "invitation")
        account = await credentials.by_email(conn, row.email) if row is not None else None
    if row is None or row.tenant_id is None:
        raise _unknown_invitation()
    async with ctx.tenant(row.tenant_id) as conn:
        inbox = await tenants_queries.inbox_names(conn, row.tenant_id)
        inviter = await tenants_queries.display_name(conn, row.created_by or "")
    return InvitationPreview(
        row.email, row.role or "member", inbox.name if inbox else "an inbox", inviter, account is not None,
        row.expires_at,
    )  # fmt: skip


def _unknown_invitation() -> ApiError:
    return ApiError(
        400,
        "invalid_token",
        "This invitation is unknown, withdrawn, used or older than 7 days: ask for a new one.",
        field="token",
    )


@post("/invitations/accept", status_code=200)
async def accept(data: JSONBody[AcceptBody], ctx: Ctx, request: Request[Any, Any, Any]) -> Session:
    """Join the inviting inbox: signed in as the invited address's account (its password,
    and second factor), or as a new account with this password."""
    async with ctx.pool.connection() as conn:
        row = await one_time_tokens.peek(conn, data.token, "invitation")
        account = await credentials.by_email(conn, row.email) if row is not None else None
    if row is None or row.tenant_id is None:
        raise _unknown_invitation()
    tenant_id, role = row.tenant_id, row.role or "member"
    if account is not None:
        account = await check_password(ctx, request, row.email, data.password)
        await check_second_factor(ctx, request, account, data.otp)
        user_id = account.user_id
    else:
        valid_password(data.password)
        user_id = ids.new_id(ids.USER)
        password_hash = await asyncio.to_thread(hash_password, data.password)
    actor = f"user:{user_id}"
    events: list[ev.Event] = []
    async with ctx.pool.connection() as conn, conn.transaction():
        if await one_time_tokens.take(conn, data.token, "invitation") is None:
            raise _unknown_invitation()
        if account is None:
            name = (data.display_name or valid_email(row.email).split("@")[0]).strip()[:100]
            if not await credentials.create(
                conn, email=row.email, user_id=user_id, tenant_id=tenant_id, password_hash=password_hash,
                verified=True,
            ):  # fmt: skip
                raise ApiError(409, "email_taken", "An account with this e-mail was just created: sign in.")
            events.append(
                ev.new_event(
                    ev.UserRegistered,
                    tenant_id=tenant_id,
                    aggregate_id=user_id,
                    actor=actor,
                    data=ev.UserRegisteredData(email=row.email, display_name=name),
                )
            )
        else:
            await credentials.mark_verified(conn, user_id)
        already = await member_role(ctx.pool, tenant_id, user_id) if account is not None else None
        if already is not None:  # a member already: the invitation changes nothing
            role = already
        else:
            events.append(
                ev.new_event(
                    ev.MemberAdded,
                    tenant_id=tenant_id,
                    aggregate_id=tenant_id,
                    actor=actor,
                    data=ev.MemberAddedData(user_id=user_id, role=role),  # type: ignore[arg-type]
                )
            )
        await credentials.set_home(conn, user_id, tenant_id)
        appended = await ctx.store.append_many(events) if events else []
    seq = appended[-1].seq if appended else 0
    await ctx.wait_for(seq, ("tenants",), tenant_id)
    who = Caller(user_id=user_id, tenant_id=tenant_id, role=role)  # type: ignore[arg-type]
    tokens = await start_session(ctx, request, who)
    await note(
        ctx, request, tenant_id, "member.joined", actor=actor, target=user_id,
        detail={"role": role, "invited_by": row.created_by, "new_account": account is None},
    )  # fmt: skip
    return Session(user_id, tenant_id, role, tokens, seq)


members_router = Router(
    path="/v1",
    route_handlers=[list_members, invite, withdraw, change_role, remove],
    tags=["members"],
    dependencies={"who": Provide(caller)},
)
invitations_router = Router(path="/v1/auth", route_handlers=[preview, accept], tags=["members"])
