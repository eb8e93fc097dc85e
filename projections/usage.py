"""Read model: metered usage per tenant, day and metric, summed from ``usage.recorded``
(tokens, cost, agent runs) and counted from the messages themselves (``messages_in`` per
``message.received``, ``messages_out`` per ``message.sent``) — the log already says how
many there were, so no separate usage event is written for them."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from adapters.postgres.database import Connection
from domain import events as ev
from domain.events import Event
from projections.base import Batch, Rejected

SCHEMA = """
CREATE TABLE usage_daily (
    tenant_id text   NOT NULL,
    day       date   NOT NULL,
    metric    text   NOT NULL,
    quantity  bigint NOT NULL,
    events    integer NOT NULL,
    PRIMARY KEY (tenant_id, day, metric)
);
"""

UPSERT = """
INSERT INTO usage_daily (tenant_id, day, metric, quantity, events) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, day, metric) DO UPDATE
SET quantity = usage_daily.quantity + EXCLUDED.quantity, events = usage_daily.events + EXCLUDED.events
"""


class UsageBatch:
    def __init__(self) -> None:
        self._sums: defaultdict[tuple[str, date, str], list[int]] = defaultdict(lambda: [0, 0])

    def add(self, seq: int, event: Event) -> None:
        if isinstance(event, ev.MessageReceived | ev.MessageSent):
            metric = "messages_in" if isinstance(event, ev.MessageReceived) else "messages_out"
            key = (event.tenant_id, event.occurred_at.date(), metric)
            self._sums[key][0] += 1
            self._sums[key][1] += 1
            return
        assert isinstance(event, ev.UsageRecorded)
        if event.data.quantity < 0:
            raise Rejected(f"usage quantity must not be negative, got {event.data.quantity}")
        key = (event.tenant_id, event.occurred_at.date(), event.data.metric)
        self._sums[key][0] += event.data.quantity
        self._sums[key][1] += 1

    async def write(self, conn: Connection) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(UPSERT, [(*key, total, n) for key, (total, n) in self._sums.items()])


class UsageProjection:
    name: str = "usage"
    version: int = 3  # 2: row-level security on every table; 3: message counts
    tables: tuple[str, ...] = ("usage_daily",)
    handles: frozenset[str] = frozenset({"usage.recorded", "message.received", "message.sent"})

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return ""

    def new_batch(self) -> Batch:
        return UsageBatch()
