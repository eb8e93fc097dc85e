"""Waiting for the read models wakes on their commits (``adapters/postgres/applied.py``): a
live checkpoint's move is a NOTIFY at commit, a waiter's event is set by it, and a listener
whose connection is cut listens again while waits go on ending."""

from __future__ import annotations

import asyncio

from adapters.postgres import tenancy
from adapters.postgres.applied import AppliedSignal
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import ids
from tests.integration.conftest import Stack


def _tenant() -> ev.TenantCreated:
    tenant = ids.new_id(ids.TENANT)
    return ev.new_event(
        ev.TenantCreated, tenant_id=tenant, aggregate_id=tenant, actor="user:u_signal",
        data=ev.TenantCreatedData(name="Signals"),
    )  # fmt: skip


async def test_a_wait_wakes_on_the_commit_and_outlives_a_lost_listener(stack: Stack) -> None:
    applied = AppliedSignal(stack.database_url)
    await applied.start()
    pool = tenancy.pool(stack.database_url, max_size=2)
    await pool.open()
    try:
        async with stack.projections():
            await stack.store.append(_tenant())
            await stack.wait_caught_up()  # the read models' tables are there
            first = await stack.store.append(_tenant())
            assert await tenancy.wait_for_seq(pool, first.seq, ("tenants",), within=20, applied=applied)

            moved = applied.current()
            await stack.store.append(_tenant())
            await asyncio.wait_for(moved.wait(), 20)  # set by the tenants read model's commit

            async with pg_connection(stack.database_url) as conn:
                cut = await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query = 'LISTEN moltbot_applied' AND datname = current_database()"
                )
                assert len(await cut.fetchall()) >= 1
            later = await stack.store.append(_tenant())
            assert await tenancy.wait_for_seq(pool, later.seq, ("tenants",), within=20, applied=applied)
            relistened = applied.current()
            await stack.store.append(_tenant())
            await asyncio.wait_for(relistened.wait(), 20)  # listening again after the cut
    finally:
        await pool.close()
        await applied.close()


async def test_a_read_model_that_does_not_fold_the_event_needs_only_the_one_before(stack: Stack) -> None:
    pool = tenancy.pool(stack.database_url, max_size=2)
    await pool.open()
    try:
        async with stack.projections():
            await stack.store.append(_tenant())
            await stack.wait_caught_up()
        # The workers are stopped: hold "devices" one event behind "tenants".
        last = await stack.store.append(_tenant())
        async with pg_connection(stack.database_url) as conn:
            await conn.execute(
                "UPDATE moltbot.projection_checkpoints SET last_seq = CASE projection WHEN 'tenants'"
                " THEN %s ELSE %s END WHERE slot = 'live' AND projection IN ('tenants', 'devices')",
                (last.seq, last.seq - 1),
            )
        both = ("tenants", "devices")  # devices does not fold tenant.created
        assert not await tenancy.wait_for_seq(pool, last.seq, both, within=0.2)
        assert await tenancy.wait_for_seq(pool, last.seq, both, within=0.2, unchanged=["devices"])
        # Only the event before: one more behind is not enough.
        assert not await tenancy.wait_for_seq(pool, last.seq + 1, both, within=0.2, unchanged=["devices"])
    finally:
        await pool.close()
