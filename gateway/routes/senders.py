"""Who the agent answers in direct messages: the senders a connection's DM policy
(``pairing`` or ``allowlist``, set with ``PATCH /v1/channels/{id}``) asks the owner about.

- ``GET /v1/channels/{id}/senders?status=pending`` — who wants to talk (or was approved,
  or blocked), the latest first.
- ``POST /v1/channels/{id}/senders/{sender_id}/approve`` — the agent answers them
  (``connection.sender_approved``); also for a sender who never wrote (an allowlist).
- ``POST /v1/channels/{id}/senders/{sender_id}/block`` — it never does
  (``connection.sender_blocked``); their messages are still stored.
- ``POST /v1/pairing/approve`` ``{"code"}`` — approve whoever was sent that code
  (``K7QW-M3XP``; any case, with or without the dash).

Only the owner or an admin decides, like connecting a channel.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from domain import agent as policy
from domain import events as ev
from gateway.audit_log import note
from gateway.auth import Caller
from gateway.connections import may_connect
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.routes.channels import channel_or_404
from gateway.routes.inbox import Limit, MinSeq
from projections import connections_queries
from projections.connections_queries import Sender

MAX_SENDER_ID = 256
AnyRequest = Request[Any, Any, Any]


class SenderDecided(msgspec.Struct, frozen=True):
    connection_id: str
    sender_id: str
    status: Literal["approved", "blocked"]
    event_id: str
    seq: int


class CodeApproval(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str


@get("/channels/{connection_id:str}/senders")
async def list_senders(
    ctx: Ctx,
    who: Who,
    connection_id: FromPath[str],
    status: FromQuery[Literal["pending", "approved", "blocked"] | None] = None,
    limit: Limit = 50,
    min_seq: MinSeq = None,
) -> list[Sender]:
    """The channel's senders who asked to talk or were decided on, the latest first."""
    await ctx.wait_for(min_seq, ("connections",), who.tenant_id)
    await channel_or_404(ctx, who, connection_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await connections_queries.senders(conn, connection_id, status=status, limit=limit)


async def _decide(
    ctx: GatewayContext,
    who: Caller,
    request: Request[Any, Any, Any],
    connection_id: str,
    sender_id: str,
    status: Literal["approved", "blocked"],
    via: Literal["inbox", "code"] = "inbox",
) -> SenderDecided:
    may_connect(who)
    if not sender_id.strip() or len(sender_id) > MAX_SENDER_ID:
        raise ApiError(
            400, "invalid_request", "sender_id is the channel's id of the person.", field="sender_id"
        )
    await channel_or_404(ctx, who, connection_id)
    cls = ev.ConnectionSenderApproved if status == "approved" else ev.ConnectionSenderBlocked
    decided = ev.new_event(
        cls, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=f"user:{who.user_id}",
        data=ev.ConnectionSenderDecidedData(sender_id=sender_id, via=via),
    )  # fmt: skip
    appended = await ctx.store.append(decided)
    await note(
        ctx, request, who.tenant_id, f"channel.sender_{status}", actor=f"user:{who.user_id}",
        target=connection_id, detail={"via": via},
    )  # fmt: skip
    return SenderDecided(connection_id, sender_id, status, appended.event_id, appended.seq)


@post("/channels/{connection_id:str}/senders/{sender_id:str}/approve", status_code=202)
async def approve_sender(
    ctx: Ctx, who: Who, connection_id: FromPath[str], sender_id: FromPath[str], request: AnyRequest
) -> SenderDecided:
    """The agent answers this sender's direct messages on the channel from now on."""
    return await _decide(ctx, who, request, connection_id, sender_id, "approved")


@post("/channels/{connection_id:str}/senders/{sender_id:str}/block", status_code=202)
async def block_sender(
    ctx: Ctx, who: Who, connection_id: FromPath[str], sender_id: FromPath[str], request: AnyRequest
) -> SenderDecided:
    """The agent never answers this sender on the channel (their messages are still stored)."""
    return await _decide(ctx, who, request, connection_id, sender_id, "blocked")


@post("/pairing/approve", status_code=202)
async def approve_by_code(
    ctx: Ctx, who: Who, data: JSONBody[CodeApproval], request: Request[Any, Any, Any]
) -> SenderDecided:
    """Approve whoever the agent sent ``code`` (they passed it on to you)."""
    may_connect(who)
    code = policy.normalized_code(data.code)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await connections_queries.sender_by_code(conn, who.tenant_id, code)
    if found is None:
        raise ApiError(
            404, "not_found", f"No one waiting was sent the code {code!r}: check it, or approve them"
            " from the inbox.", field="code",
        )  # fmt: skip
    return await _decide(ctx, who, request, found.connection_id, found.sender_id, "approved", via="code")


senders_router = Router(
    path="/v1",
    route_handlers=[list_senders, approve_sender, block_sender, approve_by_code],
    tags=["channels"],
    dependencies={"who": Provide(caller)},
)
