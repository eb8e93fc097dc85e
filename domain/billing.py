"""What a Stripe subscription means for an inbox's plan (pure: no I/O).

Stripe is the system of record for subscriptions; the product never trusts the order of
Stripe's events. On each one it reads the subscription again and decides from its status
and price alone, with :func:`decide`. :func:`follows` says which of a customer's
subscriptions decides the plan, and :func:`parse_prices` reads ``MOLTBOT_STRIPE_PRICES``.
:func:`overage_by_day`, :func:`metered_allowance` and :func:`meter_window` decide the AI
overage that the billing worker reports to Stripe (``adapters/billing/metering.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import msgspec

from domain.plans import Catalog

# Stripe's subscription statuses, by what they mean for the plan.
PAID = frozenset({"active", "trialing"})  # the plan its price names
LATE = frozenset({"past_due"})  # the paid plan while Stripe retries the payment (grace)
ENDED = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})  # back to free
# "incomplete" (the first payment is not made yet) and statuses Stripe may add change nothing.
LIVE = PAID | LATE

FREE = "free"
# How long a past-due subscription keeps its plan, as shown to people: Stripe's default retry
# schedule (Smart Retries) gives up within two weeks, then cancels (or marks unpaid) → free.
GRACE_PERIOD = timedelta(days=14)

Reason = Literal["paid", "past_due", "ended", "unknown_price", "pending"]


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A Stripe subscription as read back from Stripe (never from the event that named it)."""

    id: str
    customer_id: str
    status: str
    price_id: str | None  # the first item's price
    cancel_at_period_end: bool = False
    current_period_end: datetime | None = None  # the first item's (Stripe keeps it per item)
    tenant_hint: str | None = None  # metadata.tenant_id, as the product set it at checkout


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """What the product last recorded of an inbox's subscription (billing.customers)."""

    subscription_id: str | None = None
    status: str | None = None
    plan: str | None = None
    price_id: str | None = None
    cancel_at_period_end: bool = False
    current_period_end: datetime | None = None
    grace_until: datetime | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The inbox's plan from a subscription: ``plan`` None leaves the plan as it is."""

    plan: str | None
    grace_until: datetime | None
    reason: Reason


def parse_prices(text: str, paid_plans: Collection[str]) -> dict[str, str]:
    """``pro=price_…,team=price_…`` as {plan: price id}; ValueError says what is wrong."""
    prices: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        plan, sep, price = (piece.strip() for piece in item.partition("="))
        if not sep or not plan or not price:
            raise ValueError(f"MOLTBOT_STRIPE_PRICES: {item!r} is not plan=price_id")
        if plan not in paid_plans:
            known = ", ".join(sorted(paid_plans)) or "none"
            raise ValueError(f"MOLTBOT_STRIPE_PRICES: {plan!r} is not a paid plan of plans.yaml ({known})")
        if plan in prices:
            raise ValueError(f"MOLTBOT_STRIPE_PRICES names {plan!r} twice")
        if price in prices.values():
            raise ValueError(f"MOLTBOT_STRIPE_PRICES gives {price!r} to two plans")
        prices[plan] = price
    if not prices:
        raise ValueError("MOLTBOT_STRIPE_PRICES is empty: give each paid plan its price, pro=price_…")
    return prices


def plan_of_price(prices: Mapping[str, str], price_id: str | None) -> str | None:
    """The plan whose Stripe price is ``price_id`` ({plan: price id}), or None."""
    return next((plan for plan, price in prices.items() if price == price_id), None)


def decide(
    subscription: Subscription, prices: Mapping[str, str], previous: Standing | None, now: datetime
) -> Decision:
    """The plan a subscription gives, from its current status and price.

    Active or trialing with a known price: that plan. Past due: the same plan until
    ``grace_until`` (kept from when it first fell due). Canceled, unpaid, expired or paused:
    free. Incomplete, or a price this deployment does not sell: the plan stays as it is.
    ``cancel_at_period_end`` changes nothing: Stripe ends the subscription at the period's end.
    """
    plan = plan_of_price(prices, subscription.price_id)
    if subscription.status in ENDED:
        return Decision(plan=FREE, grace_until=None, reason="ended")
    if subscription.status in PAID:
        return Decision(plan=plan, grace_until=None, reason="paid" if plan else "unknown_price")
    if subscription.status in LATE:
        same = previous is not None and previous.subscription_id == subscription.id
        kept = previous.grace_until if same and previous is not None else None
        return Decision(plan=plan, grace_until=kept or now + GRACE_PERIOD, reason="past_due")
    return Decision(plan=None, grace_until=None, reason="pending")


def follows(previous: Standing | None, subscription: Subscription) -> bool:
    """Whether ``subscription`` decides the inbox's plan: the one it follows, or a newer live
    one. A subscription that is not live never displaces a live one (an old canceled one's
    late events change nothing)."""
    if previous is None or previous.subscription_id in (None, subscription.id):
        return True
    if previous.status in LIVE:
        return subscription.status in LIVE
    return True


def standing(subscription: Subscription, decision: Decision, plan: str | None) -> Standing:
    """What to record of ``subscription`` after ``decision``; ``plan`` is the inbox's plan now."""
    return Standing(
        subscription_id=subscription.id,
        status=subscription.status,
        plan=plan,
        price_id=subscription.price_id,
        cancel_at_period_end=subscription.cancel_at_period_end,
        current_period_end=subscription.current_period_end,
        grace_until=decision.grace_until,
    )


# --- Metered overage: AI spend beyond a paid plan's monthly allowance (adapters/billing/metering.py)

OVERAGE_METRIC = "cost_micros"  # the usage read model's metric of AI spend (micro-dollars)
# Stripe takes a meter event whose timestamp is at most 35 days old: one day of margin.
METER_WINDOW = timedelta(days=34)
# A day is reported this long after it ends (UTC), so usage recorded at 23:59 is folded first.
SETTLE = timedelta(minutes=10)


def overage_by_day(spent: Mapping[date, int], allowance_micros: int) -> dict[date, int]:
    """Each day's share of the spend beyond a month's allowance: for day d of a calendar
    month, max(0, spent that month through d - allowance) - max(0, through d - 1 - allowance).
    ``spent`` is the spend (micro-dollars) per day, over any months (days left out spent
    nothing); the answer holds only the days with a share above zero. The shares of a month
    add up to its whole overage, and no day's depends on a later day's spend."""
    overage: dict[date, int] = {}
    month_to_date: dict[tuple[int, int], int] = {}
    for day in sorted(spent):
        if spent[day] < 0:
            raise ValueError(f"the spend of {day} is negative ({spent[day]})")
        month = (day.year, day.month)
        before = month_to_date.get(month, 0)
        after = before + spent[day]
        month_to_date[month] = after
        share = max(0, after - allowance_micros) - max(0, before - allowance_micros)
        if share > 0:
            overage[day] = share
    return overage


def metered_allowance(catalog: Catalog, plan: str | None) -> int | None:
    """The monthly AI allowance beyond which ``plan``'s spend is billed as overage; None for a
    plan that costs nothing or has no allowance (free, byok): nothing of it is metered."""
    spec = catalog.spec(plan)
    if plan not in catalog.plans or spec.monthly_price_cents <= 0:
        return None
    return spec.limits.ai_allowance_micros


def meter_window(now: datetime) -> tuple[date, date]:
    """The first and last day to report at ``now``: the closed (and settled) UTC days of this
    month and the previous one that Stripe still takes."""
    today = now.astimezone(UTC).date()
    last = (now.astimezone(UTC) - SETTLE).date() - timedelta(days=1)
    previous_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return max(previous_month, today - METER_WINDOW), last


def meter_identifier(tenant_id: str, day: date, metric: str) -> str:
    """The meter event's identifier (and Idempotency-Key): the same for a tenant-day-metric
    whoever sends it, so Stripe keeps one event however often it is sent."""
    return f"{tenant_id}:{day.isoformat()}:{metric}"


def end_of_day(day: date) -> int:
    """The last second of a UTC day (Unix time): the meter event's timestamp."""
    return int(datetime.combine(day + timedelta(days=1), time(), UTC).timestamp()) - 1
