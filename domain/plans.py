"""The plan catalog (``plans.yaml``) and what it allows (pure: no I/O).

Every limit is decided here, from the catalog, the inbox's plan and its counts, so the
gateway's refusals, the billing page and the agent's budget say the same thing. A refusal
(:class:`OverLimit`) names the limit, what is used, what the plan allows, and the cheapest
plan of :attr:`Catalog.upgrade_order` that would allow one more.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Literal

import msgspec

from domain.models import model_family

LimitName = Literal[
    "cloud_channels", "bridge_channels", "seats", "agents", "history_days", "ai_allowance_micros",
    "daily_ai_ceiling_micros", "models", "media_bytes",
]  # fmt: skip
DEFAULT_PLAN = "free"

# What people read for each counted limit: "<n> <noun>".
_NOUNS: dict[str, tuple[str, str]] = {
    "cloud_channels": ("channel", "channels"),
    "bridge_channels": ("channel on your own device", "channels on your own devices"),
    "seats": ("person", "people"),
    "agents": ("agent", "agents"),
}


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a plan allows; None is no limit."""

    cloud_channels: int | None = None  # the website chat is not counted
    bridge_channels: int | None = None
    seats: int | None = None
    agents: int | None = None
    history_days: int | None = None
    ai_allowance_micros: int | None = None  # AI spend included a month (None: not metered here)
    daily_ai_ceiling_micros: int | None = None  # the most AI spend in one day, whatever is left
    models: tuple[str, ...] | None = None  # model families an agent may use (None: any in the catalog)
    media_bytes: int | None = None


class PlanSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    monthly_price_cents: int
    summary: str
    limits: Limits
    listed: bool = True  # offered to people (False: kept for inboxes already on it)


class Catalog(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    plans: dict[str, PlanSpec]
    upgrade_order: tuple[str, ...]

    def __post_init__(self) -> None:
        if DEFAULT_PLAN not in self.plans:
            raise ValueError(f"plans.yaml must have the {DEFAULT_PLAN!r} plan")
        unknown = [plan for plan in self.upgrade_order if plan not in self.plans]
        if unknown:
            raise ValueError(f"upgrade_order names plans that do not exist: {', '.join(unknown)}")

    def spec(self, plan: str | None) -> PlanSpec:
        """The plan's spec; an unknown or missing plan is the default one."""
        return self.plans.get(plan or DEFAULT_PLAN) or self.plans[DEFAULT_PLAN]

    def limits(self, plan: str | None) -> Limits:
        return self.spec(plan).limits

    def upgrade_for(self, plan: str | None, limit: LimitName, wanted: int) -> str | None:
        """The first plan after ``plan`` in the upgrade order whose ``limit`` allows ``wanted``."""
        order = self.upgrade_order
        start = order.index(plan) + 1 if plan in order else 1
        for candidate in order[start:]:
            allowed = getattr(self.limits(candidate), limit)
            if allowed is None or allowed >= wanted:
                return candidate
        return None

    def upgrade_for_model(self, plan: str | None, model: str) -> str | None:
        order = self.upgrade_order
        start = order.index(plan) + 1 if plan in order else 1
        for candidate in order[start:]:
            if model_allowed(self.limits(candidate), model):
                return candidate
        return None


class Spend(msgspec.Struct, frozen=True):
    """An inbox's plan and its AI spend (micro-dollars) this calendar month and today (UTC)."""

    plan: str
    month_micros: int
    today_micros: int


class OverLimit(msgspec.Struct, frozen=True):
    """Why an action goes beyond the plan (the gateway answers it as ``402 plan_limit``)."""

    limit: str
    used: int
    allowed: int
    plan: str
    upgrade: str | None  # the plan that would allow it, if any
    detail: str


def parse_catalog(text: str) -> Catalog:
    """``plans.yaml``'s text as a catalog; ValueError says what is wrong in it."""
    try:
        return msgspec.yaml.decode(text, type=Catalog)
    except msgspec.ValidationError as exc:
        raise ValueError(f"plans.yaml: {exc}") from None


def check_count(catalog: Catalog, plan: str | None, limit: LimitName, used: int) -> OverLimit | None:
    """Whether one more of ``limit`` (a count: channels, agents, seats) fits the plan."""
    allowed = getattr(catalog.limits(plan), limit)
    if allowed is None or used + 1 <= allowed:
        return None
    spec = catalog.spec(plan)
    one, many = _NOUNS.get(limit, (limit, limit))
    upgrade = catalog.upgrade_for(plan, limit, used + 1)
    if allowed == 0:
        detail = f"The {spec.name} plan has no {many}."
    else:
        detail = (
            f"The {spec.name} plan allows {allowed} {one if allowed == 1 else many}, and you have {used}."
        )
    if upgrade is not None:
        detail += f" {catalog.spec(upgrade).name} allows {_allowance(catalog, upgrade, limit, one, many)}."
    return OverLimit(limit, used, allowed, catalog_name(catalog, plan), upgrade, detail)


def catalog_name(catalog: Catalog, plan: str | None) -> str:
    """The plan's key in the catalog (an unknown plan is the default one)."""
    return plan if plan in catalog.plans else DEFAULT_PLAN


def _allowance(catalog: Catalog, plan: str, limit: LimitName, one: str, many: str) -> str:
    allowed = getattr(catalog.limits(plan), limit)
    return f"any number of {many}" if allowed is None else f"{allowed} {one if allowed == 1 else many}"


def model_allowed(limits: Limits, model: str) -> bool:
    """Whether an agent on a plan with ``limits`` may use ``model`` (a family or dated id)."""
    return limits.models is None or model_family(model) in limits.models


def ai_paused_until(catalog: Catalog, spend: Spend, now: datetime) -> str | None:
    """When the agent answers again after its allowance ran out (ISO time, UTC), or None: the
    next day after the daily ceiling, the next month after the monthly allowance."""
    if ai_allowance_left(catalog, spend):
        return None
    limits = catalog.limits(spend.plan)
    today = now.astimezone(UTC).date()
    if limits.ai_allowance_micros is not None and spend.month_micros >= limits.ai_allowance_micros:
        first = today.replace(day=1) + timedelta(days=32)
        return datetime.combine(first.replace(day=1), time(), UTC).isoformat()
    return datetime.combine(today + timedelta(days=1), time(), UTC).isoformat()


def model_for_plan(limits: Limits, model: str) -> str:
    """``model`` if the plan allows it, else the plan's first allowed model: an agent
    configured before a downgrade (or from a template) answers within the plan."""
    return model if model_allowed(limits, model) or not limits.models else limits.models[0]


def check_model(catalog: Catalog, plan: str | None, model: str) -> OverLimit | None:
    limits = catalog.limits(plan)
    if model_allowed(limits, model):
        return None
    spec = catalog.spec(plan)
    upgrade = catalog.upgrade_for_model(plan, model)
    allowed = ", ".join(limits.models or ())
    detail = f"The {spec.name} plan's agents use {allowed}."
    if upgrade is not None:
        detail += f" {catalog.spec(upgrade).name} lets them use {model}."
    return OverLimit("models", 0, 0, catalog_name(catalog, plan), upgrade, detail)


def ai_allowance_left(catalog: Catalog, spend: Spend) -> bool:
    """Whether the plan's AI allowance (and daily ceiling) has room for another run."""
    limits = catalog.limits(spend.plan)
    month = limits.ai_allowance_micros
    day = limits.daily_ai_ceiling_micros
    return (month is None or spend.month_micros < month) and (day is None or spend.today_micros < day)
