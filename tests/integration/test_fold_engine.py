"""Applying a batch (``projections/engine.py``) against a real PostgreSQL: a batch the
database refuses is applied again event by event, and the one at fault dead-lettered; a
batch with nothing the read model folds only moves its checkpoint, and the commit's
notification says how far (``adapters/postgres/applied.py``)."""

from __future__ import annotations

import asyncio

from adapters.nats.dead_letters import DeadLetter
from adapters.nats.event_store import StoredRecord
from adapters.postgres.applied import AppliedSignal
from adapters.postgres.database import Connection
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain.codec import EventCodec
from domain.events import Event
from projections.base import live_schema
from projections.engine import FoldTarget, apply_batch, read_checkpoint
from projections.worker import prepare_live


class _QuantityBatch:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int]] = []

    def add(self, seq: int, event: Event) -> None:
        assert isinstance(event, ev.UsageRecorded)
        self.rows.append((event.tenant_id, seq, event.data.quantity))

    async def write(self, conn: Connection) -> None:
        async with conn.cursor() as cur:
            await cur.executemany("INSERT INTO quantities VALUES (%s, %s, %s)", self.rows)


class _Quantities:
    """A read model of usage quantities whose table refuses a negative one."""

    name = "quantities"
    version = 1
    tables: tuple[str, ...] = ("quantities",)
    handles = frozenset({"usage.recorded"})

    def schema_sql(self) -> str:
        return (
            "CREATE TABLE quantities"
            " (tenant_id text NOT NULL, seq bigint PRIMARY KEY, quantity int CHECK (quantity >= 0))"
        )

    def index_sql(self) -> str:
        return ""

    def new_batch(self) -> _QuantityBatch:
        return _QuantityBatch()


def _usage(quantity: int) -> ev.UsageRecorded:
    return ev.new_event(
        ev.UsageRecorded, tenant_id="t_fold", aggregate_id="t_fold", actor="agent:a",
        data=ev.UsageRecordedData(metric="tokens_in", quantity=quantity),
    )  # fmt: skip


def _record(seq: int, event: Event, codec: EventCodec) -> StoredRecord:
    return StoredRecord(seq, event.subject, codec.encode(event), None)


def _target(projection: _Quantities, dead: list[DeadLetter]) -> FoldTarget:
    async def sink(letters: list[DeadLetter]) -> None:
        dead.extend(letters)

    return FoldTarget(
        projection=projection, schema=live_schema(projection), codec=EventCodec(),
        consumer="proj-quantities-v1", on_dead_letters=sink,
    )  # fmt: skip


async def test_a_refused_batch_is_applied_again_event_by_event(database_url: str) -> None:
    projection, codec = _Quantities(), EventCodec()
    dead: list[DeadLetter] = []
    target = _target(projection, dead)
    async with pg_connection(database_url) as conn:
        await prepare_live(conn, projection, None)  # type: ignore[arg-type]
        events = [_usage(3), _usage(-5), _usage(7)]
        outcome = await apply_batch(
            conn, target, [_record(n, e, codec) for n, e in enumerate(events, 1)], slot="live"
        )
        assert (outcome.applied, outcome.dead_letters, outcome.last_seq) == (2, 1, 3)
        assert [(d.origin_seq, d.reason) for d in dead] == [(2, "rejected")]
        assert "database refused it" in dead[0].error and "quantities_quantity_check" in dead[0].error
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO rm_quantities")
            rows = await (await conn.execute("SELECT seq, quantity FROM quantities ORDER BY seq")).fetchall()
        assert [(r["seq"], r["quantity"]) for r in rows] == [(1, 3), (3, 7)]
        checkpoint = await read_checkpoint(conn, projection, "live")  # type: ignore[arg-type]
        assert checkpoint is not None and checkpoint["last_seq"] == 3
        # Applied again (a redelivery), the batch is a no-op, and nothing is dead-lettered twice.
        again = await apply_batch(
            conn, target, [_record(n, e, codec) for n, e in enumerate(events, 1)], slot="live"
        )
        assert (again.applied, again.skipped, len(dead)) == (0, 3, 1)


async def test_a_batch_with_nothing_to_fold_moves_the_checkpoint_and_says_how_far(database_url: str) -> None:
    projection, codec = _Quantities(), EventCodec()
    dead: list[DeadLetter] = []
    target = _target(projection, dead)
    applied = AppliedSignal(database_url)
    await applied.start()
    try:
        async with pg_connection(database_url) as conn:
            await prepare_live(conn, projection, None)  # type: ignore[arg-type]
            await asyncio.sleep(0.2)  # the listener is listening
            tenant = ev.new_event(
                ev.TenantCreated, tenant_id="t_fold", aggregate_id="t_fold", actor="user:u",
                data=ev.TenantCreatedData(name="Fold"),
            )  # fmt: skip
            # A body that is not an event, on the subject of a type this read model does not
            # fold: skipped unread, not dead-lettered (the read models of that type do).
            broken = StoredRecord(5, tenant.subject, b"{not json", None)
            assert applied.may_have_applied({"quantities": 5})
            moved = applied.current()
            outcome = await apply_batch(conn, target, [_record(4, tenant, codec), broken], slot="live")
            assert (outcome.applied, outcome.skipped, outcome.dead_letters, outcome.last_seq) == (0, 2, 0, 5)
            await asyncio.wait_for(moved.wait(), 10)
            assert applied.may_have_applied({"quantities": 5}) and not applied.may_have_applied(
                {"quantities": 6}
            )
            assert dead == []
            # The checkpoint never goes back: an older batch delivered again leaves it.
            older = await apply_batch(conn, target, [_record(2, tenant, codec)], slot="live")
            assert older.last_seq == 5
            # A type no build knows is read, and dead-lettered.
            body = b'{"type":"tenant.teleported","v":1,"id":"x","tenant_id":"t","aggregate_id":"t","data":{}}'
            unknown = StoredRecord(6, "ev.t_fold.tenant.t_fold.tenant_teleported", body, None)
            outcome = await apply_batch(conn, target, [unknown], slot="live")
            assert (outcome.applied, outcome.dead_letters) == (0, 1)
            assert [d.reason for d in dead] == ["unknown_type"]
            checkpoint = await read_checkpoint(conn, projection, "live")  # type: ignore[arg-type]
            assert checkpoint is not None and checkpoint["last_seq"] == 6
    finally:
        await applied.close()
