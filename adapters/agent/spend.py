"""Model spend: the ``usage.recorded`` events a model call (an agent run, or a preview in the
gateway) adds to it (what a tenant has spent is ``projections.usage_queries.plan_and_spend``),
and the warning when a call was charged for a model the price catalog does not know."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from domain import agent
from domain import events as ev
from domain.models import price_of

log = structlog.get_logger()


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


def warn_if_unpriced(model: str, cost_micros: int, **source: str) -> None:
    """Log ``model_price_unknown`` when the catalog does not know ``model``: the call was
    charged ``cost_micros`` at the highest known price (``source``: the tenant and the run
    or preview)."""
    _, known = price_of(model)
    if not known:
        log.warning("model_price_unknown", model=model, **source, cost_micros=cost_micros)
