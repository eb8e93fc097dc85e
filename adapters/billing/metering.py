"""The billing worker: AI spend beyond a paid plan's allowance, reported to Stripe as meter events.

What is reported. For each inbox with a Stripe customer whose subscription is live (``active``,
``trialing``, ``past_due`` in ``billing.customers``) on a paid plan with an AI allowance
(:func:`domain.billing.metered_allowance`: Pro, Team; never Free or byok), for each closed UTC
day of the current and the previous month, the day's overage of ``cost_micros`` (the usage
read model ``rm_usage.usage_daily``):

    max(0, month-to-date spend through the day - allowance)
      - max(0, month-to-date spend through the day before - allowance)

(:func:`domain.billing.overage_by_day`; a month's shares add up to its whole overage). A day is
closed :data:`~domain.billing.SETTLE` after it ends, so usage recorded just before midnight is
folded first; a day whose end is more than :data:`~domain.billing.METER_WINDOW` ago is not
sent (Stripe takes meter events at most 35 days old). The allowance is the plan's as recorded
now, for the whole month.

How. A non-zero overage is one meter event: ``event_name`` = ``MOLTBOT_STRIPE_METER_EVENT``
(default ``ai_overage_micros``), ``identifier`` = ``"<tenant>:<day>:cost_micros"``
(:func:`domain.billing.meter_identifier`), ``payload`` = ``{"stripe_customer_id", "value"}``
(micro-dollars, as a string), ``timestamp`` = the day's last second. The identifier is the
request's Idempotency-Key too.

Exactly once. Each (tenant, day, metric) is inserted into ``billing.meter_reports`` after
Stripe accepted it, and what is there is never sent again. A crash between Stripe's answer and
the insert sends the same identifier again on the next run: under the same Idempotency-Key
Stripe answers its first answer again (keys are kept for 24 hours), and it refuses an
identifier it has (``An event already exists with identifier …``, kept for at least 24 hours)
or the same key with other parameters (``idempotency_error``, when the day's spend changed in
between); each of these is recorded as ``already_reported``, never sent twice. A run holds a
PostgreSQL advisory lock, so replicas of this worker do not report at once.

Left out: usage recorded for a day after it was reported (later than :data:`SETTLE`) is not
billed; a worker down for more than 24 hours right after Stripe accepted an event and before
it was recorded could send that one event again (Stripe keeps identifiers at least 24 hours).

Reads and writes as the product's owner login (not the confined role): every inbox's usage and
customer row.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from adapters.billing.errors import BillingError, BillingUnavailable
from adapters.billing.stripe_billing import MeterOutcome, StripeBilling
from adapters.billing.subscriptions import BILLING_SQL
from adapters.nats.pull import raise_if_cancelled
from adapters.postgres.database import Connection
from domain import billing
from domain.plans import Catalog

log = structlog.get_logger()

METERING_SQL = """
CREATE SCHEMA IF NOT EXISTS billing;
CREATE TABLE IF NOT EXISTS billing.meter_reports (
    tenant_id   text   NOT NULL,
    day         date   NOT NULL,
    metric      text   NOT NULL,
    value       bigint NOT NULL,      -- what was sent: micro-dollars of overage that day
    identifier  text   NOT NULL,      -- the meter event's identifier (and Idempotency-Key)
    outcome     text   NOT NULL,      -- accepted | already_reported (Stripe had it: a resend)
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day, metric)
);
"""

INTERVAL = 300.0  # seconds between runs
_LOCK = "moltbot.billing.metering"  # one reporting run at a time, whatever the replicas


class Metered(msgspec.Struct, frozen=True, kw_only=True):
    """An inbox whose AI overage is reported: its Stripe customer and its plan's allowance."""

    tenant_id: str
    customer_id: str
    plan: str
    allowance_micros: int


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """One meter event sent and recorded in ``billing.meter_reports``."""

    tenant_id: str
    day: date
    metric: str
    value: int
    identifier: str
    outcome: MeterOutcome


async def ensure_tables(conn: Connection) -> None:
    """``billing.customers`` (the gateway's, made here too when this worker starts first) and
    ``billing.meter_reports``; the confined role must exist (``projections.engine.ensure_core``)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.gateway.schema'))")
        await conn.execute(BILLING_SQL)
        await conn.execute(METERING_SQL)


class OverageReporter:
    """Reports the AI overage of every metered inbox to Stripe (see the module's doc).

    ``pool``: the owner login's connections, at least two (one holds the run's lock).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        stripe: StripeBilling,
        catalog: Catalog,
        *,
        interval: float = INTERVAL,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._stripe = stripe
        self._catalog = catalog
        self._interval = interval
        self._now = now

    @property
    def event_name(self) -> str:
        return self._stripe.config.meter_event

    async def run(self) -> None:
        """Report, then again every ``interval`` seconds, until cancelled. A run that Stripe or
        PostgreSQL cut short is logged and tried again at the next one."""
        log.info("metering_running", event_name=self.event_name, interval=self._interval)
        while True:
            try:
                await self.report_once()
            except (BillingUnavailable, psycopg.Error) as exc:
                raise_if_cancelled()  # a query cancelled mid-flight surfaces as a database error
                log.warning("metering_failed", error=str(exc), retry_in=self._interval)
            await asyncio.sleep(self._interval)

    async def report_once(self) -> list[Report]:
        """Send every overage day not reported yet; what was sent (empty while another replica
        is reporting)."""
        first, last = billing.meter_window(self._now())
        async with self._pool.connection() as lock, lock.transaction():
            cur = await lock.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s)) AS held", (_LOCK,))
            held = await cur.fetchone()
            if held is None or not held["held"]:
                log.info("metering_skipped", reason="another billing worker is reporting")
                return []
            async with self._pool.connection() as conn:
                metered = await metered_inboxes(conn, self._catalog)
                tenants = [inbox.tenant_id for inbox in metered]
                # Month-to-date sums start on the first of the window's first month.
                spent = await _spent(conn, tenants, first.replace(day=1), last)
                done = await _reported(conn, tenants, first, last)
            reports: list[Report] = []
            for inbox in metered:
                overage = billing.overage_by_day(spent[inbox.tenant_id], inbox.allowance_micros)
                for day, value in sorted(overage.items()):
                    if day >= first and (inbox.tenant_id, day) not in done:
                        report = await self._report(inbox, day, value)
                        if report is not None:
                            reports.append(report)
        if reports:
            log.info("overage_reported", events=len(reports), first_day=str(first), last_day=str(last))
        return reports

    async def _report(self, inbox: Metered, day: date, value: int) -> Report | None:
        metric = billing.OVERAGE_METRIC
        identifier = billing.meter_identifier(inbox.tenant_id, day, metric)
        try:
            outcome = await self._stripe.meter_event(
                event_name=self.event_name,
                identifier=identifier,
                customer_id=inbox.customer_id,
                value=value,
                timestamp=billing.end_of_day(day),
            )
        except BillingUnavailable:
            raise
        except BillingError as exc:  # this event refused (not the others): tried again next run
            log.error("meter_event_refused", tenant_id=inbox.tenant_id, day=str(day), error=str(exc))
            return None
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO billing.meter_reports (tenant_id, day, metric, value, identifier, outcome)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (inbox.tenant_id, day, metric, value, identifier, outcome),
            )
        log.info(
            "meter_event_reported", tenant_id=inbox.tenant_id, day=str(day), metric=metric,
            value_micros=value, identifier=identifier, outcome=outcome, customer_id=inbox.customer_id,
        )  # fmt: skip
        return Report(
            tenant_id=inbox.tenant_id, day=day, metric=metric, value=value, identifier=identifier,
            outcome=outcome,
        )  # fmt: skip


async def metered_inboxes(conn: Connection, catalog: Catalog) -> list[Metered]:
    """The inboxes with a live Stripe subscription on a plan with a metered allowance."""
    cur = await conn.execute(
        "SELECT tenant_id, customer_id, plan FROM billing.customers"
        " WHERE customer_id IS NOT NULL AND status = ANY(%s) ORDER BY tenant_id",
        (sorted(billing.LIVE),),
    )
    metered = []
    for row in await cur.fetchall():
        allowance = billing.metered_allowance(catalog, row["plan"])
        if allowance is not None:
            metered.append(
                Metered(
                    tenant_id=row["tenant_id"],
                    customer_id=row["customer_id"],
                    plan=row["plan"],
                    allowance_micros=allowance,
                )
            )
    return metered


async def _spent(
    conn: Connection, tenants: list[str], since: date, until: date
) -> defaultdict[str, dict[date, int]]:
    """{tenant: {day: AI spend}} from ``since`` through ``until``."""
    spent: defaultdict[str, dict[date, int]] = defaultdict(dict)
    if not tenants:
        return spent
    cur = await conn.execute(
        "SELECT tenant_id, day, quantity FROM rm_usage.usage_daily"
        " WHERE metric = %s AND tenant_id = ANY(%s) AND day BETWEEN %s AND %s",
        (billing.OVERAGE_METRIC, tenants, since, until),
    )
    for row in await cur.fetchall():
        spent[row["tenant_id"]][row["day"]] = int(row["quantity"])
    return spent


async def _reported(conn: Connection, tenants: list[str], first: date, last: date) -> set[tuple[str, date]]:
    """The (tenant, day) of the overage already in ``billing.meter_reports``."""
    if not tenants:
        return set()
    cur = await conn.execute(
        "SELECT tenant_id, day FROM billing.meter_reports"
        " WHERE metric = %s AND tenant_id = ANY(%s) AND day BETWEEN %s AND %s",
        (billing.OVERAGE_METRIC, tenants, first, last),
    )
    return {(row["tenant_id"], row["day"]) for row in await cur.fetchall()}
