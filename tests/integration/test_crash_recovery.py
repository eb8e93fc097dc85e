"""A projection worker process SIGKILLed in the middle of a batch, several times, ends
with the same read models as an uninterrupted run: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from adapters.postgres.database import connection as pg_connection
from moltbot.loadgen import generate
from projections import rebuild as rebuild_ops
from projections.registry import all_projections
from tests.integration import expectations
from tests.integration.conftest import REPO_ROOT, Stack

pytestmark = pytest.mark.slow

KILLS = 4


def _start_worker(stack: Stack) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MOLTBOT_NATS_URL": stack.nats_url,
        "MOLTBOT_DATABASE_URL": stack.database_url,
        **stack.vault_environ(),
        "MOLTBOT_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "moltbot", "projections", "run", "--batch-size", "400"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _kill_inside_a_batch(stack: Stack, worker: subprocess.Popen[bytes], after_seq: int) -> int:
    """Once the read models pass ``after_seq``, SIGKILL the worker while one of its batch
    transactions is open; returns the highest checkpoint committed at that moment."""
    async with pg_connection(stack.database_url) as conn:
        await _wait_all_prepared(conn)
        for _ in range(20_000):
            cur = await conn.execute(
                "SELECT max(last_seq) AS seq FROM moltbot.projection_checkpoints WHERE slot = 'live'"
            )
            row = await cur.fetchone()
            if row and row["seq"] >= after_seq:
                break
            await asyncio.sleep(0.002)
        for _ in range(4000):
            cur = await conn.execute(
                "SELECT count(*) AS open FROM pg_stat_activity WHERE application_name LIKE 'moltbot-proj-%'"
                " AND xact_start IS NOT NULL AND backend_xid IS NOT NULL"
            )
            row = await cur.fetchone()
            if row and row["open"]:
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                cur = await conn.execute(
                    "SELECT max(last_seq) AS seq FROM moltbot.projection_checkpoints WHERE slot = 'live'"
                )
                checkpoint = await cur.fetchone()
                return int(checkpoint["seq"]) if checkpoint and checkpoint["seq"] is not None else 0
            await asyncio.sleep(0.002)
    raise AssertionError("never saw the worker inside a write transaction")


async def _wait_all_prepared(conn: Any) -> None:
    """Wait until every read model has its tables and checkpoint: batches come next."""
    for _ in range(2000):
        cur = await conn.execute(
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'moltbot'"
            " AND tablename = 'projection_checkpoints'"
        )
        row = await cur.fetchone()
        if row and row["n"]:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM moltbot.projection_checkpoints WHERE slot = 'live'"
            )
            row = await cur.fetchone()
            if row and row["n"] == len(all_projections()):
                return
        await asyncio.sleep(0.005)
    raise AssertionError("the worker never prepared its read models")


async def test_sigkill_mid_batch_loses_and_doubles_nothing(stack: Stack) -> None:
    events = list(generate(30_000, tenants=5))
    await stack.store.append_many(events)
    total = len(events)

    checkpoints_at_kill = []
    for kill in range(KILLS):
        worker = _start_worker(stack)
        after_seq = total * kill // (KILLS + 1)
        checkpoints_at_kill.append(await _kill_inside_a_batch(stack, worker, after_seq))
        assert worker.returncode == -signal.SIGKILL

    # The kills landed along the way, each after some progress, none after the work was done.
    assert checkpoints_at_kill == sorted(checkpoints_at_kill)
    assert checkpoints_at_kill[-1] > checkpoints_at_kill[0]
    assert max(checkpoints_at_kill) < total

    worker = _start_worker(stack)
    try:
        await stack.wait_caught_up(timeout=120)
    finally:
        worker.terminate()
        worker.wait(10)

    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT conversation_id, unread_count FROM rm_inbox.conversations")
        unread = {r["conversation_id"]: r["unread_count"] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT tenant_id, day, metric, quantity FROM rm_usage.usage_daily")
        usage = {(r["tenant_id"], r["day"], r["metric"]): r["quantity"] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT count(*) AS n FROM rm_inbox.messages")
        stored_messages = await cur.fetchone()
        # Identical, row for row, to a model rebuilt from the log in one uninterrupted pass.
        for projection in all_projections():
            report = await rebuild_ops.verify(conn, projection, stack.store)
            assert report.identical, report

    assert unread == expectations.unread_counts(events)
    assert usage == expectations.usage_sums(events)
    assert stored_messages == {"n": sum(expectations.message_counts(events).values())}
