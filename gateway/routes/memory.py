"""What the agent remembers: facts it proposed (its ``remember`` tool) wait here for the
owner; only approved ones reach its context (``domain.agent.facts_turn``).

- ``GET /v1/memory/facts?status=proposed|approved|forgotten&conversation_id=&limit=`` —
  newest first.
- ``POST /v1/memory/facts`` ``{"text", "conversation_id"?}`` — a fact the owner writes
  (approved at once); without ``conversation_id`` it holds in every conversation.
- ``POST /v1/memory/facts/{id}/approve`` ``{"text"?}`` — approve a proposal, reworded or not.
- ``DELETE /v1/memory/facts/{id}`` — turn a proposal down, or make the agent forget a fact.

Owner or admin, like changing an agent.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from domain import events as ev
from domain import ids
from domain.agent import MAX_FACT_CHARS
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import Limit, MinSeq
from projections import agents_queries, inbox_queries
from projections.agents_queries import Fact


class FactBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    conversation_id: str | None = None


class FactApproval(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str | None = None  # reworded; without it, as proposed


class FactAccepted(msgspec.Struct, frozen=True):
    fact_id: str
    status: Literal["approved", "forgotten"]
    event_id: str
    seq: int


def _may_decide(who: Caller) -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(
            403, "forbidden", "Only the inbox's owner or an admin decides what the agent remembers."
        )


def _fact_text(text: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned or len(cleaned) > MAX_FACT_CHARS:
        raise ApiError(
            400, "invalid_request", f"text is one fact of 1-{MAX_FACT_CHARS} characters.", field="text"
        )
    return cleaned


async def _fact(ctx: GatewayContext, who: Caller, fact_id: str) -> Fact:
    async with ctx.tenant(who.tenant_id) as conn:
        found = await agents_queries.fact(conn, fact_id)
    if found is None or found.status == "forgotten":
        raise ApiError(404, "not_found", f"No fact {fact_id} in your agent's memory.", field="id")
    return found


async def _approve(
    ctx: GatewayContext, who: Caller, fact_id: str, text: str, conversation_id: str | None
) -> FactAccepted:
    approved = ev.new_event(
        ev.MemoryFactApproved, tenant_id=who.tenant_id, aggregate_id=who.tenant_id,
        actor=f"user:{who.user_id}",
        data=ev.MemoryFactApprovedData(fact_id=fact_id, text=text, conversation_id=conversation_id),
    )  # fmt: skip
    appended = await ctx.store.append(approved)
    return FactAccepted(fact_id, "approved", appended.event_id, appended.seq)


@get("/memory/facts")
async def list_facts(
    ctx: Ctx,
    who: Who,
    status: FromQuery[Literal["proposed", "approved", "forgotten"] | None] = None,
    conversation_id: FromQuery[str | None] = None,
    limit: Limit = 50,
    min_seq: MinSeq = None,
) -> list[Fact]:
    """What the agent remembers or asks to, newest first."""
    await ctx.wait_for(min_seq, ("agents",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await agents_queries.facts(conn, status=status, conversation_id=conversation_id, limit=limit)


@post("/memory/facts", status_code=202)
async def add_fact(ctx: Ctx, who: Who, data: JSONBody[FactBody]) -> FactAccepted:
    """A fact you tell the agent (approved at once), about one conversation or all of them."""
    _may_decide(who)
    text = _fact_text(data.text)
    if data.conversation_id is not None:
        async with ctx.tenant(who.tenant_id) as conn:
            if await inbox_queries.conversation(conn, who.tenant_id, data.conversation_id) is None:
                raise ApiError(
                    404, "not_found", f"No conversation {data.conversation_id} in your inbox.",
                    field="conversation_id",
                )  # fmt: skip
    return await _approve(ctx, who, ids.new_id(ids.FACT), text, data.conversation_id)


@post("/memory/facts/{fact_id:str}/approve", status_code=202)
async def approve_fact(
    ctx: Ctx, who: Who, fact_id: FromPath[str], data: JSONBody[FactApproval]
) -> FactAccepted:
    """Let the agent use what it proposed to remember, as proposed or reworded."""
    _may_decide(who)
    found = await _fact(ctx, who, fact_id)
    text = _fact_text(data.text) if data.text is not None else found.text
    return await _approve(ctx, who, fact_id, text, found.conversation_id)


@delete("/memory/facts/{fact_id:str}", status_code=202)
async def forget_fact(ctx: Ctx, who: Who, fact_id: FromPath[str]) -> FactAccepted:
    """Turn a proposal down, or make the agent forget a fact."""
    _may_decide(who)
    await _fact(ctx, who, fact_id)
    forgotten = ev.new_event(
        ev.MemoryFactForgotten, tenant_id=who.tenant_id, aggregate_id=who.tenant_id,
        actor=f"user:{who.user_id}", data=ev.MemoryFactForgottenData(fact_id=fact_id),
    )  # fmt: skip
    appended = await ctx.store.append(forgotten)
    return FactAccepted(fact_id, "forgotten", appended.event_id, appended.seq)


memory_router = Router(
    path="/v1",
    route_handlers=[list_facts, add_fact, approve_fact, forget_fact],
    tags=["agents"],
    dependencies={"who": Provide(caller)},
)
