"""Queries on the usage read model (``projections/usage.py``): metered usage per day, and
model spend against the plan. Each takes a connection already in a tenant's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.postgres.database import Connection
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


async def plan_and_spend(conn: Connection, tenant_id: str, now: datetime) -> tuple[str, int]:
    """The tenant's plan and its model spend this calendar month (micro-dollars)."""
    month = now.astimezone(UTC).date().replace(day=1)
    plan = await tenants_queries.plan(conn, tenant_id)
    cur = await conn.execute(
        "SELECT coalesce(sum(quantity), 0) AS spent FROM rm_usage.usage_daily"
        " WHERE metric = 'cost_micros' AND day >= %s",
        (month,),
    )
    spent = await cur.fetchone()
    return (plan if plan is not None else "free"), int(spent["spent"] if spent else 0)
