"""The billing worker reports paid plans' AI overage to Stripe's meter, each tenant-day once:
the usage read model folded from ``usage.recorded`` events over real NATS and PostgreSQL, the
real ``stripe`` client against the local fake of Stripe, and a ``moltbot billing`` process
SIGKILLed between Stripe keeping an event and the worker recording it, then restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe

from adapters.billing.config import StripeConfig
from adapters.billing.metering import OverageReporter, ensure_tables
from adapters.billing.stripe_billing import StripeBilling
from adapters.postgres import tenancy
from adapters.postgres.database import connection as pg_connection
from domain import billing, ids
from domain import events as ev
from moltbot.settings import bundled_plans_file, load_catalog
from projections.engine import ensure_core
from projections.usage import UsageProjection
from tests.fakes.stripe_api import FakeStripe, fake_stripe
from tests.integration.conftest import REPO_ROOT, Stack

SECRET_KEY = "sk_test_moltbot_metering"
WEBHOOK_SECRET = "whsec_moltbot_metering"
PRICES = {"pro": "price_pro_monthly", "team": "price_team_monthly"}
M = 1_000_000  # a dollar in micro-dollars
PRO, TEAM = 50 * M, 250 * M  # plans.yaml's monthly AI allowances
METER_EVENTS = "/v1/billing/meter_events"


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    async with fake_stripe(SECRET_KEY, WEBHOOK_SECRET, prices=list(PRICES.values())) as fake:
        yield fake


@pytest.fixture
async def stripe_billing(stripe_fake: FakeStripe) -> AsyncIterator[StripeBilling]:
    config = StripeConfig(
        secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET, prices=PRICES, api_base=stripe_fake.base_url
    )
    client = StripeBilling(config)
    yield client
    await client.aclose()


@pytest.fixture
async def tables(stack: Stack) -> None:
    """``billing.customers`` and ``billing.meter_reports``, as ``moltbot billing`` makes them."""
    async with pg_connection(stack.database_url) as conn:
        await ensure_core(conn)
        await ensure_tables(conn)


@pytest.fixture
async def reporter(
    stack: Stack, stripe_billing: StripeBilling, tables: None
) -> AsyncIterator[OverageReporter]:
    pool = tenancy.pool(stack.database_url, max_size=2, confined=False)
    await pool.open()
    yield OverageReporter(pool, stripe_billing, load_catalog(bundled_plans_file()))
    await pool.close()


def _days_of_one_month(count: int) -> list[date]:
    """The last ``count`` days the worker reports now that fall in one calendar month, so each
    expected overage holds whatever the date the tests run on."""
    first, last = billing.meter_window(datetime.now(UTC))
    months: defaultdict[tuple[int, int], list[date]] = defaultdict(list)
    day = first
    while day <= last:
        months[(day.year, day.month)].append(day)
        day += timedelta(days=1)
    longest = max(months.values(), key=len)
    assert len(longest) >= count
    return longest[-count:]


async def _customer(
    stack: Stack, stripe_billing: StripeBilling, plan: str, *, status: str | None = "active"
) -> tuple[str, str]:
    """A new inbox with a Stripe customer whose subscription gives ``plan``: (tenant, customer)."""
    tenant_id = ids.new_id(ids.TENANT)
    customer_id = await stripe_billing.create_customer(tenant_id, email=None, name=None)
    async with pg_connection(stack.database_url) as conn:
        await conn.execute(
            "INSERT INTO billing.customers (tenant_id, customer_id, subscription_id, status, plan)"
            " VALUES (%s, %s, %s, %s, %s)",
            (tenant_id, customer_id, f"sub_{tenant_id}", status, plan),
        )
    return tenant_id, customer_id


def _spent(tenant_id: str, day: date, micros: int, metric: ev.UsageMetric = "cost_micros") -> ev.Event:
    return ev.new_event(
        ev.UsageRecorded, tenant_id=tenant_id, aggregate_id=tenant_id, actor="test",
        occurred_at=datetime.combine(day, time(12), UTC),
        data=ev.UsageRecordedData(metric=metric, quantity=micros, source_id=ids.new_id(ids.RUN)),
    )  # fmt: skip


async def _folded(stack: Stack, events: list[ev.Event]) -> None:
    """``events`` appended and folded into the usage read model."""
    async with stack.projections([UsageProjection()]):
        await stack.store.append_many(events)
        await stack.wait_caught_up(names=["usage"])


async def _meter_reports(stack: Stack) -> dict[str, tuple[int, str]]:
    """``billing.meter_reports`` as {identifier: (value, outcome)}, checking each row's key."""
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT * FROM billing.meter_reports")
        rows = await cur.fetchall()
    for row in rows:
        assert row["identifier"] == billing.meter_identifier(row["tenant_id"], row["day"], row["metric"])
    return {row["identifier"]: (row["value"], row["outcome"]) for row in rows}


def _sent(fake: FakeStripe) -> list[dict[str, Any]]:
    return [
        r.params | {"key": r.headers.get("idempotency-key")} for r in fake.requests if r.path == METER_EVENTS
    ]


def _at_stripe(fake: FakeStripe) -> dict[str, int]:
    """{identifier: value} of the meter events Stripe kept."""
    return {identifier: int(event["payload"]["value"]) for identifier, event in fake.meter_events.items()}


def _expected(tenant_id: str, overage: dict[date, int]) -> dict[str, int]:
    return {billing.meter_identifier(tenant_id, day, "cost_micros"): value for day, value in overage.items()}


async def test_each_overage_day_is_reported_once_with_its_value(
    stack: Stack, stripe_fake: FakeStripe, stripe_billing: StripeBilling, reporter: OverageReporter
) -> None:
    d1, d2, d3 = _days_of_one_month(3)
    pro, pro_customer = await _customer(stack, stripe_billing, "pro")
    team, _ = await _customer(stack, stripe_billing, "team", status="past_due")  # in its grace
    today = datetime.now(UTC).date()
    await _folded(
        stack,
        [
            _spent(pro, d1, 30 * M),  # 30 of 50: inside the allowance
            _spent(pro, d2, 20 * M),
            _spent(pro, d2, 10 * M),  # 60: 10 beyond it
            _spent(pro, d3, 5 * M),  # all 5 beyond it
            _spent(pro, d3, 9_000_000_000, "tokens_in"),  # not money
            _spent(pro, today, 80 * M),  # today is not over yet
            _spent(team, d3, TEAM + 1_234_567),
        ],
    )

    reports = await reporter.report_once()

    expected = _expected(pro, {d2: 10 * M, d3: 5 * M}) | _expected(team, {d3: 1_234_567})
    assert {r.identifier: r.value for r in reports} == expected
    assert {r.outcome for r in reports} == {"accepted"}
    assert _at_stripe(stripe_fake) == expected
    event = stripe_fake.meter_events[billing.meter_identifier(pro, d2, "cost_micros")]
    assert event["event_name"] == "ai_overage_micros"
    assert event["payload"] == {"stripe_customer_id": pro_customer, "value": str(10 * M)}
    assert event["timestamp"] == int(datetime.combine(d2, time(23, 59, 59), UTC).timestamp())
    assert all(sent["key"] == sent["identifier"] for sent in _sent(stripe_fake))
    assert await _meter_reports(stack) == {identifier: (v, "accepted") for identifier, v in expected.items()}

    # Reported is reported: the next run sends nothing.
    asked = len(stripe_fake.requests)
    assert await reporter.report_once() == []
    assert len(stripe_fake.requests) == asked


async def test_an_event_stripe_has_already_is_recorded_not_sent_again(
    stack: Stack, stripe_fake: FakeStripe, stripe_billing: StripeBilling, reporter: OverageReporter
) -> None:
    """Stripe kept the event, but the worker never recorded it (it died, and the Idempotency-Key
    is gone): Stripe refuses the identifier, which the worker records as already reported."""
    [day] = _days_of_one_month(1)
    tenant_id, customer_id = await _customer(stack, stripe_billing, "pro")
    await _folded(stack, [_spent(tenant_id, day, PRO + 7 * M)])
    identifier = billing.meter_identifier(tenant_id, day, "cost_micros")
    earlier = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": stripe_fake.base_url}, http_client=stripe.HTTPXClient()
    )
    await earlier.v1.billing.meter_events.create_async(
        params={
            "event_name": "ai_overage_micros", "identifier": identifier,
            "payload": {"stripe_customer_id": customer_id, "value": str(7 * M)},
        },
        options={"idempotency_key": "an-earlier-key"},
    )  # fmt: skip

    [report] = await reporter.report_once()

    assert (report.identifier, report.value, report.outcome) == (identifier, 7 * M, "already_reported")
    assert _at_stripe(stripe_fake) == {identifier: 7 * M}
    assert await _meter_reports(stack) == {identifier: (7 * M, "already_reported")}
    assert await reporter.report_once() == []
    assert len(_sent(stripe_fake)) == 2  # the earlier one, and the worker's once


async def test_free_plans_and_days_under_the_allowance_send_nothing(
    stack: Stack, stripe_fake: FakeStripe, stripe_billing: StripeBilling, reporter: OverageReporter
) -> None:
    d1, d2, d3 = _days_of_one_month(3)
    free, _ = await _customer(stack, stripe_billing, "free")
    byok, _ = await _customer(stack, stripe_billing, "byok")
    under, _ = await _customer(stack, stripe_billing, "pro")
    canceled, _ = await _customer(stack, stripe_billing, "pro", status="canceled")
    pending, _ = await _customer(stack, stripe_billing, "pro", status="incomplete")
    nobody = ids.new_id(ids.TENANT)  # no Stripe customer at all
    events = [
        _spent(tenant, day, 100 * M) for tenant in (free, byok, canceled, pending, nobody) for day in (d1, d2)
    ]
    events += [_spent(under, day, 16 * M) for day in (d1, d2, d3)]  # 48 of 50
    await _folded(stack, events)

    assert await reporter.report_once() == []
    assert _sent(stripe_fake) == []
    assert await _meter_reports(stack) == {}


async def test_two_replicas_do_not_report_at_once(
    stack: Stack, stripe_fake: FakeStripe, stripe_billing: StripeBilling, reporter: OverageReporter
) -> None:
    d1, d2 = _days_of_one_month(2)
    tenant_id, _ = await _customer(stack, stripe_billing, "pro")
    await _folded(stack, [_spent(tenant_id, d1, PRO + M), _spent(tenant_id, d2, 2 * M)])
    stripe_fake.meter_event_delay = 0.2  # the first replica is still sending when the second looks
    pool = tenancy.pool(stack.database_url, max_size=2, confined=False)
    await pool.open()
    try:
        replica = OverageReporter(pool, stripe_billing, load_catalog(bundled_plans_file()))
        runs = await asyncio.gather(reporter.report_once(), replica.report_once())
    finally:
        await pool.close()

    assert sorted(len(reports) for reports in runs) == [0, 2]
    assert _at_stripe(stripe_fake) == _expected(tenant_id, {d1: M, d2: 2 * M})
    assert len(_sent(stripe_fake)) == 2


# --- A worker process killed between Stripe keeping an event and recording it ----------------

TENANTS, DAYS = 3, 8
DAILY = 30 * M  # a Pro inbox spending $30 a day: the 2nd day is $10 over, each later one $30


def _start_worker(stack: Stack, fake: FakeStripe, log_file: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MOLTBOT_DATABASE_URL": stack.database_url,
        **stack.vault_environ(),
        "MOLTBOT_DATA_DIR": str(log_file.parent / "data"),
        "MOLTBOT_STRIPE_SECRET_KEY": SECRET_KEY,
        "MOLTBOT_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MOLTBOT_STRIPE_PRICES": ",".join(f"{plan}={price}" for plan, price in PRICES.items()),
        "MOLTBOT_STRIPE_API_BASE": fake.base_url,
        "MOLTBOT_BILLING_INTERVAL": "0.2",
        "MOLTBOT_LOG_FORMAT": "json",
    }
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "moltbot", "billing"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )


async def _until(check: Callable[[], Awaitable[bool]], what: str, *, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never saw {what}")
        await asyncio.sleep(0.005)


def _log_lines(log_file: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log_file.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_a_killed_and_restarted_worker_reports_each_tenant_day_exactly_once(
    stack: Stack, stripe_fake: FakeStripe, stripe_billing: StripeBilling, tables: None, tmp_path: Path
) -> None:
    days = _days_of_one_month(DAYS)
    tenants = [(await _customer(stack, stripe_billing, "pro"))[0] for _ in range(TENANTS)]
    await _folded(stack, [_spent(tenant, day, DAILY) for tenant in tenants for day in days])
    per_day = dict(zip(days, [0, 2 * DAILY - PRO] + [DAILY] * (DAYS - 2), strict=True))
    expected: dict[str, int] = {}
    for tenant in tenants:
        expected |= _expected(tenant, {day: value for day, value in per_day.items() if value})
    assert len(expected) == TENANTS * (DAYS - 1)

    # Stripe keeps each event, then answers a quarter of a second later: the worker is
    # killed while Stripe has kept its 4th event and the worker has recorded only three.
    stripe_fake.meter_event_delay = 0.25
    log_file = tmp_path / "billing.log"
    worker = _start_worker(stack, stripe_fake, log_file)
    try:
        await _until(lambda: _kept(stripe_fake, 4), "Stripe keep four meter events")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    assert worker.returncode == -signal.SIGKILL
    recorded = await _meter_reports(stack)
    assert len(recorded) == 3
    [in_flight] = set(stripe_fake.meter_events) - set(recorded)

    stripe_fake.meter_event_delay = 0
    worker = _start_worker(stack, stripe_fake, log_file)
    try:
        await _until(lambda: _recorded(stack, len(expected)), "every overage day recorded")
        await asyncio.sleep(0.5)  # two more runs: nothing more to send
    finally:
        worker.terminate()
        worker.wait(10)

    # Stripe has each tenant-day once, with its value; the worker's table says the same.
    assert _at_stripe(stripe_fake) == expected
    assert await _meter_reports(stack) == {identifier: (v, "accepted") for identifier, v in expected.items()}
    # Each was asked for once, but the one in flight at the kill: twice, the same request under
    # the same key (Stripe answered the second with its first answer), never another value.
    sent: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in _sent(stripe_fake):
        sent[request["identifier"]].append(request)
    assert {identifier: len(requests) for identifier, requests in sent.items() if len(requests) > 1} == {
        in_flight: 2
    }
    assert set(sent) == set(expected)
    for requests in sent.values():
        assert len({json.dumps(r, sort_keys=True) for r in requests}) == 1
    # One log line per event reported: three before the kill, the rest after the restart.
    reported = [line for line in _log_lines(log_file) if line.get("event") == "meter_event_reported"]
    assert sorted(line["identifier"] for line in reported) == sorted(expected)
    [resent] = [line for line in reported if line["identifier"] == in_flight]
    assert (resent["value_micros"], resent["outcome"]) == (expected[in_flight], "accepted")


async def _kept(fake: FakeStripe, count: int) -> bool:
    return len(fake.meter_events) >= count


async def _recorded(stack: Stack, count: int) -> bool:
    return len(await _meter_reports(stack)) >= count
