"""Queries on the usage read model (``projections/usage.py``): metered usage per day, and
model spend against the plan. Each takes a connection already in a tenant's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.postgres.database import Connection
from domain.plans import Spend
from projections import tenants_queries


class UsageDay(msgspec.Struct, frozen=True):
    day: str
    metric: str
    quantity: int


async def usage_days(conn: Connection, tenant_id: str, days: int) -> list[UsageDay]:
    """Usage per day and metric over the last ``days`` days, most recent first."""
    cur = await conn.execute(
        "SELECT day::text AS day, metric, quantity FROM rm_usage.usage_daily WHERE tenant_id = %s"
        " AND day > current_date - %s ORDER BY day DESC, metric",
        (tenant_id, days),
    )
    return [msgspec.convert(r, UsageDay) for r in await cur.fetchall()]


async def plan_and_spend(conn: Connection, tenant_id: str, now: datetime) -> Spend:
    """The tenant's plan and its model spend this calendar month and today (micro-dollars)."""
    today = now.astimezone(UTC).date()
    plan = await tenants_queries.plan(conn, tenant_id)
    cur = await conn.execute(
        "SELECT coalesce(sum(quantity), 0) AS month,"
        " coalesce(sum(quantity) FILTER (WHERE day = %s), 0) AS today FROM rm_usage.usage_daily"
        " WHERE metric = 'cost_micros' AND day >= %s",
        (today, today.replace(day=1)),
    )
    spent = await cur.fetchone()
    month, day = (int(spent["month"]), int(spent["today"])) if spent else (0, 0)
    return Spend(plan if plan is not None else "free", month, day)


# What an inbox's own export holds of this read model (gateway/export.py).
EXPORT_USAGE = "SELECT day, metric, quantity, events FROM rm_usage.usage_daily ORDER BY day, metric"
