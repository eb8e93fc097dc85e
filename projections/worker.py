"""The live projection worker: durable consumer → batch → transaction with checkpoint → ack.

The read model's checkpoint in PostgreSQL is the position that counts. At start the
worker (re)creates its durable consumer ``proj-<name>-v<version>`` from the streams.yaml
template to start right after the checkpoint, so a restart never waits for unacked
messages to time out and never depends on what the consumer last acked. One batch is
fetched ahead while the previous one is written; each batch is acked once (AckAll, on
its last message) after its transaction commits.

``LiveWorker`` holds that loop; ``ProjectionWorker`` is the single worker of a read model
and ``projections.partition_worker.PartitionWorker`` one of N partitioned ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import Any, NotRequired, TypedDict, Unpack

import nats.errors
import psycopg
import stamina
import structlog
from nats.aio.msg import Msg
from nats.js.errors import APIError

from adapters.nats.dead_letters import DeadLetter
from adapters.nats.errors import EventStoreError
from adapters.nats.event_store import EVENTS_STREAM
from adapters.nats.jetstream import JetStreamApi
from adapters.nats.pull import ConsumerGone, ack_position, raise_if_cancelled
from adapters.postgres.database import Connection, connection
from domain.ports import EventStore, StoredRecord
from projections.base import Projection, consumer_name, live_schema
from projections.engine import (
    BatchOutcome,
    FoldTarget,
    apply_batch,
    create_tables,
    ensure_core,
    read_checkpoint,
)
from projections.partitions import PartitionsAhead, take_over_from_partitions
from projections.rebuild import rebuild
from projections.run_lock import wait_for_turn

log = structlog.get_logger()

# Events per pull and per transaction when there is a backlog; with none, a batch is
# whatever has arrived. 5000 folds ~1.7x faster than 1000 when catching up (measured).
DEFAULT_BATCH = 5000

_RECOVERABLE = (
    nats.errors.Error,
    APIError,
    EventStoreError,
    ConsumerGone,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    ConnectionError,
    asyncio.TimeoutError,
    PartitionsAhead,  # waits for partition workers to finish (see take_over_from_partitions)
)


def _recoverable(exc: Exception) -> bool:
    """Whether ``exc`` (or every exception of its group) is an outage to restart after."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(_RECOVERABLE)[1] is None
    return isinstance(exc, _RECOVERABLE)


class WorkerOptions(TypedDict):
    """What every live worker is built with; each kind adds its own."""

    jetstream: JetStreamApi
    store: EventStore
    database_url: str
    projection: Projection
    batch_size: NotRequired[int]  # DEFAULT_BATCH
    idle_timeout: NotRequired[float]  # seconds without a message before the worker is idle


class LiveWorker(ABC):
    """What every live worker does: claim the read model (projections/run_lock.py), bring it
    to the code's version, (re)create its consumer at the checkpoint, then fold batch after
    batch — one transaction each, acked after commit — restarting after outages."""

    def __init__(self, *, consumer: str, **options: Unpack[WorkerOptions]) -> None:
        self._jetstream = options["jetstream"]
        self._store = options["store"]
        self._database_url = options["database_url"]
        self.projection = options["projection"]
        self.consumer = consumer
        self._batch_size = options.get("batch_size", DEFAULT_BATCH)
        self._idle_timeout = options.get("idle_timeout", 1.0)
        self._dead_letters = self._jetstream.dead_letters()
        self._target = FoldTarget(
            projection=self.projection,
            schema=live_schema(self.projection),
            codec=self._store.codec,
            consumer=consumer,
            on_dead_letters=self._publish_dead_letters,
            open_many=self._store.open_many,
        )
        self.last_applied_seq = 0

    @abstractmethod
    def _buckets(self) -> list[int] | None:
        """The buckets this worker claims; None for the whole read model."""

    @abstractmethod
    async def _start(self, conn: Connection) -> str:
        """Read the checkpoint, (re)create the consumer after it; the stream to pull from."""

    @abstractmethod
    async def _fold(self, conn: Connection, msgs: list[Msg]) -> BatchOutcome:
        """Apply one batch with its checkpoint, in one transaction."""

    @abstractmethod
    async def _when_idle(self, conn: Connection) -> None:
        """Nothing arrived within the idle timeout."""

    async def run(self) -> None:
        """Run until cancelled, restarting after NATS or PostgreSQL outages (stamina: 0.2 s
        doubling to 5 s, never giving up)."""
        async for attempt in stamina.retry_context(
            on=_recoverable, attempts=None, timeout=None, wait_initial=0.2, wait_max=5.0, wait_jitter=0.0
        ):
            with attempt:
                try:
                    await self._run_once()
                except* _RECOVERABLE as failures:
                    raise_if_cancelled()  # a client may have turned the cancellation into its own error
                    error = repr(failures.exceptions[0])
                    log.warning("projection_worker_restarting", consumer=self.consumer, error=error)
                    raise

    async def _run_once(self) -> None:
        async with connection(self._database_url, application_name=f"moltbot-{self.consumer}") as conn:
            # Derived data, which the log replays: no commit of this connection waits for the WAL
            # flush (a batch's transaction says so too; this covers the checkpoint-only moves).
            await conn.execute("SET synchronous_commit = off")
            await wait_for_turn(conn, self.projection, self._buckets())
            replaced = await prepare_live(conn, self.projection, self._store)
            if replaced is not None:  # the previous version's consumer has no reader any more
                old = f"proj-{self.projection.name}-v{replaced}"
                await self._jetstream.delete_consumer(EVENTS_STREAM, old)
            stream = await self._start(conn)
            pull = self._jetstream.pull(stream, self.consumer, batch=self._batch_size)
            await pull.start()
            try:
                while True:
                    msgs = await pull.next_batch(self._idle_timeout)
                    if msgs:
                        await self._apply(conn, msgs)
                    else:
                        await self._when_idle(conn)
                    raise_if_cancelled()
            finally:
                with contextlib.suppress(Exception):
                    await pull.close()

    async def _apply(self, conn: Connection, msgs: list[Msg]) -> None:
        outcome = await self._fold(conn, msgs)
        await msgs[-1].ack()  # AckAll: acknowledges the whole batch
        self.last_applied_seq = outcome.last_seq
        log.debug(
            "batch_applied",
            consumer=self.consumer,
            n=len(msgs),
            applied=outcome.applied,
            last_seq=outcome.last_seq,
        )

    async def _publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        await asyncio.gather(*(self._dead_letters.publish(letter) for letter in letters))


class ProjectionWorker(LiveWorker):
    """The single live worker of a read model: consumer ``proj-<name>-v<version>`` on EVENTS."""

    def __init__(self, *, consumer_template: dict[str, Any], **options: Unpack[WorkerOptions]) -> None:
        super().__init__(consumer=consumer_name(options["projection"]), **options)
        self._template = {k: v for k, v in consumer_template.items() if k != "stream"}

    def _buckets(self) -> None:
        return None

    async def _start(self, conn: Connection) -> str:
        await take_over_from_partitions(conn, self.projection)
        checkpoint = await read_checkpoint(conn, self.projection, "live")
        assert checkpoint is not None
        self.last_applied_seq = int(checkpoint["last_seq"])  # type: ignore[call-overload]
        start_seq = self.last_applied_seq + 1
        config = self._template | {"deliver_policy": "by_start_sequence", "opt_start_seq": start_seq}
        await self._jetstream.recreate_consumer(EVENTS_STREAM, self.consumer, config)
        log.info("projection_consumer_ready", consumer=self.consumer, start_seq=start_seq)
        return EVENTS_STREAM

    async def _when_idle(self, conn: Connection) -> None:
        """Nothing to do: the checkpoint is every event up to the last batch."""

    async def _fold(self, conn: Connection, msgs: list[Msg]) -> BatchOutcome:
        records = [StoredRecord(ack_position(m.reply)[0], m.subject, m.data, m.headers) for m in msgs]
        return await apply_batch(conn, self._target, records, slot="live")


async def prepare_live(conn: Connection, projection: Projection, store: EventStore) -> int | None:
    """Make sure the live read model exists at the code's version.

    A projection seen for the first time gets empty tables and a zero checkpoint; one
    whose stored version differs from the code's is rebuilt beside the live one first,
    and the version it replaced is returned.
    """
    await ensure_core(conn)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"proj:{projection.name}",))
        checkpoint = await read_checkpoint(conn, projection, "live")
        if checkpoint is None:
            schema = live_schema(projection)
            await create_tables(conn, projection, schema, with_indexes=True)
            await conn.execute(
                "INSERT INTO moltbot.projection_checkpoints (projection, slot, version, schema_name)"
                " VALUES (%s, 'live', %s, %s)",
                (projection.name, projection.version, schema),
            )
            log.info("projection_created", projection=projection.name, version=projection.version)
            return None
    if checkpoint["version"] != projection.version:
        log.info(
            "projection_version_changed",
            projection=projection.name,
            stored=checkpoint["version"],
            code=projection.version,
        )
        await rebuild(conn, projection, store)
        return int(checkpoint["version"])  # type: ignore[call-overload, no-any-return]
    return None
