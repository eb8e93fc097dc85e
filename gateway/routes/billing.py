"""The inbox's plan: what it allows, what is used, and the plans it can move to
(``GET /v1/billing``)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar import Router, get
from litestar.di import Provide

from domain import plans
from gateway.context import Ctx, Who, caller
from gateway.plan_limits import counts, plan_catalog
from projections import usage_queries

_COUNTED: tuple[plans.LimitName, ...] = ("cloud_channels", "bridge_channels", "agents", "seats")


class LimitUse(msgspec.Struct, frozen=True):
    limit: str
    allowed: int | None  # None: no limit
    used: int
    over: bool  # more than the plan allows (after a downgrade): they keep working, none can be added


class AiUse(msgspec.Struct, frozen=True):
    allowance_micros: int | None  # a month's AI spend included (None: not metered: your own key)
    spent_this_month_micros: int
    daily_ceiling_micros: int | None
    spent_today_micros: int


class PlanOffer(msgspec.Struct, frozen=True):
    plan: str
    name: str
    monthly_price_cents: int
    summary: str
    limits: plans.Limits


class Billing(msgspec.Struct, frozen=True):
    plan: str
    name: str
    monthly_price_cents: int
    billing: str  # "off": plans are set by an operator (moltbot tenants set-plan)
    limits: list[LimitUse]
    ai: AiUse
    history_days: int | None
    models: tuple[str, ...] | None
    upgrade: str | None  # the next plan up, if any
    plans: list[PlanOffer]


@get("/billing", cache=False)
async def billing(ctx: Ctx, who: Who) -> Billing:
    """Your plan, its limits with what you use of them, and the plans on offer."""
    catalog = plan_catalog(ctx)
    plan, used = await counts(ctx, who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        spend = await usage_queries.plan_and_spend(conn, who.tenant_id, datetime.now(UTC))
    spec = catalog.spec(plan)
    limits = spec.limits
    uses = []
    for limit in _COUNTED:
        allowed = getattr(limits, limit)
        uses.append(LimitUse(limit, allowed, used[limit], allowed is not None and used[limit] > allowed))
    ai = AiUse(
        limits.ai_allowance_micros, spend.month_micros, limits.daily_ai_ceiling_micros, spend.today_micros
    )
    order = catalog.upgrade_order
    upgrade = next(iter(order[order.index(plan) + 1 :]), None) if plan in order else order[1]
    offers = [
        PlanOffer(key, p.name, p.monthly_price_cents, p.summary, p.limits)
        for key, p in catalog.plans.items()
        if p.listed
    ]
    return Billing(
        plan=plans.catalog_name(catalog, plan), name=spec.name, monthly_price_cents=spec.monthly_price_cents,
        billing="off", limits=uses, ai=ai, history_days=limits.history_days, models=limits.models,
        upgrade=upgrade, plans=offers,
    )  # fmt: skip


billing_router = Router(
    path="/v1", route_handlers=[billing], tags=["billing"], dependencies={"who": Provide(caller)}
)
