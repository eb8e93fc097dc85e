"""Holding what a person does to their inbox's plan (``domain/plans.py`` decides): one more
channel, device channel or agent, another model. Over the plan: ``402 plan_limit`` with
``limit``, ``used``, ``allowed``, ``plan`` and the ``upgrade`` that would allow it (None:
no plan does), in a sentence a person understands.

Downgrades delete nothing: what is over the new plan's limits keeps working; only adding
more is refused (which ones are over is on ``GET /v1/billing``).
"""

from __future__ import annotations

from typing import Any

from domain import plans
from gateway import one_time_tokens
from gateway.auth import Caller
from gateway.context import GatewayContext
from gateway.errors import ApiError
from projections import agents_queries, connections_queries, tenants_queries


def plan_catalog(ctx: GatewayContext) -> plans.Catalog:
    if ctx.catalog is None:
        raise RuntimeError("this gateway was started without its plan catalog (plans.yaml)")
    return ctx.catalog


def refusal(over: plans.OverLimit) -> ApiError:
    extra: dict[str, Any] = {
        "limit": over.limit, "used": over.used, "allowed": over.allowed, "plan": over.plan,
        "upgrade": over.upgrade,
    }  # fmt: skip
    return ApiError(402, "plan_limit", over.detail, extra=extra)


async def counts(ctx: GatewayContext, tenant_id: str) -> tuple[str, dict[str, int]]:
    """The inbox's plan and what it counts against its limits now."""
    async with ctx.tenant(tenant_id) as conn:
        plan = await tenants_queries.plan(conn, tenant_id) or plans.DEFAULT_PLAN
        channels = await connections_queries.channels(conn, tenant_id)
        agents = await agents_queries.agents(conn)
        people = await tenants_queries.members(conn, tenant_id)
    async with ctx.pool.connection() as conn:
        invited = await one_time_tokens.invitations(conn, tenant_id)
    return plan, {
        "cloud_channels": sum(1 for c in channels if c.mode == "cloud" and c.channel != "webchat"),
        "bridge_channels": sum(1 for c in channels if c.mode == "bridge"),
        "agents": len(agents),
        "seats": len(people) + len(invited),  # open invitations hold a seat
    }


async def ensure_room(ctx: GatewayContext, who: Caller, limit: plans.LimitName) -> None:
    """Refuse (402) one more of ``limit`` beyond the plan."""
    plan, used = await counts(ctx, who.tenant_id)
    over = plans.check_count(plan_catalog(ctx), plan, limit, used[limit])
    if over is not None:
        raise refusal(over)


async def ensure_model(ctx: GatewayContext, who: Caller, model: str) -> None:
    """Refuse (402) a model the plan's agents may not use."""
    async with ctx.tenant(who.tenant_id) as conn:
        plan = await tenants_queries.plan(conn, who.tenant_id)
    over = plans.check_model(plan_catalog(ctx), plan, model)
    if over is not None:
        raise refusal(over)
