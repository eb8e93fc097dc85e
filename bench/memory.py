"""Peak resident memory of each process role, measured on the backbone bench's full event log.

Each role runs as its own process through the product CLI (`python -m moltbot ...`) against
the bench's nats-server and PostgreSQL, while a load runs:

- projections  fold every read model from seq 1 over the whole log
- agent        starts at the log's end (as if running all along), then answers messages
- outbox       reads the whole log, then turns the agent's send requests into commands
- connector    the webchat connector executes those commands
- gateway      replays one tenant's events over SSE, then over WebSocket

A role's peak is its VmHWM (/proc/<pid>/status) read just before it is stopped. PostgreSQL
is many processes sharing buffers, so its figure is the peak of their summed PSS, sampled
while the roles run. The baseline is a bare `python -c "import nats, psycopg"` in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import nats.errors
import psycopg

from adapters.embedded.processes import child_pids, free_port
from adapters.nats.streams import load_streams_file
from adapters.postgres.database import connection as pg_connection
from bench import agent as agent_bench
from bench.backbone import REPO_ROOT, Progress, Servers
from bench.realtime import _sse_replay, _ws_replay, reader_token
from domain import ids
from gateway.auth import Tokens
from projections.registry import all_projections

SAMPLE_SECONDS = 0.5
DRAIN_TIMEOUT = 1800.0


def _status_kib(status: str, key: str) -> int:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(key)


def peak_rss_kib(pid: int) -> int:
    """VmHWM of ``pid`` and its descendants, summed (one process for every role here)."""
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError, LookupError):
            total += _status_kib(Path(f"/proc/{member}/status").read_text(), "VmHWM")
    return total


def _tree(pid: int) -> list[int]:
    members = [pid]
    for child in child_pids(pid):
        members += _tree(child)
    return members


def _pss_kib(pid: int) -> int:
    try:
        return _status_kib(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss")
    except (OSError, LookupError):
        return 0  # the process ended between the scan and the read


class PssPeak:
    """Samples the summed PSS of a process tree every SAMPLE_SECONDS; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.processes = 0

    async def _sample(self) -> None:
        while True:
            members = _tree(self.pid)
            total = sum(_pss_kib(member) for member in members)
            if total > self.peak_kib:
                self.peak_kib, self.processes = total, len(members)
            await asyncio.sleep(SAMPLE_SECONDS)

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[PssPeak]:
        task = asyncio.create_task(self._sample())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def imports_peak_kib(modules: str, env: dict[str, str]) -> int:
    """Peak RSS of a fresh interpreter that imports ``modules`` and exits. It reads its own
    VmHWM: the kernel's ru_maxrss of a child also counts the parent's pages at fork."""
    code = f"import {modules}; print(open('/proc/self/status').read())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return _status_kib(out, "VmHWM")


class Roles:
    """Role processes started through the product CLI, stopped together."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[BinaryIO] = []

    def start(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        log_file = (self.log_dir / f"{role.replace(' ', '-')}.log").open("wb")
        self._logs.append(log_file)
        process = subprocess.Popen(
            [sys.executable, "-m", "moltbot", *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        self.processes[role] = process
        return process

    def check(self) -> None:
        for role, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"role {role} exited with {process.returncode}; see {self.log_dir}")

    def peaks(self) -> dict[str, int]:
        return {role: peak_rss_kib(process.pid) for role, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log_file in self._logs:
            log_file.close()


async def _projections_caught_up(database_url: str, last_seq: int, roles: Roles, timeout: float) -> None:
    """Wait until every read model's live checkpoint reaches ``last_seq``."""
    expected = len(all_projections())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles.check()
        with contextlib.suppress(psycopg.Error):
            async with pg_connection(database_url) as conn:
                cur = await conn.execute(
                    "SELECT count(*) AS models, coalesce(min(last_seq), 0) AS reached"
                    " FROM moltbot.projection_checkpoints WHERE slot = 'live'"
                )
                row = await cur.fetchone()
                if row is not None and row["models"] >= expected and row["reached"] >= last_seq:
                    return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"read models did not reach seq {last_seq:,} in {timeout:.0f} s")


async def _consumer_drained(js: Any, durable: str, roles: Roles, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles.check()
        with contextlib.suppress(nats.errors.Error):
            info = await js.consumer_info("EVENTS", durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"consumer {durable} still has pending messages after {timeout:.0f} s")


async def _start_at_end(nc: Any, durable: str, last_seq: int) -> None:
    """Recreate ``durable`` from streams.yaml positioned after ``last_seq``: a role that was
    running all along, instead of one reading the whole history on its first start."""
    config = dict(load_streams_file(REPO_ROOT / "streams.yaml").consumer(durable).config)
    config.pop("stream", None)
    config |= {"deliver_policy": "by_start_sequence", "opt_start_seq": last_seq + 1}
    await nc.request(f"$JS.API.CONSUMER.DELETE.EVENTS.{durable}", b"", timeout=10)
    body = json.dumps({"stream_name": "EVENTS", "config": config}).encode()
    reply = json.loads((await nc.request(f"$JS.API.CONSUMER.CREATE.EVENTS.{durable}", body, timeout=10)).data)
    if "error" in reply:
        raise RuntimeError(f"could not recreate consumer {durable}: {reply['error']}")


async def _wait_healthy(url: str, roles: Roles) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(600):
            roles.check()
            try:
                if (await http.get("/healthz")).is_success:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the gateway did not answer /healthz")


async def _count(queue: asyncio.Queue[None], want: int, timeout: float) -> int:
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while got < want:
                await queue.get()
                got += 1
    return got


async def run(servers: Servers, progress: Progress) -> dict[str, Any]:
    """Peak RSS of every role and of both servers, on the bench's full log."""
    nc, pg = servers.nc, servers.postgres
    js = nc.jetstream(timeout=30)
    last_seq = (await js.stream_info("EVENTS")).state.last_seq
    work_dir = servers.work_dir / "roles"
    work_dir.mkdir(parents=True, exist_ok=True)
    await pg.create_database("roles")
    database_url = pg.url_for("roles")
    key_file = work_dir / "jwt.pem"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | {
        "MOLTBOT_NATS_URL": servers.nats.url,
        "MOLTBOT_DATABASE_URL": database_url,
        "MOLTBOT_DATA_DIR": str(work_dir),
        "MOLTBOT_JWT_KEY_FILE": str(key_file),
        "MOLTBOT_LOG_LEVEL": "warning",
        "MOLTBOT_AGENT_DEBOUNCE": "0",
    }
    Tokens.from_pem_file(key_file)  # creates the key the gateway will read
    bare = imports_peak_kib("nats, psycopg", env)
    cli = imports_peak_kib("moltbot.cli", env)
    telegram_sdk = imports_peak_kib("aiogram", env)
    roles = Roles(env, work_dir)
    assert pg.pid is not None and servers.nats.pid is not None
    did: dict[str, str] = {}
    try:
        async with PssPeak(pg.pid).sampling() as pg_peak:
            models = len(all_projections())
            progress(f"roles: projection worker process folds {models} read models over {last_seq:,} events")
            started = time.perf_counter()
            roles.start("projections", "projections", "run")
            await _projections_caught_up(database_url, last_seq, roles, timeout=120 + last_seq / 200)
            fold_seconds = time.perf_counter() - started
            did["projections"] = (
                f"folded all {models} read models from seq 1 over {last_seq:,} events"
                f" (done {fold_seconds:.0f} s after its start), then kept up with the agent load"
            )

            progress("roles: outbox reads the log from seq 1; agent, connector and gateway start")
            port = free_port()
            # Read from seq 1, the agent's ~4 queries per past message take minutes per 10k events.
            await _start_at_end(nc, "agent", last_seq)
            roles.start("agent", "agent")
            outbox_started = time.perf_counter()
            roles.start("outbox", "outbox")
            roles.start("connector webchat", "connector", "webchat")
            roles.start("gateway", "gateway", "--port", str(port))
            url = f"http://127.0.0.1:{port}"
            await _wait_healthy(url, roles)
            drained: dict[str, float] = {}
            await _consumer_drained(js, "outbox", roles, timeout=DRAIN_TIMEOUT)
            drained["outbox"] = time.perf_counter() - outbox_started
            progress(f"roles: the outbox read the log from seq 1 in {drained['outbox']:.0f} s")

            progress("roles: gateway replays one tenant over SSE and WebSocket")
            tenant_id = servers.generated[0].tenant_id
            token = await reader_token(servers.store, key_file, tenant_id)  # a member, as a sign-up makes
            tenant_events = 1 + sum(1 for e in servers.generated if e.tenant_id == tenant_id)
            await _sse_replay(url, token, tenant_events)
            await _ws_replay(url, token, tenant_events)
            did["gateway"] = f"replayed one tenant's {tenant_events:,} events over SSE, then over WebSocket"

            progress(f"roles: {agent_bench.CONVERSATIONS} messages -> agent -> outbox -> webchat connector")
            agent_tenant = ids.new_id(ids.TENANT)
            setup, conversations = agent_bench.setup_events(agent_tenant)
            requested: asyncio.Queue[None] = asyncio.Queue()
            sent: asyncio.Queue[None] = asyncio.Queue()

            async def on_requested(msg: Any) -> None:
                requested.put_nowait(None)

            async def on_sent(msg: Any) -> None:
                sent.put_nowait(None)

            prefix = f"ev.{agent_tenant}.conversation.*"
            await nc.subscribe(f"{prefix}.message_send_requested", cb=on_requested)
            await nc.subscribe(f"{prefix}.message_sent", cb=on_sent)
            store = servers.store
            await store.append_many(setup)
            await _projections_caught_up(database_url, await store.last_seq(), roles, timeout=60)
            await store.append_many([agent_bench.message(agent_tenant, c, 1) for c in conversations])
            replies = await _count(requested, len(conversations), 120)
            delivered = await _count(sent, replies, 60)
            did["agent"] = (
                f"started at the log's end (consumer recreated after seq {last_seq:,}),"
                f" answered {replies} of {len(conversations)} messages with the offline model"
            )
            did["outbox"] = (
                f"read the log from seq 1 (done {drained['outbox']:.0f} s after its start),"
                f" then turned {replies} send requests into commands"
            )
            did["connector webchat"] = f"executed {delivered} webchat send commands (message.sent appended)"
            peaks = roles.peaks()
    finally:
        roles.stop()
    rows = [
        {"role": role, "peak_rss_mib": kib / 1024, "did": did.get(role, "")} for role, kib in peaks.items()
    ]
    rows += [
        {
            "role": "nats-server",
            "peak_rss_mib": peak_rss_kib(servers.nats.pid) / 1024,
            "did": "lifetime VmHWM: the whole backbone bench (appends, raw publishes, consumes, folds)"
            " and the roles above",
        },
        {
            "role": "PostgreSQL",
            "peak_rss_mib": pg_peak.peak_kib / 1024,
            "did": f"peak summed PSS of its {pg_peak.processes} processes, sampled every"
            f" {SAMPLE_SECONDS} s while the roles ran (shared buffers counted once)",
        },
    ]
    return {
        "memory": {
            "events": last_seq,
            "baseline": {
                "role": 'bare python -c "import nats, psycopg"',
                "peak_rss_mib": bare / 1024,
                "did": "imported the two client libraries and exited",
            },
            "imports": [
                {
                    "role": 'python -c "import moltbot.cli"',
                    "peak_rss_mib": cli / 1024,
                    "did": "imported the product CLI (every role's code) and exited: no work",
                },
                {
                    "role": 'python -c "import aiogram"',
                    "peak_rss_mib": telegram_sdk / 1024,
                    "did": "the Telegram SDK alone, for scale (the gateway and telegram connector use it)",
                },
            ],
            "roles": rows,
        }
    }
