"""The inbox's plan (``GET /v1/billing``: its limits with their use, the plans on offer) and
paying for one with Stripe (docs/billing.md).

``POST /v1/billing/checkout`` ``{"plan"}`` (the owner) answers the URL of a Stripe Checkout
Session for the plan's price; the inbox's Stripe customer is made the first time and kept.
``POST /v1/billing/portal`` (the owner) answers the URL of Stripe's Customer Portal, where the
subscription is changed, paid or cancelled. ``POST /v1/webhooks/stripe`` is where Stripe posts
what happened: the signature is checked before anything is stored, each Stripe event is handled
once, and the subscription is read back from Stripe to decide the plan (adapters/billing).

Without Stripe settings billing is off: checkout and portal answer ``503 billing_off`` and an
operator sets plans (``moltbot tenants set-plan``). :func:`subscription_of` is what the billing
page shows of an inbox's subscription.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Router, get, post
from litestar.di import Provide
from litestar.params import JSONBody

from adapters.billing import subscriptions
from adapters.billing.stripe_billing import StripeBilling
from domain import billing, ids, plans
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.plan_limits import counts, plan_catalog
from gateway.routes.recovery import ensure_verified
from projections import tenants_queries, usage_queries

BILLING_SQL = subscriptions.BILLING_SQL
BILLING_OFF = (
    "Billing is off on this deployment (no MOLTBOT_STRIPE_* settings): an operator sets an"
    " inbox's plan with `moltbot tenants set-plan TENANT PLAN`."
)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class CheckoutBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    plan: str


class CheckoutView(msgspec.Struct, frozen=True):
    url: str  # Stripe's payment page: open it in the browser
    session_id: str


class PortalView(msgspec.Struct, frozen=True):
    url: str  # Stripe's Customer Portal for this inbox


class WebhookAnswer(msgspec.Struct, frozen=True):
    received: bool
    outcome: str  # applied | unchanged | ignored | replayed


class SubscriptionView(msgspec.Struct, frozen=True):
    """An inbox's Stripe subscription as last read back from Stripe."""

    status: str | None  # Stripe's (active, trialing, past_due, canceled, …); None: not subscribed yet
    plan: str | None  # the inbox's plan after Stripe's last word
    current_period_end: datetime | None
    cancel_at_period_end: bool  # paid until current_period_end, then free
    grace_until: datetime | None  # past due: the plan is kept until then while Stripe retries
    portal: bool  # POST /v1/billing/portal opens Stripe's Customer Portal for it


def billing_on(ctx: GatewayContext) -> StripeBilling:
    """The deployment's Stripe account, or ``503 billing_off``."""
    if ctx.billing is None:
        raise ApiError(503, "billing_off", BILLING_OFF)
    return ctx.billing


def _owner(who: Caller) -> None:
    if who.role != "owner":
        raise ApiError(403, "forbidden", "Only the inbox's owner can manage its plan and payment.")


def _public(ctx: GatewayContext, request: Request[Any, Any, Any]) -> str:
    return (ctx.public_url or str(request.base_url)).rstrip("/")


def _request_key(request: Request[Any, Any, Any]) -> str:
    """The client's Idempotency-Key (a retry gets the same session), else a new id."""
    given = request.headers.get("idempotency-key", "").strip()
    if given and len(given) <= 64 and set(given) <= _KEY_CHARS:
        return given
    return ids.ulid()


@post("/billing/checkout", status_code=200)
async def checkout(
    ctx: Ctx, who: Who, data: JSONBody[CheckoutBody], request: Request[Any, Any, Any]
) -> CheckoutView:
    """A Stripe Checkout page to pay for ``plan`` (the owner): open ``url``; the plan changes
    when Stripe confirms the payment."""
    stripe = billing_on(ctx)
    _owner(who)
    await ensure_verified(ctx, who, "paying for a plan")
    if data.plan not in stripe.prices:
        sold = ", ".join(sorted(stripe.prices))
        raise ApiError(
            400,
            "invalid_request",
            f"{data.plan!r} is not a plan you can buy here: choose {sold}.",
            field="plan",
        )
    async with ctx.tenant(who.tenant_id) as conn:
        account = await tenants_queries.account(conn, who.tenant_id, who.user_id)
    customer = await subscriptions.ensure_customer(
        ctx.pool,
        stripe,
        who.tenant_id,
        email=account.email if account else None,
        name=account.tenant_name if account else None,
    )
    if customer.standing.status in billing.LIVE:
        raise ApiError(
            409,
            "subscribed",
            f"This inbox pays for {customer.standing.plan} already: change or cancel the plan in the"
            " billing portal (POST /v1/billing/portal).",
            field="plan",
        )
    assert customer.customer_id is not None
    public = _public(ctx, request)
    session = await stripe.checkout(
        tenant_id=who.tenant_id,
        customer_id=customer.customer_id,
        plan=data.plan,
        success_url=f"{public}/?billing=success&session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{public}/?billing=canceled",
        idempotency_key=f"moltbot-checkout-{who.tenant_id}-{data.plan}-{_request_key(request)}",
    )
    return CheckoutView(session.url, session.id)


@post("/billing/portal", status_code=200)
async def portal(ctx: Ctx, who: Who, request: Request[Any, Any, Any]) -> PortalView:
    """Stripe's Customer Portal for this inbox (the owner): change the plan or the card,
    see invoices, cancel."""
    stripe = billing_on(ctx)
    _owner(who)
    await ensure_verified(ctx, who, "managing billing")
    async with ctx.pool.connection() as conn:
        customer = await subscriptions.customer_of(conn, who.tenant_id)
    if customer is None or customer.customer_id is None:
        raise ApiError(
            409,
            "no_customer",
            "This inbox has not paid with Stripe yet, so there is no billing portal: subscribe first"
            " (POST /v1/billing/checkout).",
        )
    url = await stripe.portal(
        customer_id=customer.customer_id,
        return_url=f"{_public(ctx, request)}/?billing=portal",
        idempotency_key=f"moltbot-portal-{who.tenant_id}-{_request_key(request)}",
    )
    return PortalView(url)


@post("/webhooks/stripe", status_code=200, include_in_schema=False)
async def stripe_webhook(ctx: Ctx, request: Request[Any, Any, Any]) -> WebhookAnswer:
    """Stripe's deliveries (signed with MOLTBOT_STRIPE_WEBHOOK_SECRET): checked, then each
    Stripe event handled once. A static path: it is matched before ``/webhooks/{kind}``."""
    stripe = billing_on(ctx)
    event = stripe.verify(await request.body(), request.headers.get("stripe-signature"))
    handled = await subscriptions.StripeEvents(ctx.pool, ctx.store, stripe).apply(event)
    return WebhookAnswer(received=True, outcome=handled.outcome)


async def subscription_of(ctx: GatewayContext, tenant_id: str) -> SubscriptionView | None:
    """The inbox's Stripe subscription for the billing page, or None when it never went to
    Stripe's checkout. Billing is on when ``ctx.billing is not None``."""
    async with ctx.pool.connection() as conn:
        customer = await subscriptions.customer_of(conn, tenant_id)
    if customer is None or customer.customer_id is None:
        return None
    standing = customer.standing
    return SubscriptionView(
        status=standing.status,
        plan=standing.plan,
        current_period_end=standing.current_period_end,
        cancel_at_period_end=standing.cancel_at_period_end,
        grace_until=standing.grace_until,
        portal=ctx.billing is not None,
    )


# --- GET /v1/billing: the plan, its limits with their use, the plans on offer -----------------

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
    # The agent answers with its short "allowance used up" note until then (None: it answers).
    paused_until: str | None = None


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
    billing: str  # "stripe", or "off": plans are set by an operator (moltbot tenants set-plan)
    limits: list[LimitUse]
    ai: AiUse
    history_days: int | None
    models: tuple[str, ...] | None
    upgrade: str | None  # the next plan up, if any
    plans: list[PlanOffer]
    subscription: SubscriptionView | None  # with Stripe: the inbox's subscription, once it has one


@get("/billing", cache=False)
async def billing_page(ctx: Ctx, who: Who) -> Billing:
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
        limits.ai_allowance_micros,
        spend.month_micros,
        limits.daily_ai_ceiling_micros,
        spend.today_micros,
        paused_until=plans.ai_paused_until(catalog, spend, datetime.now(UTC)),
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
        billing="stripe" if ctx.billing is not None else "off", limits=uses, ai=ai,
        history_days=limits.history_days, models=limits.models, upgrade=upgrade, plans=offers,
        subscription=await subscription_of(ctx, who.tenant_id),
    )  # fmt: skip


billing_router = Router(
    path="/v1",
    route_handlers=[billing_page, checkout, portal, stripe_webhook],
    tags=["billing"],
    dependencies={"who": Provide(caller)},
)
