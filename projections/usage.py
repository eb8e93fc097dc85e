"""Read model: metered usage per tenant, day and metric, summed from ``usage.recorded``
(tokens, cost, agent runs) and counted from the messages themselves (``messages_in`` per
``message.received``, ``messages_out`` per ``message.sent``) — the log already says how
many there were, so no separate usage event is written for them.

Each thing is metered once: a provider message that arrives again after the log's
duplicate window, or an agent run that records its usage again after a crash, is stored
again under another event id, so ``usage_counted`` remembers what was counted (a message
by its id, a usage record by its source and metric) and a repeat adds nothing."""

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
CREATE TABLE usage_counted (
    tenant_id text NOT NULL,
    key       text NOT NULL,  -- in:<message id>, out:<message id>, <metric>:<source id>
    PRIMARY KEY (tenant_id, key)
);
"""

COUNT_ONCE = """
INSERT INTO usage_counted (tenant_id, key) SELECT * FROM unnest(%s::text[], %s::text[])
ON CONFLICT DO NOTHING RETURNING tenant_id, key
"""

UPSERT = """
INSERT INTO usage_daily (tenant_id, day, metric, quantity, events) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, day, metric) DO UPDATE
SET quantity = usage_daily.quantity + EXCLUDED.quantity, events = usage_daily.events + EXCLUDED.events
"""


Sum = tuple[str, date, str]  # tenant, day, metric


class UsageBatch:
    def __init__(self) -> None:
        self._once: dict[tuple[str, str], tuple[Sum, int]] = {}  # (tenant, key) -> what it adds
        self._always: list[tuple[Sum, int]] = []  # usage with no source: nothing to repeat by
        self._erased: list[str] = []  # tenants whose every row goes once the batch is written

    def add(self, seq: int, event: Event) -> None:
        if isinstance(event, ev.TenantErased):
            self._erased.append(event.tenant_id)
            return
        if isinstance(event, ev.MessageReceived | ev.MessageSent):
            inbound = isinstance(event, ev.MessageReceived)
            metric = "messages_in" if inbound else "messages_out"
            key = f"{'in' if inbound else 'out'}:{event.data.message_id}"
            self._once.setdefault(
                (event.tenant_id, key), ((event.tenant_id, event.occurred_at.date(), metric), 1)
            )
            return
        assert isinstance(event, ev.UsageRecorded)
        data = event.data
        if data.quantity < 0:
            raise Rejected(f"usage quantity must not be negative, got {data.quantity}")
        metered = ((event.tenant_id, event.occurred_at.date(), data.metric), data.quantity)
        if data.source_id is None:
            self._always.append(metered)
        else:
            self._once.setdefault((event.tenant_id, f"{data.metric}:{data.source_id}"), metered)

    async def write(self, conn: Connection) -> None:
        sums: defaultdict[Sum, list[int]] = defaultdict(lambda: [0, 0])
        async with conn.cursor() as cur:
            first_time: list[tuple[Sum, int]] = []
            if self._once:
                tenants, keys = zip(*self._once, strict=True)
                await cur.execute(COUNT_ONCE, (list(tenants), list(keys)))
                first_time = [self._once[(row["tenant_id"], row["key"])] for row in await cur.fetchall()]
            for key, quantity in [*first_time, *self._always]:
                sums[key][0] += quantity
                sums[key][1] += 1
            await cur.executemany(UPSERT, [(*key, total, n) for key, (total, n) in sums.items()])
            for table in UsageProjection.tables if self._erased else ():
                await cur.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", (self._erased,))


class UsageProjection:
    name: str = "usage"
    version: int = 4  # 2: row-level security on every table; 3: message counts; 4: counted once
    tables: tuple[str, ...] = ("usage_daily", "usage_counted")
    handles: frozenset[str] = frozenset(
        {"usage.recorded", "message.received", "message.sent", "tenant.erased"}
    )

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return ""

    def new_batch(self) -> Batch:
        return UsageBatch()
