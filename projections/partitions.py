"""Partitioned projection workers: the tenants split into fixed buckets, each bucket
folded by exactly one of N workers, with a checkpoint per bucket.

The partitioned feed is the stream ``EVENTS_PARTITIONED`` (streams.yaml,
``partitioned_projections``): it sources EVENTS through the subject transform
``ev.*.>`` → ``part.{{partition(P,1)}}.ev.{{wildcard(1)}}.>``, so every event of a tenant
lands in the same bucket, in log order, and keeps its EVENTS sequence in the
``Nats-Stream-Source`` header (``EVENTS <seq> <filter> <transform> <subject> <id>``).
Worker K of N consumes the buckets ``b % N == K``.

Checkpoints (``moltbot.projection_partitions``, one row per read model and bucket):

* ``events_seq``: every event of the bucket up to this EVENTS sequence is applied;
  records at or below it are skipped, so a repeated batch is a no-op.
* ``source_seq``: the EVENTS_PARTITIONED sequence to resume after (0: its first message).

A worker's transaction locks its bucket rows, folds, and raises *all* its buckets to the
batch's last record (its consumer delivers its buckets in order, so nothing of theirs is
left below it), then raises the 'live' checkpoint to the minimum over all buckets. So the
'live' ``last_seq`` keeps its meaning: every event up to it is applied — what the
gateway's ``min_seq`` wait and the agent rely on. An idle worker raises its buckets to the
feed's last message once its consumer has nothing pending, so a quiet bucket never holds
the minimum back. Locks are taken buckets first (ascending), then the 'live' row, by
workers and by rebuild alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog
import yaml

from adapters.nats.event_store import EVENTS_STREAM, StoredRecord
from adapters.postgres.applied import CHANNEL as APPLIED_CHANNEL
from adapters.postgres.database import Connection
from projections.base import Projection, consumer_name
from projections.engine import BatchOutcome, FoldTarget, fold_records, lock_checkpoint

log = structlog.get_logger()

PARTITIONS_SQL = """
CREATE TABLE IF NOT EXISTS moltbot.projection_partitions (
    projection  text        NOT NULL,
    bucket      integer     NOT NULL,
    buckets     integer     NOT NULL,            -- P of the subject transform that made the bucket
    events_seq  bigint      NOT NULL DEFAULT 0,  -- applied up to this EVENTS sequence
    source_seq  bigint      NOT NULL DEFAULT 0,  -- resume after this EVENTS_PARTITIONED sequence
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, bucket)
);
"""

_PARTITION_FN = re.compile(r"\{\{\s*partition\(\s*(\d+)\s*,\s*1\s*\)\s*\}\}", re.IGNORECASE)


class PartitionError(Exception):
    """Partitioned mode cannot run as asked (bad N/K, a gap in the feed, a bucket count change)."""


class Partitioning(msgspec.Struct, frozen=True):
    """streams.yaml's ``partitioned_projections``: the feed stream and its consumer template."""

    stream: dict[str, Any]
    consumer_template: dict[str, Any]

    @property
    def stream_name(self) -> str:
        return str(self.stream["name"])

    @property
    def buckets(self) -> int:
        """P, read from the feed's subject transform (the one place it is written)."""
        for source in self.stream.get("sources", []):
            for transform in source.get("subject_transforms", []):
                found = _PARTITION_FN.search(str(transform.get("dest", "")))
                if found:
                    return int(found.group(1))
        raise PartitionError(f"{self.stream_name}: no {{{{partition(P,1)}}}} in its subject transform")


def load_partitioning(path: Path) -> Partitioning:
    try:
        raw = yaml.safe_load(path.read_text())["partitioned_projections"]
        return msgspec.convert(raw, Partitioning)
    except (OSError, KeyError, TypeError, yaml.YAMLError, msgspec.ValidationError) as exc:
        raise PartitionError(f"{path}: no usable partitioned_projections section ({exc})") from None


class Assignment(msgspec.Struct, frozen=True):
    """Worker ``partition`` of ``partitions``, over ``buckets`` buckets."""

    partitions: int
    partition: int
    buckets: int

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= self.buckets:
            raise PartitionError(f"--partitions must be between 1 and {self.buckets}, not {self.partitions}")
        if not 0 <= self.partition < self.partitions:
            raise PartitionError(
                f"--partition must be between 0 and {self.partitions - 1}, not {self.partition}"
            )

    @property
    def owned(self) -> list[int]:
        """Buckets round-robin: worker K owns every bucket b with b % N == K."""
        return [b for b in range(self.buckets) if b % self.partitions == self.partition]

    def consumer(self, projection: Projection) -> str:
        return f"{consumer_name(projection)}-p{self.partition}of{self.partitions}"


def bucket_of(tenant_id: str, buckets: int) -> int:
    """The bucket nats-server's ``{{partition(P,1)}}`` gives a tenant: FNV-1a 32 of the token, mod P."""
    value = 0x811C9DC5
    for byte in tenant_id.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value % buckets


class PartitionRecord(msgspec.Struct, frozen=True):
    """One message of the feed: its bucket, its feed sequence, and the EVENTS record it copies."""

    bucket: int
    source_seq: int
    record: StoredRecord


def from_feed(subject: str, source_seq: int, data: bytes, headers: dict[str, str] | None) -> PartitionRecord:
    """``part.<bucket>.ev.…`` with its ``Nats-Stream-Source`` header → the EVENTS record."""
    prefix, bucket, original = subject.split(".", 2)
    origin = (headers or {}).get("Nats-Stream-Source", "").split(" ")
    if prefix != "part" or len(origin) < 2 or origin[0] != EVENTS_STREAM:
        raise PartitionError(f"not a partitioned copy of an EVENTS message: {subject} {origin}")
    return PartitionRecord(int(bucket), source_seq, StoredRecord(int(origin[1]), original, data, headers))


async def ensure_partitions(conn: Connection, projection: Projection, buckets: int) -> None:
    """Create the bucket rows of a read model (once), starting at its 'live' checkpoint."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.partitions'))")
        await conn.execute(PARTITIONS_SQL)
        # The 'live' row first, as everywhere: nobody applies while the buckets are created.
        cur = await conn.execute(
            "SELECT last_seq FROM moltbot.projection_checkpoints"
            " WHERE projection = %s AND slot = 'live' FOR UPDATE",
            (projection.name,),
        )
        live = await cur.fetchone()
        if live is None:
            raise PartitionError(f"{projection.name} has no live read model")
        cur = await conn.execute(
            "SELECT buckets, count(*) AS n FROM moltbot.projection_partitions WHERE projection = %s"
            " GROUP BY buckets",
            (projection.name,),
        )
        rows = await cur.fetchall()
        known = [int(row["buckets"]) for row in rows]  # type: ignore[call-overload]
        if known and known != [buckets]:
            raise PartitionError(
                f"{projection.name} was partitioned into {known} buckets, the feed now has {buckets}:"
                f" rebuild it (`moltbot projections rebuild {projection.name}`) after changing P"
            )
        if rows and int(rows[0]["n"]) == buckets:  # type: ignore[call-overload]
            # Every bucket exists, and other workers may be applying: inserting anyway would
            # wait on their bucket rows while holding 'live', which they wait for (deadlock).
            return
        await conn.execute(
            "INSERT INTO moltbot.projection_partitions (projection, bucket, buckets, events_seq)"
            " SELECT %s, b, %s, %s FROM generate_series(0, %s - 1) AS b"
            " ON CONFLICT (projection, bucket) DO NOTHING",
            (projection.name, buckets, live["last_seq"], buckets),
        )


async def has_partitions(conn: Connection) -> bool:
    cur = await conn.execute("SELECT to_regclass('moltbot.projection_partitions') IS NOT NULL AS present")
    row = await cur.fetchone()
    return bool(row and row["present"])


async def feed_replaced(conn: Connection) -> int:
    """The feed was deleted (it is made again from EVENTS' start): every bucket resumes from
    the new feed's first message, skipping what it applied (``events_seq``); rows changed."""
    if not await has_partitions(conn):
        return 0
    cur = await conn.execute("UPDATE moltbot.projection_partitions SET source_seq = 0, updated_at = now()")
    return int(cur.rowcount)


async def read_partitions(conn: Connection, projection: Projection) -> dict[int, tuple[int, int]]:
    """bucket → (events_seq, source_seq); empty when the read model never ran partitioned."""
    if not await has_partitions(conn):
        return {}
    cur = await conn.execute(
        "SELECT bucket, events_seq, source_seq FROM moltbot.projection_partitions WHERE projection = %s",
        (projection.name,),
    )
    return {
        int(r["bucket"]): (int(r["events_seq"]), int(r["source_seq"]))  # type: ignore[call-overload]
        for r in await cur.fetchall()
    }


async def _lock(conn: Connection, projection: Projection, owned: Sequence[int]) -> dict[int, int]:
    cur = await conn.execute(
        "SELECT bucket, events_seq FROM moltbot.projection_partitions"
        " WHERE projection = %s AND bucket = ANY(%s) ORDER BY bucket FOR UPDATE",
        (projection.name, list(owned)),
    )
    rows = {int(r["bucket"]): int(r["events_seq"]) for r in await cur.fetchall()}  # type: ignore[call-overload]
    if len(rows) != len(owned):
        raise PartitionError(f"{projection.name}: bucket checkpoints are gone (a single worker took over?)")
    return rows


async def _raise(
    conn: Connection, projection: Projection, owned: Sequence[int], events_seq: int, source_seq: int
) -> None:
    """Raise the owned buckets, then 'live' to the minimum over every bucket."""
    await conn.execute(
        "UPDATE moltbot.projection_partitions SET events_seq = greatest(events_seq, %s),"
        " source_seq = greatest(source_seq, %s), updated_at = now()"
        " WHERE projection = %s AND bucket = ANY(%s) AND (events_seq < %s OR source_seq < %s)",
        (events_seq, source_seq, projection.name, list(owned), events_seq, source_seq),
    )
    # Lock 'live' before reading the minimum: the read then sees every other worker that
    # raised 'live' before us committed (reading first, two workers could each miss the
    # other's uncommitted buckets and both write the old minimum).
    await lock_checkpoint(conn, projection, "live")
    await conn.execute(
        "WITH moved AS (UPDATE moltbot.projection_checkpoints AS c SET last_seq = m.seq, updated_at = now()"
        " FROM (SELECT min(events_seq) AS seq FROM moltbot.projection_partitions WHERE projection = %s) AS m"
        " WHERE c.projection = %s AND c.slot = 'live' AND c.last_seq < m.seq RETURNING c.last_seq)"
        # The waiters for it wake (adapters/postgres/applied.py).
        " SELECT pg_notify(%s, %s::text || ' ' || last_seq) FROM moved",
        (projection.name, projection.name, APPLIED_CHANNEL, projection.name),
    )


async def apply_partition_batch(
    conn: Connection, target: FoldTarget, records: Sequence[PartitionRecord], *, owned: Sequence[int]
) -> BatchOutcome:
    """One batch of one worker's feed, in one transaction with its bucket checkpoints."""
    projection = target.projection
    async with target.transaction(conn):
        checkpoints = await _lock(conn, projection, owned)
        foreign = {r.bucket for r in records} - checkpoints.keys()
        if foreign:
            raise PartitionError(f"{target.consumer} was sent buckets {sorted(foreign)} it does not own")
        applied, skipped, dead = await fold_records(
            conn, target, [r.record for r in records], [checkpoints[r.bucket] for r in records]
        )
        # Its consumer delivers the owned buckets in feed order: nothing of theirs is left below.
        events_seq = max(r.record.seq for r in records)
        await _raise(conn, projection, owned, events_seq, max(r.source_seq for r in records))
    return BatchOutcome(applied, skipped, dead, events_seq)


async def raise_idle(
    conn: Connection, projection: Projection, owned: Sequence[int], events_seq: int, source_seq: int
) -> None:
    """Every event of the owned buckets up to (events_seq, source_seq) is applied: say so."""
    async with conn.transaction():
        await _lock(conn, projection, owned)
        await _raise(conn, projection, owned, events_seq, source_seq)


async def level_after_rebuild(conn: Connection, projection: Projection, last_seq: int) -> None:
    """Inside rebuild's swap: the new read model holds everything up to ``last_seq``."""
    await conn.execute(
        "UPDATE moltbot.projection_partitions SET events_seq = %s, updated_at = now() WHERE projection = %s",
        (last_seq, projection.name),
    )


async def lock_all(conn: Connection, projection: Projection) -> None:
    """Pause every partition worker of a read model (bucket rows first, as they lock them)."""
    if await has_partitions(conn):
        await conn.execute(
            "SELECT bucket FROM moltbot.projection_partitions WHERE projection = %s"
            " ORDER BY bucket FOR UPDATE",
            (projection.name,),
        )


class PartitionsAhead(Exception):
    """A single worker cannot resume yet: some buckets are applied beyond the 'live' checkpoint."""


async def take_over_from_partitions(conn: Connection, projection: Projection) -> None:
    """Before a single worker resumes from 'live': drop the bucket checkpoints, which is only
    right when no bucket is ahead of 'live' (true once the partition workers went idle)."""
    if not await has_partitions(conn):
        return
    async with conn.transaction():
        await lock_all(conn, projection)
        cur = await conn.execute(
            "SELECT c.last_seq, max(p.events_seq) AS ahead FROM moltbot.projection_checkpoints c"
            " JOIN moltbot.projection_partitions p ON p.projection = c.projection"
            " WHERE c.projection = %s AND c.slot = 'live' GROUP BY c.last_seq",
            (projection.name,),
        )
        row = await cur.fetchone()
        if row is None:
            return
        if row["ahead"] > row["last_seq"]:
            raise PartitionsAhead(
                f"{projection.name} was last run partitioned and some buckets are applied up to"
                f" {row['ahead']}, beyond 'live' ({row['last_seq']}): run the partition workers until"
                " they are idle, stop them, then start the single worker"
            )
        await conn.execute(
            "DELETE FROM moltbot.projection_partitions WHERE projection = %s", (projection.name,)
        )
        log.info("projection_partitions_dropped", projection=projection.name, last_seq=row["last_seq"])
