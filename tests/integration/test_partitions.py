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
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from moltbot.loadgen import generate
from moltbot.roles import run_projections
from projections import rebuild as rebuild_ops
from projections.engine import ensure_core
from projections.partitions import Assignment, Partitioning, bucket_of, load_partitioning
from projections.registry import all_projections
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


def partition_workers(stack: Stack, database_url: str, partitioning: Partitioning, n: int) -> list[Any]:
    return [
        run_projections(
            stack.nats_url,
            database_url,
            stack.spec,
            list(all_projections()),
            batch_size=400,
            partitioning=partitioning,
            partitions=n,
            partition=k,
        )
        for k in range(n)
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
    await stack.store.append_many(events[:2000])
    single = run_projections(
        stack.nats_url, stack.database_url, stack.spec, list(all_projections()), batch_size=400
    )
    async with running(single, *partition_workers(stack, second_database, partitioning, 3)):
        # two thirds before the workers start, a third while they run
        await stack.store.append_many(events[2000:])
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
    await stack.store.append_many(more)
    single = run_projections(
        stack.nats_url, stack.database_url, stack.spec, list(all_projections()), batch_size=400
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


def test_the_bucket_function_is_the_servers() -> None:
    # Buckets nats-server 2.15 gave these tokens with {{partition(12,1)}} (checked by hand).
    assert [bucket_of(t, 12) for t in ("t_a", "t_b", "t_c", "t_d", "t_e", "t_f")] == [3, 2, 1, 8, 7, 6]
