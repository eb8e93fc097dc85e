"""Model spend: what a tenant has spent this month, and the ``usage.recorded`` events a
model call (an agent run, or a preview in the gateway) adds to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from domain import agent
from domain import events as ev


async def plan_and_spend(conn: AsyncConnection[Any], tenant_id: str, now: datetime) -> tuple[str, int]:
    """The tenant's plan and its model spend this calendar month (micro-dollars), read on
    ``conn`` (a transaction confined to the tenant, rows as dicts)."""
    month = now.astimezone(UTC).date().replace(day=1)
    cur = await conn.execute("SELECT plan FROM rm_tenants.tenants WHERE tenant_id = %s", (tenant_id,))
    tenant = await cur.fetchone()
    cur = await conn.execute(
        "SELECT coalesce(sum(quantity), 0) AS spent FROM rm_usage.usage_daily"
        " WHERE metric = 'cost_micros' AND day >= %s",
        (month,),
    )
    spent = await cur.fetchone()
    return (tenant["plan"] if tenant else "free"), int(spent["spent"] if spent else 0)


def usage_events(
    tenant_id: str,
    source_id: str,
    metrics: list[tuple[ev.UsageMetric, int]],
    *,
    actor: str,
    causation_id: str | None = None,
) -> list[ev.UsageRecorded]:
    """:func:`domain.agent.usage_events` recorded now (the gateway's previews)."""
    return agent.usage_events(
        tenant_id, source_id, metrics, actor=actor, causation_id=causation_id, at=datetime.now(UTC)
    )
