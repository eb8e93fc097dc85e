"""Applying one batch of stored events to a read model, checkpoint in the same transaction.

Every path that writes a read model (live worker, rebuild, verify) goes through
:func:`apply_batch`:

1. ``SET LOCAL search_path`` to the schema being written (live, rebuild or scratch);
2. lock the projection's checkpoint row (``FOR UPDATE``) — this is also what pauses a
   live worker while a rebuild swaps schemas under it;
3. skip sequences at or below the checkpoint, decode (U+0000 in text becomes U+FFFD,
   which PostgreSQL can store), let the projection fold the rest; undecodable or
   rejected events become dead letters;
4. write with the projection's bulk writer; if the database refuses the batch, apply the
   events one at a time in savepoints to find and dead-letter the one at fault;
5. hand the dead letters to the sink (published before commit), move the checkpoint.

The caller commits, then acks: a crash anywhere repeats at most an applied batch, which
step 3 turns into a no-op.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
import psycopg
import structlog
from psycopg import sql

from adapters.nats.dead_letters import DeadLetter
from adapters.nats.event_store import EVENTS_STREAM, StoredRecord
from adapters.postgres.applied import CHANNEL as APPLIED_CHANNEL
from adapters.postgres.database import Connection
from domain.codec import EventCodec
from domain.errors import InvalidEvent
from domain.events import Event
from domain.text import replace_nul
from projections.base import Batch, Projection, Rejected

log = structlog.get_logger()

CORE_SQL = """
CREATE SCHEMA IF NOT EXISTS moltbot;
DO $$ BEGIN
    -- Made by the deployment's provisioning when the product's role may not create roles.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'moltbot_gateway') THEN
        CREATE ROLE moltbot_gateway NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database created it just now
END $$;
GRANT USAGE ON SCHEMA moltbot TO moltbot_gateway;
CREATE TABLE IF NOT EXISTS moltbot.projection_checkpoints (
    projection  text        NOT NULL,
    slot        text        NOT NULL,  -- 'live', 'rebuild' or 'verify'
    version     integer     NOT NULL,
    schema_name text        NOT NULL,
    last_seq    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, slot)
);
GRANT SELECT ON moltbot.projection_checkpoints TO moltbot_gateway;
"""

# Every read-model table carries tenant_id. The gateway queries as moltbot_gateway, with
# the caller's tenant in the transaction setting moltbot.tenant_id: a query that forgets
# its tenant filter still sees only that tenant's rows.
TENANT_POLICY = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {table} TO moltbot_gateway
    USING (tenant_id = current_setting('moltbot.tenant_id', true));
GRANT SELECT ON {table} TO moltbot_gateway;
"""

DeadLetterSink = Callable[[list[DeadLetter]], Awaitable[None]]


async def discard_dead_letters(letters: list[DeadLetter]) -> None:
    """For rebuilds: the live worker already dead-lettered these once."""


class NotInitialized(Exception):
    """The projection has no checkpoint row for this slot."""


class BatchOutcome(msgspec.Struct, frozen=True):
    applied: int
    skipped: int
    dead_letters: int
    last_seq: int


async def ensure_core(conn: Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.core'))")
        await conn.execute(CORE_SQL)


async def set_schema(conn: Connection, schema: str) -> None:
    await conn.execute(sql.SQL("SET LOCAL search_path TO {}, moltbot").format(sql.Identifier(schema)))


async def create_tables(conn: Connection, projection: Projection, schema: str, *, with_indexes: bool) -> None:
    """Create ``schema`` afresh with the projection's tables (inside the caller's transaction)."""
    await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    await set_schema(conn, schema)
    await conn.execute(projection.schema_sql())
    await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO moltbot_gateway").format(sql.Identifier(schema)))
    for table in projection.tables:
        await conn.execute(TENANT_POLICY.format(table=sql.Identifier(table).as_string(conn)))
    if with_indexes and projection.index_sql().strip():
        await conn.execute(projection.index_sql())


async def read_checkpoint(conn: Connection, projection: Projection, slot: str) -> dict[str, object] | None:
    cur = await conn.execute(
        "SELECT version, schema_name, last_seq, updated_at FROM moltbot.projection_checkpoints"
        " WHERE projection = %s AND slot = %s",
        (projection.name, slot),
    )
    return await cur.fetchone()


async def lock_checkpoint(conn: Connection, projection: Projection, slot: str) -> int | None:
    """Lock the checkpoint row of ``slot`` until the transaction ends (which pauses whoever
    writes under it); its ``last_seq``, or None when there is no such row."""
    cur = await conn.execute(
        "SELECT last_seq FROM moltbot.projection_checkpoints WHERE projection = %s AND slot = %s FOR UPDATE",
        (projection.name, slot),
    )
    row = await cur.fetchone()
    return None if row is None else int(row["last_seq"])  # type: ignore[call-overload]


@dataclass(frozen=True)
class FoldTarget:
    """Where and how batches are folded: the read model, the schema written (live, rebuild or
    scratch), the codec that decodes the records, and the consumer that dead letters name
    and the sink they go to."""

    projection: Projection
    schema: str
    codec: EventCodec
    consumer: str
    on_dead_letters: DeadLetterSink
    # Opens the sealed personal fields of stored bytes (EventStore.open_many); the log's
    # bytes as they are when None. A field whose key was shredded reads "[erased]".
    open_many: Callable[[Sequence[bytes]], Awaitable[list[bytes]]] | None = None

    @asynccontextmanager
    async def transaction(self, conn: Connection) -> AsyncIterator[None]:
        """One batch's transaction, writing to ``schema``."""
        async with conn.transaction():
            # The schema written, and no wait for the WAL flush at commit (derived data: the
            # log replays it): both for this transaction only, in one round trip.
            path = f"{sql.Identifier(self.schema).as_string(conn)}, moltbot"
            await conn.execute(
                "SELECT set_config('search_path', %s, true), set_config('synchronous_commit', 'off', true)",
                (path,),
            )
            yield


async def apply_batch(
    conn: Connection, target: FoldTarget, records: Sequence[StoredRecord], *, slot: str
) -> BatchOutcome:
    projection = target.projection
    async with target.transaction(conn):
        checkpoint = await lock_checkpoint(conn, projection, slot)
        if checkpoint is None:
            raise NotInitialized(f"{projection.name}/{slot}")
        applied, skipped, n_dead = await fold_records(conn, target, records, [checkpoint] * len(records))
        last_seq = max((r.seq for r in records), default=checkpoint)
        if last_seq > checkpoint:
            # The live checkpoint's move is announced (at commit) to whoever waits for it.
            await conn.execute(
                "WITH moved AS (UPDATE moltbot.projection_checkpoints SET last_seq = %s, updated_at = now()"
                " WHERE projection = %s AND slot = %s RETURNING slot)"
                " SELECT pg_notify(%s, '') FROM moved WHERE slot = 'live'",
                (last_seq, projection.name, slot, APPLIED_CHANNEL),
            )
    return BatchOutcome(applied, skipped, n_dead, max(last_seq, checkpoint))


async def fold_records(
    conn: Connection, target: FoldTarget, records: Sequence[StoredRecord], floors: Sequence[int]
) -> tuple[int, int, int]:
    """Fold the records above their floors (each record's checkpoint) into the read model,
    inside the caller's transaction; (applied, skipped, dead-lettered)."""
    projection, consumer = target.projection, target.consumer
    dead: list[DeadLetter] = []
    accepted: list[tuple[StoredRecord, Event]] = []
    batch = projection.new_batch()
    skipped = 0
    datas = [r.data for r in records]
    if target.open_many is not None:
        datas = await target.open_many(datas)
    for record, data, applied_up_to in zip(records, datas, floors, strict=True):
        if record.seq <= applied_up_to or not data:
            skipped += 1
            continue
        try:
            event = target.codec.decode(replace_nul(data))  # PostgreSQL cannot store U+0000
        except InvalidEvent as exc:
            dead.append(_letter(record, consumer, exc.reason, exc.detail))
            continue
        if event.type not in projection.handles:
            skipped += 1
            continue
        try:
            batch.add(record.seq, event)
        except Rejected as exc:
            dead.append(_letter(record, consumer, "rejected", exc.detail))
            continue
        accepted.append((record, event))

    if accepted:
        refused = await _write_or_refusal(conn, batch)
        if refused is not None:
            log.warning("batch_refused_isolating", projection=projection.name, error=str(refused))
            dead.extend(await _apply_one_by_one(conn, projection, consumer, accepted))

    if dead:
        await target.on_dead_letters(dead)
        for letter in dead:
            log.warning(
                "event_dead_lettered",
                consumer=consumer,
                seq=letter.origin_seq,
                reason=letter.reason,
                error=letter.error,
            )
    return len(accepted) - len(dead), skipped, len(dead)


async def _write_or_refusal(conn: Connection, batch: Batch) -> psycopg.DatabaseError | None:
    """Write the batch in a savepoint; the error if the database refused its rows (rolled
    back to the savepoint). A lost connection is no refusal: it raises."""
    try:
        async with conn.transaction():
            await batch.write(conn)
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise
    except psycopg.DatabaseError as exc:
        return exc
    return None


async def _apply_one_by_one(
    conn: Connection,
    projection: Projection,
    consumer: str,
    accepted: list[tuple[StoredRecord, Event]],
) -> list[DeadLetter]:
    dead = []
    for record, event in accepted:
        single = projection.new_batch()
        single.add(record.seq, event)
        refused = await _write_or_refusal(conn, single)
        if refused is not None:
            dead.append(_letter(record, consumer, "rejected", f"database refused it: {refused}"))
    return dead


def _letter(record: StoredRecord, consumer: str, reason: str, error: str) -> DeadLetter:
    return DeadLetter(
        origin_stream=EVENTS_STREAM,
        origin_seq=record.seq,
        origin_subject=record.subject,
        consumer=consumer,
        reason=reason,
        error=error,
        data=record.data,
    )
