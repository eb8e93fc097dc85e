"""A 3-node JetStream cluster with R3 streams: killing the event log's leader under load loses
no acked event, doubles none, and the read models keep up; the killed node rejoins."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors
import pytest
import structlog

from adapters.embedded.nats_cluster import NatsCluster
from adapters.embedded.processes import free_port
from adapters.nats.connection import NatsAccess, NatsLogin, NatsTarget, connect
from adapters.nats.event_store import EventStore
from adapters.nats.streams import StreamsFile, apply_streams
from domain.events import Event
from moltbot.loadgen import generate
from tests.conftest import REPO_ROOT, Stack, nats_users, stop_up, wait_caught_up

pytestmark = pytest.mark.slow

log = structlog.get_logger()

EVENT_COUNT = 3000
IN_FLIGHT = 20  # appends awaited together, as a busy gateway would have them


@dataclass
class Load:
    """Appends events, retrying each until acked, and records what was acked and when."""

    store: EventStore
    acked: dict[str, int] = field(default_factory=dict)  # event id -> stored sequence
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # failed attempts by error
    killed_at: float | None = None
    recovered_at: float | None = None

    async def append(self, event: Event) -> None:
        while True:
            started = time.monotonic()
            try:
                appended = await self.store.append(event)
            # No stream leader yet, a timeout, a reconnect: the dedupe key makes a retry safe.
            except nats.errors.Error as exc:
                self.errors[type(exc).__name__] += 1
                log.debug("append_retried", event_id=event.id, error=repr(exc))
                await asyncio.sleep(0.1)
                continue
            self.acked[event.id] = appended.seq
            if self.killed_at is not None and self.recovered_at is None and started >= self.killed_at:
                self.recovered_at = time.monotonic()
            return

    async def run(self, events: list[Event]) -> None:
        for start in range(0, len(events), IN_FLIGHT):
            await asyncio.gather(*(self.append(event) for event in events[start : start + IN_FLIGHT]))


async def _replicas_current(store: EventStore, count: int) -> bool:
    try:
        info = await store.nc.jetstream(timeout=2).stream_info("EVENTS")
    except nats.errors.Error:  # a node rejoining may leave a request unanswered: not yet
        return False
    cluster = info.cluster
    if cluster is None or cluster.leader is None:
        return False
    peers = cluster.replicas or []
    return len(peers) == count - 1 and all(p.current and not p.offline for p in peers)


async def _wait_replicas_current(store: EventStore, count: int, within: float = 30.0) -> float:
    """Seconds until EVENTS has a leader and ``count - 1`` current followers."""
    started = time.monotonic()
    while not await _replicas_current(store, count):
        assert time.monotonic() - started < within, f"EVENTS has no {count} current replicas"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_killing_the_event_log_leader_loses_no_acked_event(
    tmp_path: Path, database_url: str, streams_spec: StreamsFile
) -> None:
    events = list(generate(EVENT_COUNT))
    async with NatsCluster(tmp_path / "cluster", users=nats_users()) as cluster:
        logins = {role: NatsLogin(user=role, password=pw) for role, pw in (cluster.users or {}).items()}
        access = NatsAccess(cluster.url, logins)
        nc = await connect(access, name="tests")
        try:
            await apply_streams(nc, streams_spec, replicas=3)
            store = EventStore(nc, timeout=2.0)
            await _wait_replicas_current(store, 3)
            stack = Stack(cluster.login_url(), database_url, store, streams_spec, nats=access)
            load = Load(store)
            async with stack.projections():
                appending = asyncio.create_task(load.run(events))
                while len(load.acked) < len(events) // 2:
                    assert not appending.done(), appending
                    await asyncio.sleep(0.01)
                info = await nc.jetstream(timeout=5).stream_info("EVENTS")
                assert info.cluster is not None and info.cluster.leader is not None
                victim = cluster.index_of(info.cluster.leader)
                acked_before_kill = len(load.acked)
                await cluster.kill_node(victim)
                load.killed_at = time.monotonic()
                await asyncio.wait_for(appending, 60)
                assert load.recovered_at is not None
                recovery = load.recovered_at - load.killed_at

                last_seq = await store.last_seq()
                caught_up_started = time.monotonic()
                await wait_caught_up(database_url, last_seq, timeout=30)
                catch_up = time.monotonic() - caught_up_started

            # Every acked event is stored exactly once, at the sequence its ack named.
            stored = [(record.seq, store.codec.decode(record.data).id) async for record in store.read()]
            counts = collections.Counter(event_id for _, event_id in stored)
            assert [event_id for event_id, n in counts.items() if n > 1] == []
            assert set(counts) == set(load.acked) == {event.id for event in events}
            assert all(load.acked[event_id] == seq for seq, event_id in stored)
            assert last_seq == len(events)

            # The killed node comes back and catches up: three current replicas again.
            restarted_at = time.monotonic()
            await cluster.start_node(victim)
            await _wait_replicas_current(store, 3)
            rejoin = time.monotonic() - restarted_at  # process start included
        finally:
            await nc.close()
    figures = (
        f"killed leader {cluster.nodes[victim].server_name} after {acked_before_kill} acks;"
        f" first append after the kill acked in {recovery:.2f}s (failed attempts: {dict(load.errors)});"
        f" read models at seq {last_seq} {catch_up:.2f}s after the load; rejoined in {rejoin:.2f}s"
    )
    print(figures)
    log.info("cluster_failover_measured", figures=figures)


async def _stream_replicas(nats_url: NatsTarget) -> dict[str, int]:
    """Each stream's replica count as the cluster reports it (leader plus current peers)."""
    nc = await connect(nats_url, name="tests")
    try:
        js = nc.jetstream(timeout=5)
        counts = {}
        for info in await js.streams_info():
            peers = info.cluster.replicas or [] if info.cluster else []
            counts[info.config.name or ""] = 1 + sum(1 for peer in peers if peer.current)
        return counts
    finally:
        await nc.close()


def test_up_with_cluster_3_runs_on_three_replicated_nodes(tmp_path: Path) -> None:
    data = tmp_path / "stack"
    gateway_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | {
        "MOLTBOT_LOG_FORMAT": "json",
        "MOLTBOT_GATEWAY_PORT": str(gateway_port),
    }
    log_file = tmp_path / "up.log"
    with log_file.open("ab") as output:
        up = subprocess.Popen(
            [sys.executable, "-m", "moltbot", "--data", str(data), "up", "--cluster", "3"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not (data / "stack.json").exists():
            assert up.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, "stack.json never appeared"
            time.sleep(0.1)
        stack = json.loads((data / "stack.json").read_text())
        assert len(stack["nats_url"].split(",")) == 3
        assert all((data / f"nats-{n}" / "jetstream").is_dir() for n in (1, 2, 3))
        with urllib.request.urlopen(f"{stack['gateway_url']}/healthz", timeout=10) as health:
            assert json.loads(health.read()) == {"status": "ok"}
        admin = NatsLogin(user=stack["nats_user"], password=stack["nats_password"])
        replicas = asyncio.run(_stream_replicas(NatsAccess(stack["nats_url"], default=admin)))
        assert replicas["EVENTS"] == 3
        assert set(replicas.values()) == {3}
    finally:
        stop_up(up, log_file)
    assert up.returncode in (0, 130), log_file.read_text()
    assert not (data / "stack.json").exists()
