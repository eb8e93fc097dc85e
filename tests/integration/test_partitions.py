"""Partitioned projection workers: N workers, each folding the tenants of its buckets of
EVENTS_PARTITIONED, build exactly the read models one worker builds from EVENTS; N may
change between runs; each worker receives only its own tenants' events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from nats.aio.client import Client

from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.event_store import EventStore
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from moltbot.loadgen import generate
from moltbot.roles import run_projections
from projections import rebuild as rebuild_ops
from projections import run_lock
from projections.engine import ensure_core
from projections.partitions import Assignment, Partitioning, bucket_of, load_partitioning
from projections.registry import all_projections
from projections.run_lock import Running
from tests.conftest import snapshot, wait_caught_up
from tests.integration.conftest import REPO_ROOT, Stack


@pytest.fixture
def partitioning() -> Partitioning:
    return load_partitioning(REPO_ROOT / "streams.yaml")


@pytest.fixture
async def second_database(postgres: PostgresServer) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    await postgres.create_database(name)
    url = postgres.url_for(name)
    # The core schema (and the server-wide moltbot_gateway role) before any worker starts:
    # two databases creating the role at the same moment race on it (ensure_core's lock is
    # per database), and a worker does not retry that.
    async with pg_connection(url) as conn:
        await ensure_core(conn)
    yield url
    await postgres.drop_database(name)


@contextlib.asynccontextmanager
async def running(*jobs: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
        for task in tasks:
            if task.done():
                task.result()  # a worker that died: show why
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def partition_workers(
    stack: Stack, database_url: str, partitioning: Partitioning, n: int, only: int | None = None
) -> list[Any]:
    return [
        run_projections(
            stack.roles,
            database_url,
            stack.spec,
            list(all_projections()),
            batch_size=400,
            partitioning=partitioning,
            partitions=n,
            partition=k,
            keyring=stack.keyring,
        )
        for k in (range(n) if only is None else [only])
    ]


async def _api(nc: Client, subject: str) -> dict[str, Any]:
    reply = await nc.request(f"$JS.API.{subject}", b"", timeout=10)
    response: dict[str, Any] = json.loads(reply.data)
    return response


async def assert_each_worker_got_only_its_tenants(
    stack: Stack, partitioning: Partitioning, events: Sequence[ev.Event], n: int
) -> None:
    buckets = partitioning.buckets
    per_worker = Counter(bucket_of(e.tenant_id, buckets) % n for e in events)
    tenants_per_worker = Counter(bucket_of(tenant, buckets) % n for tenant in {e.tenant_id for e in events})
    assert all(tenants_per_worker[k] for k in range(n)), "the test data should give every worker a tenant"
    for projection in all_projections():
        for k in range(n):
            name = Assignment(n, k, buckets).consumer(projection)
            info = await _api(stack.store.nc, f"CONSUMER.INFO.{partitioning.stream_name}.{name}")
            assert info["config"]["filter_subjects"] == [f"part.{b}.>" for b in range(k, buckets, n)]
            assert info["num_pending"] == 0
            # Delivered exactly the events of its tenants: no one else's, none twice.
            assert info["delivered"]["consumer_seq"] == per_worker[k], (projection.name, k)


async def test_three_partition_workers_build_what_one_worker_builds(
    stack: Stack, second_database: str, partitioning: Partitioning
) -> None:
    async with pg_connection(stack.database_url) as conn:
        await ensure_core(conn)
    events = list(generate(3000, tenants=6))
    # Stored as they are (not sealed): the second database has none of the first's data keys.
    plain = EventStore(stack.store.nc)
    await plain.append_many(events[:2000])
    single = run_projections(
        stack.roles,
        stack.database_url,
        stack.spec,
        list(all_projections()),
        batch_size=400,
        keyring=stack.keyring,
    )
    async with running(single, *partition_workers(stack, second_database, partitioning, 3)):
        # two thirds before the workers start, a third while they run
        await plain.append_many(events[2000:])
        last = await stack.store.last_seq()
        await wait_caught_up(stack.database_url, last, timeout=60)
        await wait_caught_up(second_database, last, timeout=60)  # 'live' = every bucket has reached it
    assert await snapshot(second_database) == await snapshot(stack.database_url)
    await assert_each_worker_got_only_its_tenants(stack, partitioning, events, 3)

    async with pg_connection(second_database) as conn:
        cur = await conn.execute(
            "SELECT projection, min(events_seq) AS low, count(*) AS n FROM moltbot.projection_partitions"
            " GROUP BY projection"
        )
        rows = await cur.fetchall()
    assert {r["projection"] for r in rows} == {p.name for p in all_projections()}
    assert all(r["n"] == partitioning.buckets and r["low"] >= last for r in rows)

    # N changes between runs: two workers take over the buckets from their checkpoints.
    more = list(generate(600, tenants=6, seed=11))
    await plain.append_many(more)
    single = run_projections(
        stack.roles,
        stack.database_url,
        stack.spec,
        list(all_projections()),
        batch_size=400,
        keyring=stack.keyring,
    )
    async with running(single, *partition_workers(stack, second_database, partitioning, 2)):
        last = await stack.store.last_seq()
        await wait_caught_up(stack.database_url, last, timeout=60)
        await wait_caught_up(second_database, last, timeout=60)
    assert await snapshot(second_database) == await snapshot(stack.database_url)
    # A worker that resumes is sent only its buckets from the lowest of their checkpoints on.
    name = Assignment(2, 0, partitioning.buckets).consumer(all_projections()[0])
    info = await _api(stack.store.nc, f"CONSUMER.INFO.{partitioning.stream_name}.{name}")
    assert info["num_pending"] == 0


async def test_a_single_worker_takes_over_from_idle_partition_workers(
    stack: Stack, partitioning: Partitioning
) -> None:
    events = list(generate(800, tenants=6))
    await stack.store.append_many(events[:500])
    async with running(*partition_workers(stack, stack.database_url, partitioning, 3)):
        await stack.wait_caught_up(timeout=60)
    await stack.store.append_many(events[500:])
    async with stack.projections(batch_size=200):
        await stack.wait_caught_up(timeout=60)
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM moltbot.projection_partitions")
        row = await cur.fetchone()
        assert row is not None and row["n"] == 0  # the bucket checkpoints were folded into 'live'
        for projection in all_projections():  # nothing lost or applied twice at the hand-over
            report = await rebuild_ops.verify(conn, projection, stack.store)
            assert report.identical, report.differences


async def _running(database_url: str) -> set[Running]:
    """What runs, per read model (one set element when all read models agree)."""
    async with pg_connection(database_url) as conn:
        return {await run_lock.running(conn, projection) for projection in all_projections()}


async def _partition_rows(database_url: str) -> int:
    async with pg_connection(database_url) as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM moltbot.projection_partitions")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _stop(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_kind_of_worker_folds_at_a_time_and_a_waiting_one_takes_over(
    stack: Stack, partitioning: Partitioning
) -> None:
    events = list(generate(1600, tenants=6))
    await stack.store.append_many(events[:400])
    started: list[asyncio.Task[None]] = []

    def start(*jobs: Any) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(job) for job in jobs]
        started.extend(tasks)
        return tasks

    def single() -> Any:
        return run_projections(
            stack.roles, stack.database_url, stack.spec, list(all_projections()), batch_size=200,
            keyring=stack.keyring,
        )  # fmt: skip

    try:
        two = start(*partition_workers(stack, stack.database_url, partitioning, 2))
        await stack.wait_caught_up(timeout=60)
        # A single worker, and a partition worker of another N whose buckets overlap, wait.
        (overlapping,) = start(*partition_workers(stack, stack.database_url, partitioning, 3, only=0))
        (first,) = start(single())
        await stack.store.append_many(events[400:800])
        await stack.wait_caught_up(timeout=60)
        await asyncio.sleep(2 * run_lock.RETRY_SECONDS)
        assert await _running(stack.database_url) == {Running(single=0, partitioned=2)}
        assert await _partition_rows(stack.database_url) > 0  # the single worker has not taken over
        async with pg_connection(stack.database_url) as conn:
            shown = await rebuild_ops.status(conn, all_projections()[0], stack.store)
        assert shown["running"] == "2 partition workers"
        assert shown["buckets"] == {"count": partitioning.buckets, "lowest": 800, "highest": 800}

        # The partition workers stop (the overlapping one first): the single worker claims.
        await _stop([overlapping, *two])
        await stack.store.append_many(events[800:1200])
        await stack.wait_caught_up(timeout=60)
        assert await _running(stack.database_url) == {Running(single=1, partitioned=0)}
        assert await _partition_rows(stack.database_url) == 0  # folded into 'live' at the take-over

        # A second single worker is a hot standby: it waits, then takes over from the first.
        (standby,) = start(single())
        await asyncio.sleep(2 * run_lock.RETRY_SECONDS)
        assert await _running(stack.database_url) == {Running(single=1, partitioned=0)}
        await _stop([first])
        await stack.store.append_many(events[1200:])
        await stack.wait_caught_up(timeout=60)
        assert await _running(stack.database_url) == {Running(single=1, partitioned=0)}
        assert not standby.done()
    finally:
        await _stop(started)
    assert await _running(stack.database_url) == {Running(single=0, partitioned=0)}
    async with pg_connection(stack.database_url) as conn:
        for projection in all_projections():  # nothing lost or applied twice at the hand-overs
            report = await rebuild_ops.verify(conn, projection, stack.store)
            assert report.identical, report.differences


def test_the_bucket_function_is_the_servers() -> None:
    # Buckets nats-server 2.15 gave these tokens with {{partition(12,1)}} (checked by hand).
    assert [bucket_of(t, 12) for t in ("t_a", "t_b", "t_c", "t_d", "t_e", "t_f")] == [3, 2, 1, 8, 7, 6]
