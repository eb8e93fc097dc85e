"""Event backbone benchmarks: every figure next to the raw component it is built on,
measured in the same run on the same servers.

- append (EventStore.append_many)       vs raw nats-py js.publish, 512 in flight
- projection fold (live worker, inbox)  vs raw consume (nats-py fetch / ordered consumer)
                                        and raw PostgreSQL COPY of the same rows
- rebuild (inbox, from seq 1)           vs the same raw components
- durability: raw publish with sync_interval: always vs the server default
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.event_store import EventStore
from adapters.nats.streams import apply_streams, load_streams_file
from adapters.postgres.database import connection as pg_connection
from domain.codec import EventCodec, dedupe_key
from domain.events import Event, MessageReceived
from moltbot.loadgen import generate
from projections import rebuild as rebuild_ops
from projections.inbox import MESSAGE_COLUMNS, InboxProjection
from projections.registry import all_projections
from projections.worker import ProjectionWorker

REPO_ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[str], None]


class Figure(msgspec.Struct):
    name: str
    rate: float  # per second
    unit: str
    baseline: str | None = None
    baseline_rate: float | None = None

    @property
    def ratio(self) -> float | None:
        return self.rate / self.baseline_rate if self.baseline_rate else None


async def _raw_publish(nc: Any, payloads: list[tuple[str, bytes, str]], window: int = 512) -> float:
    js = nc.jetstream(timeout=30)
    started = time.perf_counter()
    for start in range(0, len(payloads), window):
        chunk = payloads[start : start + window]
        await asyncio.gather(
            *(js.publish(subject, data, headers={"Nats-Msg-Id": key}) for subject, data, key in chunk)
        )
    return len(payloads) / (time.perf_counter() - started)


async def _raw_publish_serial(nc: Any, payloads: list[tuple[str, bytes, str]]) -> float:
    js = nc.jetstream(timeout=30)
    started = time.perf_counter()
    for subject, data, key in payloads:
        await js.publish(subject, data, headers={"Nats-Msg-Id": key})
    return len(payloads) / (time.perf_counter() - started)


async def _bench_stream(nc: Any, name: str, subjects: list[str]) -> None:
    await nc.jetstream().add_stream(name=name, subjects=subjects, storage="file", duplicate_window=120)


async def _raw_fetch(nc: Any, count: int, batch: int = 1000) -> float:
    js = nc.jetstream(timeout=30)
    sub = await js.pull_subscribe(
        "ev.>",
        stream="EVENTS",
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, mem_storage=True),
    )
    got = 0
    started = time.perf_counter()
    while got < count:
        got += len(await sub.fetch(batch, timeout=5))
    rate = got / (time.perf_counter() - started)
    await sub.unsubscribe()
    return rate


async def raw_ordered(nc: Any, count: int, subject: str = "ev.>") -> float:
    """Events/s of a nats-py ordered push consumer reading ``subject`` from EVENTS."""
    js = nc.jetstream(timeout=30)
    done = asyncio.Event()
    got = 0

    async def on_message(msg: Any) -> None:
        nonlocal got
        got += 1
        if got >= count:
            done.set()

    started = time.perf_counter()
    sub = await js.subscribe(subject, stream="EVENTS", ordered_consumer=True, cb=on_message)
    await asyncio.wait_for(done.wait(), 600)
    rate = got / (time.perf_counter() - started)
    await sub.unsubscribe()
    return rate


def _message_rows(events: list[Event]) -> list[tuple[Any, ...]]:
    rows = []
    for seq, event in enumerate(events, start=1):
        if isinstance(event, MessageReceived):
            d = event.data
            values = {
                "message_id": d.message_id,
                "tenant_id": event.tenant_id,
                "conversation_id": event.aggregate_id,
                "seq": seq,
                "direction": "in",
                "channel": d.channel,
                "connection_id": d.connection_id,
                "provider_message_id": d.provider_message_id,
                "sender_id": d.sender.id,
                "sender_name": d.sender.name,
                "text": d.text,
                "sent_at": d.sent_at,
                "edited_at": None,
                "deleted_at": None,
                "status": "received",
                "agent_run_id": None,
                "reply_to_message_id": None,
                "attachments": 0,
            }
            rows.append(tuple(values[c] for c in MESSAGE_COLUMNS))
    return rows


_COPY_TYPES = {"seq": "bigint", "sent_at": "timestamptz", "edited_at": "timestamptz",
               "deleted_at": "timestamptz", "attachments": "integer"}  # fmt: skip


async def _raw_copy(database_url: str, rows: list[tuple[Any, ...]]) -> float:
    async with pg_connection(database_url) as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        columns = ", ".join(f"{name} {_COPY_TYPES.get(name, 'text')}" for name in MESSAGE_COLUMNS)
        await conn.execute(f"CREATE TABLE bench_copy ({columns})")
        started = time.perf_counter()
        copy_sql = f"COPY bench_copy ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN"
        async with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for row in rows:
                await copy.write_row(row)
        rate = len(rows) / (time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_copy")
    return rate


async def _raw_copy_indexed(database_url: str, rows: list[tuple[Any, ...]]) -> float:
    """COPY into a messages table with the inbox's own indexes (GIN full text included):
    the PostgreSQL work a live fold cannot avoid."""
    inbox = InboxProjection()
    async with pg_connection(database_url) as conn:
        await conn.execute("DROP SCHEMA IF EXISTS bench_indexed CASCADE")
        await conn.execute("CREATE SCHEMA bench_indexed")
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO bench_indexed")
            await conn.execute(inbox.schema_sql())
            await conn.execute(inbox.index_sql())
        copy_sql = f"COPY bench_indexed.messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN"
        started = time.perf_counter()
        for start in range(0, len(rows), 1000):  # the live worker's batch size
            async with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for row in rows[start : start + 1000]:
                    await copy.write_row(row)
        rate = len(rows) / (time.perf_counter() - started)
        await conn.execute("DROP SCHEMA bench_indexed CASCADE")
    return rate


async def _fold(
    nc: Any, database_url: str, template: dict[str, Any], projections: list[Any], last_seq: int
) -> float:
    workers = [
        ProjectionWorker(nc=nc, database_url=database_url, projection=p, consumer_template=template)
        for p in projections
    ]
    started = time.perf_counter()
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        while min(w.last_applied_seq for w in workers) < last_seq:
            await asyncio.sleep(0.02)
            for task in tasks:
                if task.done():
                    task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return last_seq / (time.perf_counter() - started)


async def run(events: int, work_dir: Path, progress: Progress) -> dict[str, Any]:
    spec = load_streams_file(REPO_ROOT / "streams.yaml")
    codec = EventCodec()
    progress(f"generating {events:,} events")
    generated = list(generate(events, tenants=20, conversations_per_tenant=50))
    payloads = [(e.subject.replace("ev.", "bench.", 1), codec.encode(e), dedupe_key(e)) for e in generated]
    sample = payloads[: min(len(payloads), 50_000)]
    figures: list[Figure] = []

    async with (
        PostgresServer(work_dir / "pg") as pg,
        NatsServer(work_dir / "nats") as srv,
        NatsServer(work_dir / "nats-lazy", sync_always=False) as lazy,
    ):
        await pg.create_database("bench")
        database_url = pg.url_for("bench")
        nc = await nats.connect(srv.url)
        await apply_streams(nc, spec)
        await _bench_stream(nc, "BENCH", ["bench.>"])

        progress("raw publish (nats-py js.publish)")
        raw_serial = await _raw_publish_serial(nc, sample[:3000])
        raw_window = await _raw_publish(nc, sample)
        lazy_nc = await nats.connect(lazy.url)
        await _bench_stream(lazy_nc, "BENCH", ["bench.>"])
        raw_lazy = await _raw_publish(lazy_nc, sample)
        await lazy_nc.close()

        progress(f"append {events:,} events (EventStore.append_many)")
        store = EventStore(nc)
        started = time.perf_counter()
        for start in range(0, len(generated), 5000):
            await store.append_many(generated[start : start + 5000])
        append_rate = len(generated) / (time.perf_counter() - started)
        last_seq = await store.last_seq()
        figures += [
            Figure("raw js.publish, one at a time", raw_serial, "msg/s"),
            Figure("raw js.publish, 512 in flight, sync_interval: always", raw_window, "msg/s"),
            Figure(
                "raw js.publish, 512 in flight, default sync (2 min)",
                raw_lazy,
                "msg/s",
                "raw js.publish, sync always",
                raw_window,
            ),
            Figure(
                "EventStore.append_many", append_rate, "events/s", "raw js.publish, 512 in flight", raw_window
            ),
        ]

        progress("raw consume (nats-py fetch, ordered consumer)")
        fetch_rate = await _raw_fetch(nc, last_seq)
        ordered_rate = await raw_ordered(nc, last_seq)
        raw_consume = max(fetch_rate, ordered_rate)
        progress("raw COPY")
        rows = _message_rows(generated)
        copy_rate = await _raw_copy(database_url, rows)
        indexed_copy_rate = await _raw_copy_indexed(database_url, rows)
        slower = min(raw_consume, copy_rate)
        slower_live = min(raw_consume, indexed_copy_rate)
        figures += [
            Figure("raw nats-py fetch(1000), AckNone", fetch_rate, "msg/s"),
            Figure("raw nats-py ordered consumer", ordered_rate, "msg/s"),
            Figure("raw PostgreSQL COPY (message rows, no indexes)", copy_rate, "rows/s"),
            Figure("raw PostgreSQL COPY, inbox indexes, 1000 rows/tx", indexed_copy_rate, "rows/s"),
        ]

        progress("projection fold: inbox from seq 1")
        template = spec.consumer_templates["projection"]
        inbox_rate = await _fold(nc, database_url, template, [InboxProjection()], last_seq)
        progress("projection fold: all read models together")
        async with pg_connection(database_url) as conn:
            await conn.execute("DROP SCHEMA rm_inbox CASCADE")
            await conn.execute("DELETE FROM moltbot.projection_checkpoints")
        all_rate = await _fold(nc, database_url, template, list(all_projections()), last_seq)
        figures += [
            Figure("projection fold, inbox", inbox_rate, "events/s", "min(raw consume, raw COPY)", slower),
            Figure(
                "projection fold, inbox",
                inbox_rate,
                "events/s",
                "min(raw consume, COPY with inbox indexes)",
                slower_live,
            ),
            Figure(
                f"projection fold, {len(all_projections())} read models at once (per model)",
                all_rate,
                "events/s",
                "min(raw consume, raw COPY)",
                slower,
            ),
        ]

        progress(f"rebuild inbox from {last_seq:,} events")
        async with pg_connection(database_url) as conn:
            report = await rebuild_ops.rebuild(conn, InboxProjection(), store)
        figures.append(
            Figure(
                f"rebuild inbox ({report.events:,} events)",
                report.events / report.seconds,
                "events/s",
                "min(raw consume, raw COPY)",
                slower,
            )
        )
        await nc.close()
    return {"events": events, "figures": [msgspec.to_builtins(f) | {"ratio": f.ratio} for f in figures]}


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Event log size: {result['events']:,} events. Client, nats-server and PostgreSQL share one machine;",
        "read the ratios, not the absolute rates.",
        "",
        "| figure | rate | compared with | its rate | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for f in result["figures"]:
        baseline = f["baseline"] or ""
        base_rate = f"{f['baseline_rate']:,.0f}" if f["baseline_rate"] else ""
        ratio = f"{f['ratio']:.2f}x" if f["ratio"] else ""
        precision = ".2f" if f["unit"] == "ms" else ",.0f"
        rate = f"{f['rate']:{precision}} {f['unit']}"
        if f["baseline_rate"]:
            base_rate = f"{f['baseline_rate']:{precision}}"
        lines.append(f"| {f['name']} | {rate} | {baseline} | {base_rate} | {ratio} |")
    return "\n".join(lines) + "\n"


def as_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
