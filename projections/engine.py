"""Applying one batch of stored events to a read model, checkpoint in the same transaction.

Every path that writes a read model (live worker, rebuild, verify) goes through
:func:`apply_batch`:

1. lock the projection's checkpoint row (``FOR UPDATE``) — this is also what pauses a
   live worker while a rebuild swaps schemas under it — and, in the same statement,
   ``SET LOCAL search_path`` to the schema being written (live, rebuild or scratch);
2. skip sequences at or below the checkpoint and events of types the read model does
   not fold (by the subject's last token, without decoding them), decode (U+0000 in
   text becomes U+FFFD, which PostgreSQL can store), let the projection fold the rest;
   undecodable or rejected events become dead letters;
3. write with the projection's bulk writer; if the database refuses the batch, the
   transaction is rolled back and the batch applied again with its events one at a time
   in savepoints, to find and dead-letter the one at fault;
4. hand the dead letters to the sink (published before commit), move the checkpoint.

The caller commits, then acks: a crash anywhere repeats at most an applied batch, which
step 2 turns into a no-op. A batch with nothing the read model folds only moves the
checkpoint, in one statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

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
from domain.events import BY_TYPE, Event
from domain.subjects import event_token
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


_KNOWN_TOKENS = frozenset(event_token(name) for name in BY_TYPE)


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
    # The subjects' last tokens of the event types the read model does not fold: such
    # records are skipped undecoded. An unknown token is decoded (and dead-lettered).
    ignored_tokens: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        handled = {event_token(name) for name in self.projection.handles}
        object.__setattr__(self, "ignored_tokens", _KNOWN_TOKENS - handled)

    def ignores(self, record: StoredRecord) -> bool:
        """Whether the record's subject names a type the read model does not fold."""
        return record.subject.rpartition(".")[2] in self.ignored_tokens

    @property
    def search_path(self) -> str:
        return f"{sql.Identifier(self.schema).as_string()}, moltbot"

    @asynccontextmanager
    async def transaction(self, conn: Connection) -> AsyncIterator[None]:
        """One batch's transaction, writing to ``schema``."""
        async with conn.transaction():
            # The schema written, and no wait for the WAL flush at commit (derived data: the
            # log replays it): both for this transaction only, in one round trip.
            await conn.execute(
                "SELECT set_config('search_path', %s, true), set_config('synchronous_commit', 'off', true)",
                (self.search_path,),
            )
            yield


async def apply_batch(
    conn: Connection, target: FoldTarget, records: Sequence[StoredRecord], *, slot: str
) -> BatchOutcome:
    if records and all(target.ignores(r) for r in records):
        return await _move_only(conn, target.projection, slot, max(r.seq for r in records), len(records))
    try:
        return await _apply(conn, target, records, slot=slot, isolate=False)
    except _Refused:  # rolled back: again, in a savepoint, to dead-letter the event at fault
        return await _apply(conn, target, records, slot=slot, isolate=True)


async def _apply(
    conn: Connection, target: FoldTarget, records: Sequence[StoredRecord], *, slot: str, isolate: bool
) -> BatchOutcome:
    projection = target.projection
    async with conn.transaction():
        # The checkpoint's lock, the schema written and no wait for the WAL flush at commit
        # (derived data: the log replays it), for this transaction, in one round trip.
        cur = await conn.execute(
            "SELECT last_seq, set_config('search_path', %s, true),"
            " set_config('synchronous_commit', 'off', true) FROM moltbot.projection_checkpoints"
            " WHERE projection = %s AND slot = %s FOR UPDATE",
            (target.search_path, projection.name, slot),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotInitialized(f"{projection.name}/{slot}")
        checkpoint = int(row["last_seq"])
        applied, skipped, n_dead = await fold_records(
            conn, target, records, [checkpoint] * len(records), isolate=isolate
        )
        last_seq = max((r.seq for r in records), default=checkpoint)
        if last_seq > checkpoint:
            # The live checkpoint's move is announced (at commit) to whoever waits for it.
            await conn.execute(
                "WITH moved AS (UPDATE moltbot.projection_checkpoints SET last_seq = %s, updated_at = now()"
                " WHERE projection = %s AND slot = %s RETURNING slot)"
                " SELECT pg_notify(%s, %s) FROM moved WHERE slot = 'live'",
                (last_seq, projection.name, slot, APPLIED_CHANNEL, f"{projection.name} {last_seq}"),
            )
    return BatchOutcome(applied, skipped, n_dead, max(last_seq, checkpoint))


async def _move_only(
    conn: Connection, projection: Projection, slot: str, last_seq: int, n: int
) -> BatchOutcome:
    """A batch with nothing to fold: the checkpoint moves (and the live one's waiters wake),
    one statement in a transaction of its own. Its row lock waits for a rebuild's swap."""
    cur = await conn.execute(
        "UPDATE moltbot.projection_checkpoints SET last_seq = greatest(last_seq, %s), updated_at = now()"
        " WHERE projection = %s AND slot = %s"
        " RETURNING last_seq, CASE WHEN slot = 'live' THEN pg_notify(%s, projection || ' ' || last_seq) END",
        (last_seq, projection.name, slot, APPLIED_CHANNEL),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotInitialized(f"{projection.name}/{slot}")
    return BatchOutcome(0, n, 0, int(row["last_seq"]))


class _Refused(Exception):
    """The database refused a batch's rows (the transaction is rolled back)."""

    def __init__(self, error: psycopg.DatabaseError) -> None:
        super().__init__(str(error))
        self.error = error


async def fold_records(
    conn: Connection,
    target: FoldTarget,
    records: Sequence[StoredRecord],
    floors: Sequence[int],
    *,
    isolate: bool = True,
) -> tuple[int, int, int]:
    """Fold the records above their floors (each record's checkpoint) into the read model,
    inside the caller's transaction; (applied, skipped, dead-lettered).

    With ``isolate`` the batch is written in a savepoint, and a refused one again event by
    event to dead-letter the one at fault; without, a refusal raises :class:`_Refused` and
    leaves the transaction to roll back (one savepoint fewer on every batch)."""
    projection, consumer = target.projection, target.consumer
    dead: list[DeadLetter] = []
    accepted: list[tuple[StoredRecord, Event]] = []
    batch = projection.new_batch()
    kept = [
        (record, floor)
        for record, floor in zip(records, floors, strict=True)
        if record.seq > floor and not target.ignores(record)
    ]
    skipped = len(records) - len(kept)
    datas = [record.data for record, _ in kept]
    if target.open_many is not None and datas:
        datas = await target.open_many(datas)
    for (record, _), data in zip(kept, datas, strict=True):
        if not data:
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

    refused_by_database: list[DeadLetter] = []
    if accepted:
        if not isolate:
            await _write_or_raise(conn, batch)
        elif (refused := await _write_or_refusal(conn, batch)) is not None:
            log.warning("batch_refused_isolating", projection=projection.name, error=str(refused))
            refused_by_database = await _apply_one_by_one(conn, projection, consumer, accepted)
            dead.extend(refused_by_database)

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
    return len(accepted) - len(refused_by_database), skipped, len(dead)


async def _write_or_raise(conn: Connection, batch: Batch) -> None:
    """Write the batch; :class:`_Refused` if the database refused its rows. A lost
    connection is no refusal: it raises as it is."""
    try:
        await batch.write(conn)
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise
    except psycopg.DatabaseError as exc:
        raise _Refused(exc) from exc


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
