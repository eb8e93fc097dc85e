"""Realtime delivery benchmarks, with the gateway in its own process as in production.

- replay to one SSE client and one WebSocket client (one frame per event, and the protocol's
  batched frames)                                     vs a raw nats-py ordered consumer
  reading the same tenant's events
- the same replays of a second tenant whose personal fields are sealed
                                                      vs the first tenant's (stored as they are)
- message.received append -> delivery on a subscribed WebSocket, p50/p99
                                                      vs a raw NATS request/reply round trip
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
from websockets.asyncio.client import connect as ws_connect

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.embedded.processes import free_port
from adapters.nats.event_store import EventStore
from adapters.nats.streams import apply_streams, load_streams_file
from adapters.vault.cipher import Keyring
from adapters.vault.sealing import sealing
from bench.backbone import REPO_ROOT, Figure, Progress, raw_ordered
from domain import events as ev
from domain import ids
from gateway.auth import Caller, Tokens
from moltbot.loadgen import generate

LATENCY_SAMPLES = 300


def _percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


async def _sse_replay(url: str, token: str, count: int) -> float:
    got = 0
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as http,
        http.stream(
            "GET", "/v1/events", params={"since": 1}, headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        async for line in resp.aiter_lines():
            if line.startswith("id:"):
                got += 1
                if got >= count:
                    break
    return got / (time.perf_counter() - started)


async def _ws_replay(url: str, token: str, count: int, *, batched: bool = False) -> float:
    """Events per second to a WebSocket client: one frame each, or (``batched``) the protocol's
    ``{"op":"events"}`` frames, each decoded to count its events."""
    got = 0
    started = time.perf_counter()
    async with ws_connect(url.replace("http://", "ws://") + "/v1/ws", max_size=None) as socket:
        await socket.send(json.dumps({"op": "subscribe", "since": 1, "token": token, "batch": batched}))
        async for raw in socket:
            if not isinstance(raw, str):
                continue
            if raw.startswith('{"op":"event"'):
                got += 1
            elif raw.startswith('{"op":"events"'):
                got += len(msgspec.json.decode(raw)["events"])
            if got >= count:
                break
    return got / (time.perf_counter() - started)


async def _ws_latency(url: str, token: str, store: EventStore, tenant_id: str) -> list[float]:
    conversation_id = ids.new_id(ids.CONVERSATION)
    connection_id = ids.new_id(ids.CONNECTION)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    async with ws_connect(url.replace("http://", "ws://") + "/v1/ws") as socket:
        await socket.send(json.dumps({"op": "subscribe", "token": token, "topics": ["message.received"]}))
        await socket.recv()
        for n in range(LATENCY_SAMPLES):
            message_id = ids.stable_id("m", f"bench:{connection_id}:{n}")
            event = ev.new_event(
                ev.MessageReceived,
                tenant_id=tenant_id,
                aggregate_id=conversation_id,
                actor=f"connector:webchat:{connection_id}",
                data=ev.MessageReceivedData(
                    message_id=message_id,
                    connection_id=connection_id,
                    channel="webchat",
                    provider_message_id=str(n),
                    sender=ev.Sender(id="visitor", name="Visitor"),
                    text="ping",
                    sent_at=datetime.now(UTC),
                ),
            )
            sent_at[message_id] = time.perf_counter()
            await store.append(event)
            while True:
                raw = json.loads(await asyncio.wait_for(socket.recv(), 10))
                if raw.get("op") == "event" and raw["event"]["data"]["message_id"] == message_id:
                    latencies.append((time.perf_counter() - sent_at[message_id]) * 1000)
                    break
            await asyncio.sleep(0.01)
    return latencies


async def _nats_round_trips(nc: Any) -> list[float]:
    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    sub = await nc.subscribe("bench.echo", cb=echo)
    samples = []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        await nc.request("bench.echo", b"ping", timeout=5)
        samples.append((time.perf_counter() - started) * 1000)
    await sub.unsubscribe()
    return samples


async def reader_token(store: EventStore, key_file: Path, tenant_id: str) -> str:
    """An owner's access token for ``tenant_id``. The reader is a member, as a sign-up makes
    one: its token names the membership's seq, so the gateway believes its role though no
    read model runs here."""
    joined = await store.append(
        ev.new_event(
            ev.MemberAdded,
            tenant_id=tenant_id,
            aggregate_id=tenant_id,
            actor="user:u_bench",
            data=ev.MemberAddedData(user_id="u_bench", role="owner"),
        )
    )
    reader = Caller(user_id="u_bench", tenant_id=tenant_id, role="owner", membership_seq=joined.seq)
    return Tokens.from_pem_file(key_file).issue(reader).access_token


async def run(events: int, work_dir: Path, progress: Progress) -> list[Figure]:
    spec = load_streams_file(REPO_ROOT / "streams.yaml")
    generated = list(generate(events, tenants=1))
    tenant_id = generated[0].tenant_id
    sealed_generated = list(generate(events, tenants=1, seed=8))  # another tenant
    key_file = work_dir / "jwt.pem"
    key_id, key = Keyring.generate_key()
    keyring = Keyring({key_id: key}, key_id)
    async with PostgresServer(work_dir / "pg-rt") as pg, NatsServer(work_dir / "nats-rt") as srv:
        await pg.create_database("bench")
        nc = await nats.connect(srv.url)
        await apply_streams(nc, spec)
        store = EventStore(nc)
        progress(f"realtime: append {events:,} events for one tenant, and as many sealed for another")
        async with sealing(nc, pg.url_for("bench"), keyring) as sealer:
            sealed_store = EventStore(nc, sealer=sealer)
            # Interleaved, a chunk of each in turn: each tenant's replay skips as much of the
            # other's as the other's skips of it (where in the log a tenant sits costs its reader).
            for start in range(0, len(generated), 1000):
                await store.append_many(generated[start : start + 1000])
                await sealed_store.append_many(sealed_generated[start : start + 1000])
            token = await reader_token(store, key_file, tenant_id)
            sealed_token = await reader_token(sealed_store, key_file, sealed_generated[0].tenant_id)
        key_entries = keyring.to_key_file()
        port = free_port()
        env = os.environ | {
            "MOLTBOT_NATS_URL": srv.url,
            "MOLTBOT_DATABASE_URL": pg.url_for("bench"),
            "MOLTBOT_JWT_KEY_FILE": str(key_file),
            "MOLTBOT_LOG_LEVEL": "warning",
            "MOLTBOT_VAULT_KEYS": ",".join(f"{k}:{v}" for k, v in key_entries.keys.items()),
            "MOLTBOT_VAULT_KEY_ID": key_entries.current,
        }
        gateway = subprocess.Popen(
            [sys.executable, "-m", "moltbot", "gateway", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/healthz")).is_success:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            progress("realtime: raw ordered consumer, SSE and WebSocket replay")
            raw = await raw_ordered(nc, len(generated), f"ev.{tenant_id}.>")
            sse = await _sse_replay(url, token, len(generated))
            websocket = await _ws_replay(url, token, len(generated))
            batched_websocket = await _ws_replay(url, token, len(generated), batched=True)
            progress("realtime: SSE and WebSocket replay of the sealed tenant")
            sealed_sse = await _sse_replay(url, sealed_token, len(sealed_generated))
            sealed_websocket = await _ws_replay(url, sealed_token, len(sealed_generated))
            progress(f"realtime: {LATENCY_SAMPLES} appends -> WebSocket delivery, and NATS round trips")
            latencies = await _ws_latency(url, token, store, tenant_id)
            round_trips = await _nats_round_trips(nc)
        finally:
            gateway.terminate()
            gateway.wait(30)
            await nc.close()
    return [
        Figure("raw nats-py ordered consumer, one tenant", raw, "events/s"),
        Figure("SSE replay to one client", sse, "events/s", "raw ordered consumer", raw),
        Figure("WebSocket replay to one client", websocket, "events/s", "raw ordered consumer", raw),
        Figure(
            "WebSocket replay to one client, batched frames",
            batched_websocket,
            "events/s",
            "raw ordered consumer",
            raw,
        ),
        Figure(
            "SSE replay, personal fields sealed",
            sealed_sse,
            "events/s",
            "SSE replay, stored as they are",
            sse,
        ),
        Figure(
            "WebSocket replay, personal fields sealed",
            sealed_websocket,
            "events/s",
            "WebSocket replay, stored as they are",
            websocket,
        ),
        Figure("raw NATS request/reply round trip p50", _percentile(round_trips, 50), "ms"),
        Figure("raw NATS request/reply round trip p99", _percentile(round_trips, 99), "ms"),
        Figure(
            "append -> WebSocket delivery p50",
            _percentile(latencies, 50),
            "ms",
            "NATS round trip p50",
            _percentile(round_trips, 50),
        ),
        Figure(
            "append -> WebSocket delivery p99",
            _percentile(latencies, 99),
            "ms",
            "NATS round trip p99",
            _percentile(round_trips, 99),
        ),
    ]
