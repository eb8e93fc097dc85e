"""Model spend: the ``usage.recorded`` events a model call (an agent run, or a preview in the
gateway) adds to it (what a tenant has spent is ``projections.usage_queries.plan_and_spend``)."""

from __future__ import annotations

from datetime import UTC, datetime

from domain import agent
from domain import events as ev


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
