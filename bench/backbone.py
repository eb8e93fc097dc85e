"""Event backbone benchmarks: every figure next to the raw component it is built on,
measured in the same run on the same servers.

- append (EventStore.append_many)       vs raw nats-py js.publish, 512 in flight
- projection fold (live worker, inbox)  vs raw consume (nats-py fetch / ordered consumer)
                                        and raw PostgreSQL COPY of the same rows
- rebuild (inbox, from seq 1)           vs the same raw components
- durability: raw publish with sync_interval: always vs the server default
- scaling: append, fold, rebuild and their raw parts at each of several log sizes, as the
  log grows once to its full size (bench/scaling.png)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.event_store import EventStore
from adapters.nats.jetstream import JetStreamApi
from adapters.nats.streams import apply_streams, load_streams_file
from adapters.postgres.database import connection as pg_connection
from adapters.vault.cipher import Keyring
from adapters.vault.sealing import sealing
from bench.stages import Stages, Step
from bench.stages import render as render_stages
from domain.codec import EventCodec, dedupe_key
from domain.events import Event, MessageReceived
from moltbot.loadgen import generate
from projections import engine, worker
from projections import rebuild as rebuild_ops
from projections.engine import ensure_core
from projections.inbox import MESSAGE_COLUMNS, InboxProjection
from projections.registry import all_projections
from projections.worker import ProjectionWorker

REPO_ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[str], None]

_FOLD_INNER: list[Step] = [
    (engine, "fold_records", "decode, fold and write the batch"),
    (engine, "_write_or_raise", "of which: PostgreSQL writes of the batch's rows"),
]
FOLD_STEPS: list[Step] = [
    (worker, "apply_batch", "one batch's transaction, checkpoint included"),
    *_FOLD_INNER,
]
REBUILD_STEPS: list[Step] = [
    (rebuild_ops, "apply_batch", "one batch's transaction, checkpoint included"),
    *_FOLD_INNER,
]


@dataclass(frozen=True)
class Servers:
    """The backbone bench's servers, lent to a step that runs at the full log size."""

    nats: NatsServer
    postgres: PostgresServer
    nc: Any
    store: EventStore
    generated: list[Event]
    work_dir: Path


AtFullSize = Callable[[Servers, Progress], Awaitable[dict[str, Any]]]


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
                "mentions_agent": d.mentions_agent,
            }
            rows.append(tuple(values[c] for c in MESSAGE_COLUMNS))
    return rows


async def _raw_copy(database_url: str, rows: list[tuple[Any, ...]]) -> float:
    async with pg_connection(database_url) as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        columns = ", ".join(f"{name} {kind}" for name, kind in MESSAGE_COLUMNS.items())
        await conn.execute(f"CREATE TABLE bench_copy ({columns})")
        started = time.perf_counter()
        copy_sql = f"COPY bench_copy ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        async with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(list(MESSAGE_COLUMNS.values()))  # binary rows, as the inbox writes them
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
        copy_sql = f"COPY bench_indexed.messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        started = time.perf_counter()
        for start in range(0, len(rows), 1000):  # the live worker's batch size
            async with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(list(MESSAGE_COLUMNS.values()))
                for row in rows[start : start + 1000]:
                    await copy.write_row(row)
        rate = len(rows) / (time.perf_counter() - started)
        await conn.execute("DROP SCHEMA bench_indexed CASCADE")
    return rate


async def _fold(
    nc: Any,
    database_url: str,
    template: dict[str, Any],
    projections: list[Any],
    last_seq: int,
    store: EventStore | None = None,
    stages: Stages | None = None,
) -> float:
    """Fold the log from seq 1 with one live worker per read model, in this process; the
    rate. With ``stages``, each read model's batch transactions are timed under its name."""
    workers = [
        ProjectionWorker(
            jetstream=JetStreamApi(nc),
            store=store or EventStore(nc),
            database_url=database_url,
            projection=p,
            consumer_template=template,
        )
        for p in projections
    ]
    if stages is not None:
        for w in workers:
            label = f"{w.projection.name}: its batches' transactions"
            w._fold = stages.timed(w._fold, label)  # type: ignore[method-assign]
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


async def _reset_read_models(database_url: str) -> None:
    """Drop every read model and its checkpoint, so the next fold starts at seq 1."""
    async with pg_connection(database_url) as conn:
        await ensure_core(conn)
        found = await conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rm\\_%'"
            " UNION SELECT schema_name FROM moltbot.projection_checkpoints"
        )
        for (schema,) in await found.fetchall():
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.execute("DELETE FROM moltbot.projection_checkpoints")


class Log:
    """The bench's event log and its twin of raw messages, grown size by size."""

    def __init__(self, nc: Any, database_url: str, template: dict[str, Any], generated: list[Event]) -> None:
        self.nc = nc
        self.database_url = database_url
        self.template = template
        self.generated = generated
        self.store = EventStore(nc)
        codec = EventCodec()
        # The same payloads on a stream of their own: raw publishing grows it in step with EVENTS.
        self.raw_payloads = [
            (e.subject.replace("ev.", "log.", 1), codec.encode(e), dedupe_key(e)) for e in generated
        ]
        self.size = 0
        self.stages: dict[str, list[dict[str, Any]]] = {}  # of the last size measured
        self.append_seconds = 0.0
        self.raw_seconds = 0.0

    async def open(self) -> None:
        await _bench_stream(self.nc, "RAWLOG", ["log.>"])

    async def grow_and_measure(self, size: int, progress: Progress) -> dict[str, float]:
        """Append events up to ``size`` (and publish their raw twins), then measure the key
        rates on a log of ``size`` events: one point of the scaling plot."""
        increment = self.generated[self.size : size]
        progress(f"{size:,} events: append {len(increment):,} (EventStore.append_many), raw publish the same")
        started = time.perf_counter()
        for start in range(0, len(increment), 5000):
            await self.store.append_many(increment[start : start + 5000])
        seconds = time.perf_counter() - started
        self.append_seconds += seconds
        raw_publish = await _raw_publish(self.nc, self.raw_payloads[self.size : size])
        self.raw_seconds += len(increment) / raw_publish
        self.size = size
        last_seq = await self.store.last_seq()
        progress(f"{size:,} events: raw ordered consume, raw COPY")
        ordered = await raw_ordered(self.nc, last_seq)
        copy = await _raw_copy(self.database_url, _message_rows(self.generated[:size]))
        progress(f"{size:,} events: projection fold of the inbox, then its rebuild")
        await _reset_read_models(self.database_url)
        with Stages().watching(FOLD_STEPS) as folding:
            fold = await _fold(self.nc, self.database_url, self.template, [InboxProjection()], last_seq)
        with Stages().watching(REBUILD_STEPS) as rebuilding:
            async with pg_connection(self.database_url) as conn:
                report = await rebuild_ops.rebuild(conn, InboxProjection(), self.store)
        self.stages = {
            "fold": folding.rows(last_seq / 1000, "1000 events"),
            "rebuild": rebuilding.rows(last_seq / 1000, "1000 events"),
        }
        return {
            "events": size,
            "append_many": len(increment) / seconds,
            "raw_publish": raw_publish,
            "raw_ordered_consume": ordered,
            "raw_copy": copy,
            "fold_inbox": fold,
            "rebuild_inbox": report.events / report.seconds,
        }


async def _sealing_on_and_off(
    pg: PostgresServer, work_dir: Path, spec: Any, template: dict[str, Any], generated: list[Event]
) -> dict[str, tuple[float, float]]:
    """Append rate and inbox fold rate of the same events stored as they are and with their
    personal fields sealed (docs/privacy.md), each on a fresh server and database of its own,
    made the same way, one after the other: ``{"append": (off, on), "fold": (off, on)}``."""
    key_id, key = Keyring.generate_key()
    rates: dict[str, list[float]] = {"append": [], "fold": []}
    for sealed in (False, True):
        name = f"bench_sealing_{'on' if sealed else 'off'}"
        await pg.create_database(name)
        database_url = pg.url_for(name)
        async with NatsServer(work_dir / f"nats-{name}") as srv:
            nc = await nats.connect(srv.url)
            await apply_streams(nc, spec)
            async with pg_connection(database_url) as conn:
                await ensure_core(conn)
            async with sealing(nc, database_url, Keyring({key_id: key}, key_id)) as sealer:
                store = EventStore(nc, sealer=sealer if sealed else None)
                started = time.perf_counter()
                for start in range(0, len(generated), 5000):
                    await store.append_many(generated[start : start + 5000])
                rates["append"].append(len(generated) / (time.perf_counter() - started))
                last_seq = await store.last_seq()
                rates["fold"].append(
                    await _fold(nc, database_url, template, [InboxProjection()], last_seq, store)
                )
            await nc.close()
    return {name: (off, on) for name, (off, on) in rates.items()}


# Which rates the scaling plot draws, and whether each is a raw component (dashed).
SCALING_LINES = (
    ("append_many", "EventStore.append_many", False),
    ("raw_publish", "raw js.publish, 512 in flight", True),
    ("fold_inbox", "projection fold, inbox", False),
    ("rebuild_inbox", "rebuild, inbox", False),
    ("raw_ordered_consume", "raw ordered consume", True),
    ("raw_copy", "raw COPY (no indexes)", True),
)


async def run(
    events: int,
    work_dir: Path,
    progress: Progress,
    *,
    sizes: Sequence[int] = (),
    at_full_size: AtFullSize | None = None,
) -> dict[str, Any]:
    """All backbone figures on a log of ``events``; the key rates also at each of ``sizes``
    on the way there (the log grows once, so the smaller sizes cost only their reads)."""
    spec = load_streams_file(REPO_ROOT / "streams.yaml")
    codec = EventCodec()
    progress(f"generating {events:,} events")
    generated = list(generate(events, tenants=20, conversations_per_tenant=50))
    payloads = [(e.subject.replace("ev.", "bench.", 1), codec.encode(e), dedupe_key(e)) for e in generated]
    sample = payloads[: min(len(payloads), 20_000)]  # durability figures; the scaling publishes all
    steps = sorted({size for size in sizes if 0 < size < events} | {events})
    figures: list[Figure] = []
    extra: dict[str, Any] = {}

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

        template = spec.consumer_templates["projection"]
        log = Log(nc, database_url, template, generated)
        await log.open()
        scaling = [await log.grow_and_measure(size, progress) for size in steps]
        full = scaling[-1]
        last_seq = await log.store.last_seq()
        append_rate = len(generated) / log.append_seconds
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
                "EventStore.append_many",
                append_rate,
                "events/s",
                "raw js.publish of the same events, 512 in flight",
                len(generated) / log.raw_seconds,
            ),
        ]

        progress("raw consume (nats-py fetch), raw COPY with the inbox indexes")
        fetch_rate = await _raw_fetch(nc, last_seq)
        ordered_rate = full["raw_ordered_consume"]
        raw_consume = max(fetch_rate, ordered_rate)
        copy_rate = full["raw_copy"]
        indexed_copy_rate = await _raw_copy_indexed(database_url, _message_rows(generated))
        slower = min(raw_consume, copy_rate)
        slower_live = min(raw_consume, indexed_copy_rate)
        figures += [
            Figure("raw nats-py fetch(1000), AckNone", fetch_rate, "msg/s"),
            Figure("raw nats-py ordered consumer", ordered_rate, "msg/s"),
            Figure("raw PostgreSQL binary COPY (message rows, no indexes)", copy_rate, "rows/s"),
            Figure("raw PostgreSQL binary COPY, inbox indexes, 1000 rows/tx", indexed_copy_rate, "rows/s"),
        ]

        progress("projection fold: all read models together")
        await _reset_read_models(database_url)
        all_models = Stages()
        every = list(all_projections())
        all_rate = await _fold(nc, database_url, template, every, last_seq, stages=all_models)
        log.stages["all_models"] = all_models.rows(last_seq / 1000, "1000 events")
        inbox_rate = full["fold_inbox"]
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
            Figure(
                f"rebuild inbox ({last_seq:,} events)",
                full["rebuild_inbox"],
                "events/s",
                "min(raw consume, raw COPY)",
                slower,
            ),
        ]
        progress("the same log stored as it is, then with personal fields sealed: append, inbox fold")
        sealing_rates = await _sealing_on_and_off(pg, work_dir, spec, template, generated)
        off, on = sealing_rates["append"]
        fold_off, fold_on = sealing_rates["fold"]
        figures += [
            Figure(
                "EventStore.append_many, personal fields sealed",
                on,
                "events/s",
                "the same, stored as they are",
                off,
            ),
            Figure(
                "projection fold, inbox, personal fields sealed",
                fold_on,
                "events/s",
                "the same, stored as they are",
                fold_off,
            ),
        ]
        if at_full_size is not None:
            extra = await at_full_size(Servers(srv, pg, nc, log.store, generated, work_dir), progress)
        await nc.close()
    return {
        "events": events,
        "figures": [msgspec.to_builtins(f) | {"ratio": f.ratio} for f in figures],
        "scaling": scaling,
        "stages": log.stages,
    } | extra


def plot_scaling(scaling: list[dict[str, float]], path: Path) -> None:
    """One line per rate against the log size, raw components dashed; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(10, 5), dpi=110)
    sizes = [point["events"] for point in scaling]
    for key, label, raw in SCALING_LINES:
        axes.plot(sizes, [point[key] for point in scaling], "--" if raw else "-", marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(sizes, [_short(size) for size in sizes])
    axes.xaxis.set_minor_locator(ticker.NullLocator())
    axes.set_xlabel("events in the log")
    axes.set_ylabel("rate (events, messages or rows per second)")
    axes.set_title("Backbone rates against event-log size (dashed: raw components)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def _short(count: float) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    for divisor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= divisor:
            return f"{count / divisor:g}{suffix}"
    return f"{count:g}"


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
    if result.get("scaling"):
        lines += _render_scaling(result["scaling"], result.get("plot"))
    if result.get("memory"):
        lines += _render_memory(result["memory"])
    lines += _render_stages(result.get("stages") or {})
    return "\n".join(lines) + "\n"


_STAGE_TITLES = {
    "fold": (
        "Inbox fold (live worker)",
        "What is not inside a batch's transaction is the wait for the next batch from NATS"
        " (the worker fetches one ahead) and the ack.",
    ),
    "rebuild": (
        "Inbox rebuild",
        "Two lanes fold at once, each a share of the tenants on a connection of its own, so their"
        " times overlap: per 1000 events they add up to more than the rebuild took.",
    ),
    "all_models": (
        f"{len(all_projections())} read models folding at once",
        "One live worker per read model, all in one process (as `moltbot up` runs them): each"
        " read model's batch transactions, decoding and folding in Python included. They"
        " interleave on one event loop and one core, so their times overlap; the rest is NATS"
        " delivery and acks.",
    ),
    "agent": (
        "Agent trigger -> reply send request (runs one at a time)",
        "The whole trigger runs from the consumer's delivery to the reply's batch; the steps"
        " inside it follow one another.",
    ),
}


def _render_stages(stages: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not stages:
        return []
    lines = [
        "",
        "## Where the time goes",
        "",
        "Wall time inside named steps of the product, timed in this run while the figure above was"
        " measured (the full-size log for the fold and the rebuild).",
    ]
    for key, rows in stages.items():
        title, intro = _STAGE_TITLES.get(key, (key, ""))
        lines += render_stages(title, intro, rows)
    return lines


def _render_scaling(scaling: list[dict[str, float]], plot: str | None) -> list[str]:
    lines = [
        "",
        "## Rates against event-log size",
        "",
        "One log grows through each size; at each, the append and raw-publish rates are those of",
        "the events added since the previous size, the reads (consume, COPY, fold, rebuild) cover",
        "the whole log from seq 1.",
        "",
    ]
    if plot:
        lines += [f"![rates against event-log size]({plot})", ""]
    lines += [
        "| events in the log | " + " | ".join(label for _, label, _ in SCALING_LINES) + " |",
        "|---:|" + "---:|" * len(SCALING_LINES),
    ]
    for point in scaling:
        cells = " | ".join(f"{point[key]:,.0f}" for key, _, _ in SCALING_LINES)
        lines.append(f"| {point['events']:,.0f} | {cells} |")
    return lines


def _render_memory(memory: dict[str, Any]) -> list[str]:
    baseline = memory["baseline"]
    lines = [
        "",
        "## Peak RSS by role",
        "",
        f"Each role ran as its own process (`python -m moltbot ...`) on the {memory['events']:,}-event log;",
        "its peak is VmHWM from /proc, read just before it was stopped. Read each role against the",
        "bare client and against the CLI's own imports, both measured in this run (peak RSS at exit).",
        "",
        "| process | peak RSS | vs bare client | what it did while measured |",
        "|---|---:|---:|---|",
        f"| {baseline['role']} | {baseline['peak_rss_mib']:,.1f} MiB | 1.00x | {baseline['did']} |",
    ]
    for row in [*memory["imports"], *memory["roles"]]:
        ratio = row["peak_rss_mib"] / baseline["peak_rss_mib"]
        lines.append(f"| {row['role']} | {row['peak_rss_mib']:,.1f} MiB | {ratio:.2f}x | {row['did']} |")
    return lines


def as_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
