"""Rebuilding a read model beside the live one, verifying it, and reporting status.

rebuild: replay the log from sequence 1 into ``rm_<name>__next`` at bulk speed
(secondary indexes built afterwards), then in one transaction lock the live checkpoint
(which pauses the live worker), apply what arrived meanwhile, swap the schemas by
renaming and drop the old one. Readers see the old model or the new one, never a mix.

verify: the same replay into a scratch schema, caught up to exactly the live
checkpoint under the same lock, then compared table by table, row for row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from psycopg import sql

from adapters.postgres.database import Connection, connection_like
from domain.ports import EventStore, StoredRecord
from projections.base import Projection, consumer_name, live_schema
from projections.engine import (
    FoldTarget,
    apply_batch,
    create_tables,
    discard_dead_letters,
    ensure_core,
    lock_checkpoint,
    read_checkpoint,
    set_schema,
)
from projections.partitions import bucket_of, has_partitions, level_after_rebuild, lock_all, read_partitions
from projections.run_lock import running

log = structlog.get_logger()

Progress = Callable[[int, int], None]  # (last applied seq, target seq)


class RebuildReport(msgspec.Struct, frozen=True):
    projection: str
    version: int
    events: int
    last_seq: int
    seconds: float


class TableDiff(msgspec.Struct, frozen=True):
    table: str
    only_in_live: int
    only_in_rebuilt: int
    sample: list[str]


class VerifyReport(msgspec.Struct, frozen=True):
    projection: str
    last_seq: int
    identical: bool
    differences: list[TableDiff]


async def _batches(
    store: EventStore, since: int, until_seq: int, size: int
) -> AsyncIterator[list[StoredRecord]]:
    chunk: list[StoredRecord] = []
    async for record in store.read(since=since, until_seq=until_seq, batch=size):
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _Replay:
    """Replaying the log into a schema beside the live one, under its own checkpoint ``slot``."""

    conn: Connection
    store: EventStore
    target: FoldTarget
    slot: str
    batch_size: int

    async def run(
        self,
        *,
        since: int,
        until_seq: int,
        progress: Progress | None,
        keep: Callable[[StoredRecord], bool] | None = None,
    ) -> int:
        """Apply [since, until_seq] (only the records ``keep`` accepts, if given); the number
        of records read."""
        count = 0
        async for chunk in _batches(self.store, since, until_seq, self.batch_size):
            kept = chunk if keep is None else [record for record in chunk if keep(record)]
            await apply_batch(self.conn, self.target, kept, slot=self.slot)
            count += len(chunk)
            if progress:
                progress(chunk[-1].seq, until_seq)
        return count


LANES = 2  # connections the bulk load of a rebuild or verify folds on at once


async def _load_in_lanes(replay: _Replay, *, until_seq: int, progress: Progress | None) -> int:
    """Replay [1, until_seq] into the replay's schema with each chunk split by tenant over
    :data:`LANES` connections of their own, each under a checkpoint slot of its own
    (``<slot>.<lane>``): one lane folds in Python while the other's rows are written. A
    read model is folded tenant by tenant (partition workers rely on that too), so the
    shares are independent. At the end the replay's own slot holds ``until_seq``; the
    number of records read. A load that fails is started again from seq 1 by the next run."""
    conn, projection, slot = replay.conn, replay.target.projection, replay.slot
    slots = [f"{slot}.{lane}" for lane in range(LANES)]
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO moltbot.projection_checkpoints (projection, slot, version, schema_name)"
            " SELECT projection, lane, version, schema_name FROM moltbot.projection_checkpoints,"
            " unnest(%s::text[]) AS lane WHERE projection = %s AND slot = %s"
            " ON CONFLICT (projection, slot) DO UPDATE SET version = EXCLUDED.version,"
            " schema_name = EXCLUDED.schema_name, last_seq = 0",
            (slots, projection.name, slot),
        )
    count = 0
    async with contextlib.AsyncExitStack() as stack:
        lanes = [await stack.enter_async_context(connection_like(conn)) for _ in slots]
        lane_of: dict[str, int] = {}
        async for chunk in _batches(replay.store, 1, until_seq, replay.batch_size):
            shares: list[list[StoredRecord]] = [[] for _ in slots]
            for record in chunk:
                tenant_id = record.subject.split(".", 2)[1]
                if (lane := lane_of.get(tenant_id)) is None:
                    lane = lane_of[tenant_id] = bucket_of(tenant_id, LANES)
                shares[lane].append(record)
            async with asyncio.TaskGroup() as tasks:
                for lane_conn, share, lane_slot in zip(lanes, shares, slots, strict=True):
                    if share:
                        tasks.create_task(apply_batch(lane_conn, replay.target, share, slot=lane_slot))
            count += len(chunk)
            if progress:
                progress(chunk[-1].seq, until_seq)
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM moltbot.projection_checkpoints WHERE projection = %s AND slot = ANY(%s)",
            (projection.name, slots),
        )
        await conn.execute(
            "UPDATE moltbot.projection_checkpoints SET last_seq = %s, updated_at = now()"
            " WHERE projection = %s AND slot = %s",
            (until_seq, projection.name, slot),
        )
    return count


async def _build_beside(
    conn: Connection,
    projection: Projection,
    store: EventStore,
    *,
    slot: str,
    batch_size: int,
    progress: Progress | None,
    until_seq: int | None = None,
) -> tuple[_Replay, int, int]:
    """Create ``rm_<name>__<slot>`` and replay into it; (the replay, to continue it, the last
    seq and the number of records read)."""
    await ensure_core(conn)
    schema = f"{live_schema(projection)}__{slot}"
    async with conn.transaction():
        await create_tables(conn, projection, schema, with_indexes=False)
        await conn.execute(
            "INSERT INTO moltbot.projection_checkpoints (projection, slot, version, schema_name)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (projection, slot) DO UPDATE"
            " SET version = EXCLUDED.version, schema_name = EXCLUDED.schema_name, last_seq = 0",
            (projection.name, slot, projection.version, schema),
        )
    target = FoldTarget(
        projection=projection,
        schema=schema,
        codec=store.codec,
        consumer=f"{consumer_name(projection)}-{slot}",
        on_dead_letters=discard_dead_letters,  # the live worker dead-lettered them already
        open_many=None,  # store.read opens what it replays already
    )
    replay = _Replay(conn, store, target, slot, batch_size)
    last_seq = await store.last_seq() if until_seq is None else until_seq
    count = await _load_in_lanes(replay, until_seq=last_seq, progress=progress)
    if projection.index_sql().strip():
        async with conn.transaction():
            await set_schema(conn, schema)
            await conn.execute(projection.index_sql())
    return replay, last_seq, count


async def _pause_writers(conn: Connection, projection: Projection) -> int | None:
    """Lock what the live workers lock, in their order (partition workers' buckets, if any,
    then 'live'), until the transaction ends; the 'live' checkpoint, None if there is none."""
    await lock_all(conn, projection)
    return await lock_checkpoint(conn, projection, "live")


async def rebuild(
    conn: Connection,
    projection: Projection,
    store: EventStore,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> RebuildReport:
    started = time.perf_counter()
    replay, built_to, count = await _build_beside(
        conn, projection, store, slot="next", batch_size=batch_size, progress=progress
    )
    schema = replay.target.schema
    live = live_schema(projection)
    async with conn.transaction():
        had_live = await _pause_writers(conn, projection) is not None
        # The live worker is paused on the lock above: catch up with what it applied.
        latest = await store.last_seq()
        count += await replay.run(since=built_to + 1, until_seq=latest, progress=progress)
        old = f"{live}__old"
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(old)))
        if had_live:
            await conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(old))
            )
        await conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(schema), sql.Identifier(live))
        )
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(old)))
        cur = await conn.execute(
            "DELETE FROM moltbot.projection_checkpoints WHERE projection = %s AND slot = 'next'"
            " RETURNING last_seq",
            (projection.name,),
        )
        row = await cur.fetchone()
        assert row is not None
        last_seq = int(row["last_seq"])  # type: ignore[call-overload]
        await conn.execute(
            "INSERT INTO moltbot.projection_checkpoints"
            " (projection, slot, version, schema_name, last_seq) VALUES (%s, 'live', %s, %s, %s)"
            " ON CONFLICT (projection, slot) DO UPDATE SET version = EXCLUDED.version,"
            " schema_name = EXCLUDED.schema_name, last_seq = EXCLUDED.last_seq, updated_at = now()",
            (projection.name, projection.version, live, last_seq),
        )
        if await has_partitions(conn):
            await level_after_rebuild(conn, projection, last_seq)
    seconds = time.perf_counter() - started
    log.info(
        "projection_rebuilt", projection=projection.name, events=count, last_seq=last_seq, seconds=seconds
    )
    return RebuildReport(projection.name, projection.version, count, last_seq, seconds)


async def verify(
    conn: Connection,
    projection: Projection,
    store: EventStore,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> VerifyReport:
    live_row = await read_checkpoint(conn, projection, "live")
    if live_row is None:
        raise LookupError(f"{projection.name} has no live read model to verify")
    replay, built_to, _ = await _build_beside(
        conn,
        projection,
        store,
        slot="verify",
        batch_size=batch_size,
        progress=progress,
        until_seq=int(live_row["last_seq"]),  # type: ignore[call-overload]
    )
    schema = replay.target.schema
    live = live_schema(projection)
    try:
        async with conn.transaction():
            live_seq = await _pause_writers(conn, projection)
            assert live_seq is not None
            # Partition workers may have applied some buckets beyond 'live': catch up each
            # bucket exactly to its own checkpoint.
            buckets = {b: events for b, (events, _) in (await read_partitions(conn, projection)).items()}
            keep = None
            if buckets and max(buckets.values()) > live_seq:
                live_seq = max(buckets.values())

                def keep(record: StoredRecord) -> bool:
                    tenant_id = record.subject.split(".")[1]
                    return record.seq <= buckets[bucket_of(tenant_id, len(buckets))]

            await replay.run(since=built_to + 1, until_seq=live_seq, progress=None, keep=keep)
            differences = [await _compare(conn, live, schema, table) for table in projection.tables]
    finally:
        async with conn.transaction():
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            await conn.execute(
                "DELETE FROM moltbot.projection_checkpoints WHERE projection = %s AND slot = 'verify'",
                (projection.name,),
            )
    found = [d for d in differences if d.only_in_live or d.only_in_rebuilt]
    return VerifyReport(projection.name, live_seq, not found, found)


async def _compare(conn: Connection, live: str, rebuilt: str, table: str) -> TableDiff:
    a = sql.Identifier(live, table)
    b = sql.Identifier(rebuilt, table)
    only_live = await conn.execute(
        sql.SQL("SELECT to_jsonb(d)::text AS row FROM (TABLE {} EXCEPT ALL TABLE {}) d").format(a, b)
    )
    live_rows = [r["row"] for r in await only_live.fetchall()]
    only_rebuilt = await conn.execute(
        sql.SQL("SELECT to_jsonb(d)::text AS row FROM (TABLE {} EXCEPT ALL TABLE {}) d").format(b, a)
    )
    rebuilt_rows = [r["row"] for r in await only_rebuilt.fetchall()]
    sample = [f"live: {r}" for r in live_rows[:3]] + [f"rebuilt: {r}" for r in rebuilt_rows[:3]]
    return TableDiff(table, len(live_rows), len(rebuilt_rows), sample)


async def status(conn: Connection, projection: Projection, store: EventStore) -> dict[str, Any]:
    """Checkpoint, stream last sequence and lag of one projection; which workers fold it now;
    when it runs partitioned, how many buckets and the lowest and highest bucket checkpoints."""
    await ensure_core(conn)
    row = await read_checkpoint(conn, projection, "live")
    stream_last = await store.last_seq()
    checkpoint = int(row["last_seq"]) if row else 0  # type: ignore[call-overload]
    buckets = [events_seq for events_seq, _ in (await read_partitions(conn, projection)).values()]
    return {
        "projection": projection.name,
        "version": row["version"] if row else None,
        "code_version": projection.version,
        "consumer": consumer_name(projection),
        "checkpoint": checkpoint,
        "stream_last_seq": stream_last,
        "lag": max(stream_last - checkpoint, 0),
        "updated_at": str(row["updated_at"]) if row else None,
        "running": (await running(conn, projection)).describe(),
        "buckets": {"count": len(buckets), "lowest": min(buckets), "highest": max(buckets)}
        if buckets
        else None,
    }
