"""Sign-up, log-in, token refresh and ``/me``.

Sign-up is events (``user.registered``, ``tenant.created``, ``member.added``, the
tenant's website chat connection and its default agent) plus a credentials row and a
widget row; their transaction commits only after the events are stored, and a taken
e-mail is refused before anything is appended.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post
from litestar.di import Provide
from litestar.params import JSONBody, Parameter

from domain import agent, ids
from domain import events as ev
from gateway.auth import Caller, Role, TokenPair, hash_password, verify_password
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.webchat import new_widget_key, widget_events

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


class SignupBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str
    display_name: str | None = None


class LoginBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str


class RefreshBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: str


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


@post("/signup", status_code=201)
async def signup(data: JSONBody[SignupBody], ctx: Ctx) -> Session:
    email = _email(data.email)
    if len(data.password) < MIN_PASSWORD:
        raise ApiError(
            400, "invalid_request", f"Use a password of at least {MIN_PASSWORD} characters.", field="password"
        )
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
        assistant = ev.new_event(
            ev.AgentConfigured, tenant_id=tenant_id, aggregate_id=agent.default_agent_id(tenant_id),
            actor=actor, data=agent.TEMPLATES["personal_assistant"], correlation_id=created.id,
        )  # fmt: skip
        appended = await ctx.store.append_many([created, registered, member, *webchat, assistant])
    caller_ = Caller(user_id=user_id, tenant_id=tenant_id, role="owner")
    return Session(user_id, tenant_id, "owner", ctx.tokens.issue(caller_), appended[-1].seq)


@post("/login", status_code=200)
async def login(data: JSONBody[LoginBody], ctx: Ctx) -> Session:
    email = _email(data.email)
    async with ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT user_id, tenant_id, password_hash FROM gateway.credentials WHERE email = %s", (email,)
        )
        row = await cur.fetchone()
        if row is not None:
            await conn.execute("SELECT set_config('moltbot.tenant_id', %s, true)", (row["tenant_id"],))
            cur = await conn.execute(
                "SELECT role FROM rm_tenants.members WHERE tenant_id = %s AND user_id = %s",
                (row["tenant_id"], row["user_id"]),
            )
            member = await cur.fetchone()
            row["role"] = member["role"] if member else None
    valid = row is not None and await asyncio.to_thread(verify_password, data.password, row["password_hash"])
    if not valid or row is None:
        raise ApiError(401, "invalid_credentials", "E-mail or password is wrong.")
    role: Role = row["role"] or "owner"  # the members read model may lag a fresh sign-up
    caller_ = Caller(user_id=row["user_id"], tenant_id=row["tenant_id"], role=role)
    return Session(caller_.user_id, caller_.tenant_id, role, ctx.tokens.issue(caller_), 0)


@post("/refresh", status_code=200)
async def refresh(data: JSONBody[RefreshBody], ctx: Ctx) -> TokenPair:
    return ctx.tokens.issue(ctx.tokens.verify(data.refresh_token, kind="refresh"))


@get("/me")
async def me(
    ctx: Ctx,
    who: Who,
    min_seq: Annotated[int | None, Parameter(ge=0, description="wait until read models reach seq")] = None,
) -> Me:
    await ctx.wait_for(min_seq, ("tenants",))
    async with ctx.tenant(who.tenant_id) as conn:
        cur = await conn.execute(
            "SELECT u.email, u.display_name, t.name AS tenant_name, t.plan FROM rm_tenants.tenants t"
            " LEFT JOIN rm_tenants.users u ON u.user_id = %s WHERE t.tenant_id = %s",
            (who.user_id, who.tenant_id),
        )
        row: dict[str, Any] | None = await cur.fetchone()
    row = row or {}
    return Me(
        who.user_id, who.tenant_id, who.role, row.get("email"), row.get("display_name"),
        row.get("tenant_name"), row.get("plan"),
    )  # fmt: skip


auth_router = Router(path="/v1/auth", route_handlers=[signup, login, refresh], tags=["accounts"])
me_router = Router(
    path="/v1",
    route_handlers=[me],
    tags=["accounts"],
    dependencies={"who": Provide(caller)},
)
