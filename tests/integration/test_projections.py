"""Projection workers against real NATS and PostgreSQL: correct folds, dead letters,
rebuild beside the live model with an atomic swap, verify, version upgrades."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest

from adapters.nats.dead_letters import CONSUMER, ORIGIN_SEQ, ORIGIN_STREAM, REASON
from adapters.postgres.database import connection as pg_connection
from domain import agent as agent_policy
from domain import events as ev
from domain.codec import EventCodec
from moltbot.loadgen import generate
from projections import rebuild as rebuild_ops
from projections.base import consumer_name
from projections.engine import create_tables, ensure_core
from projections.inbox import ALREADY_STORED, InboxProjection
from projections.registry import all_projections, by_name
from projections.usage import UsageProjection
from projections.worker import prepare_live
from tests.integration import expectations
from tests.integration.conftest import Stack


async def _unread(stack: Stack) -> dict[str, int]:
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT conversation_id, unread_count FROM rm_inbox.conversations")
        return {r["conversation_id"]: r["unread_count"] for r in await cur.fetchall()}


async def _usage(stack: Stack) -> dict[tuple[object, ...], int]:
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT tenant_id, day, metric, quantity FROM rm_usage.usage_daily")
        return {(r["tenant_id"], r["day"], r["metric"]): r["quantity"] for r in await cur.fetchall()}


async def test_read_models_match_the_events(stack: Stack) -> None:
    events = list(generate(4000, tenants=4))
    await stack.store.append_many(events[:2000])
    async with stack.projections(batch_size=300):
        await stack.store.append_many(events[2000:])  # half before the workers start, half while running
        await stack.wait_caught_up()

    assert await _unread(stack) == expectations.unread_counts(events)
    assert await _usage(stack) == expectations.usage_sums(events)
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT conversation_id, message_count FROM rm_inbox.conversations")
        counts = {r["conversation_id"]: r["message_count"] for r in await cur.fetchall()}
        tenants = await (await conn.execute("SELECT count(*) AS n FROM rm_tenants.tenants")).fetchone()
        connected = await (
            await conn.execute(
                "SELECT count(*) AS n FROM rm_connections.connections WHERE state = 'connected'"
            )
        ).fetchone()
    expected_counts = expectations.message_counts(events)
    assert {c: n for c, n in counts.items() if n} == dict(expected_counts)
    assert tenants == {"n": 4}
    assert connected == {"n": 8}


async def test_full_text_search_finds_messages(stack: Stack) -> None:
    events = list(generate(600, tenants=1))
    await stack.store.append_many(events)
    async with stack.projections([by_name("inbox")]):
        await stack.wait_caught_up(names=["inbox"])
    word_hits = sum(
        1
        for e in events
        if isinstance(e, ev.MessageReceived | ev.MessageSent) and "invoice" in e.data.text.lower()
    )
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM rm_inbox.messages WHERE search @@ plainto_tsquery('simple', 'invoice')"
        )
        row = await cur.fetchone()
    assert row is not None and word_hits > 0
    assert row["n"] == word_hits


def _an_agent_run(trigger: ev.MessageReceived) -> list[ev.Event]:
    """A run answering ``trigger`` as the orchestrator records it: requested, usage, completed."""
    run_id = agent_policy.run_id_for(trigger.id)
    actor, tenant_id, conversation_id = "agent:orchestrator", trigger.tenant_id, trigger.aggregate_id
    requested = ev.AgentRunRequestedData(
        run_id=run_id, agent_id="ag_test", trigger_message_id=trigger.data.message_id
    )
    completed = ev.AgentRunCompletedData(
        run_id=run_id, model="offline-1", tokens_in=40, tokens_out=12, cost_micros=0, offline=True
    )
    metrics: list[tuple[ev.UsageMetric, int]] = [("agent_runs", 1), ("tokens_in", 40), ("tokens_out", 12)]
    return [
        ev.new_event(ev.AgentRunRequested, tenant_id=tenant_id, aggregate_id=conversation_id, actor=actor,
                     data=requested, occurred_at=trigger.occurred_at),
        *agent_policy.usage_events(tenant_id, run_id, metrics, actor=actor, at=trigger.occurred_at),
        ev.new_event(ev.AgentRunCompleted, tenant_id=tenant_id, aggregate_id=conversation_id, actor=actor,
                     data=completed, occurred_at=trigger.occurred_at),
    ]  # fmt: skip


async def _agent_runs(stack: Stack) -> dict[str, str]:
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT run_id, status FROM rm_agents.agent_runs")
        return {r["run_id"]: r["status"] for r in await cur.fetchall()}


async def _repeated_outside_duplicate_window(stack: Stack) -> tuple[list[ev.Event], str]:
    """A log where the same provider message arrives again after the 2-minute window, and the
    run that answered it, resumed after a crash, records its steps again: stored again under
    different Nats-Msg-Ids. Returns the events once each, and the run's id."""
    events = list(generate(300, tenants=1))
    received = next(e for e in events if isinstance(e, ev.MessageReceived))
    run = _an_agent_run(received)
    events += run
    await stack.store.append_many(events)
    js = stack.store._js
    for original in [received, *run]:
        again = ev.new_event(
            type(original),
            tenant_id=original.tenant_id,
            aggregate_id=original.aggregate_id,
            actor=original.actor,
            data=original.data,
            occurred_at=original.occurred_at + timedelta(minutes=3),
        )
        await js.publish(
            again.subject, EventCodec().encode(again), headers={"Nats-Msg-Id": f"later-{again.id}"}
        )
    return events, agent_policy.run_id_for(received.id)


async def test_repeat_outside_duplicate_window_counts_once(stack: Stack) -> None:
    events, run_id = await _repeated_outside_duplicate_window(stack)
    async with stack.projections([by_name("inbox"), by_name("agents")]):
        await stack.wait_caught_up(names=["inbox", "agents"])
    assert await _unread(stack) == expectations.unread_counts(events)
    assert await _agent_runs(stack) == {run_id: "completed"}


async def test_repeat_outside_duplicate_window_is_metered_once(stack: Stack) -> None:
    events, _ = await _repeated_outside_duplicate_window(stack)
    async with stack.projections([by_name("usage")]):
        await stack.wait_caught_up(names=["usage"])
    assert await _usage(stack) == expectations.usage_sums(events)  # messages_in, agent_runs, tokens


async def test_poison_events_are_dead_lettered_and_later_events_applied(stack: Stack) -> None:
    events = list(generate(200, tenants=1))
    await stack.store.append_many(events[:100])
    js = stack.store._js
    tenant = events[0].tenant_id
    malformed = await js.publish(f"ev.{tenant}.conversation.c_x.message_received", b"{this is not json")
    unknown = await js.publish(
        f"ev.{tenant}.conversation.c_x.message_teleported",
        b'{"type":"message.teleported","v":1,"id":"x","tenant_id":"t","aggregate_id":"c","data":{}}',
    )
    negative_usage = await stack.store.append(
        ev.new_event(
            ev.UsageRecorded,
            tenant_id=tenant,
            aggregate_id=tenant,
            actor="agent:a",
            data=ev.UsageRecordedData(metric="tokens_in", quantity=-5),
        )
    )
    await stack.store.append_many(events[100:])

    async with stack.projections():
        await stack.wait_caught_up()

    dlq = [record async for record in _read_stream(stack, "DLQ")]
    by_consumer: dict[str, dict[int, str]] = {}
    for record in dlq:
        headers = record.headers or {}
        assert headers[ORIGIN_STREAM] == "EVENTS"
        by_consumer.setdefault(headers[CONSUMER], {})[int(headers[ORIGIN_SEQ])] = headers[REASON]
    # Every read model refuses the unknown type; the malformed body on a message.received
    # subject only the read models that fold that type; only usage the negative quantity.
    for projection in all_projections():
        expected = {unknown.seq: "unknown_type"}
        if "message.received" in projection.handles:
            expected[malformed.seq] = "malformed"
        if projection.name == "usage":
            expected[negative_usage.seq] = "rejected"
        assert by_consumer[consumer_name(projection)] == expected
    dead_subjects = {record.subject for record in dlq}
    assert f"dlq.{consumer_name(by_name('inbox'))}.malformed" in dead_subjects
    assert f"dlq.{consumer_name(by_name('usage'))}.rejected" in dead_subjects
    # Events after the poison were applied.
    assert await _unread(stack) == expectations.unread_counts(events)
    assert await _usage(stack) == expectations.usage_sums(events)
    # Rebuilds and verifies fold the same poison again and dead-letter none of it twice.
    async with pg_connection(stack.database_url) as conn:
        await rebuild_ops.rebuild(conn, by_name("inbox"), stack.store)
        for projection in all_projections():
            assert (await rebuild_ops.verify(conn, projection, stack.store)).identical
    assert len([record async for record in _read_stream(stack, "DLQ")]) == len(dlq)


async def test_nul_carried_in_by_a_connector_shows_as_the_replacement_character(stack: Stack) -> None:
    events = list(generate(50, tenants=1))
    received = next(e for e in events if isinstance(e, ev.MessageReceived))
    with_nul = msgspec.structs.replace(
        received,
        data=msgspec.structs.replace(
            received.data,
            text="end of C string\x00 and more",
            sender=msgspec.structs.replace(received.data.sender, name="Ann\x00"),
        ),
    )
    events[events.index(received)] = with_nul
    await stack.store.append_many(events)

    async with stack.projections([by_name("inbox")]):
        await stack.wait_caught_up(names=["inbox"])

    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute(
            "SELECT text, sender_name FROM rm_inbox.messages WHERE message_id = %s",
            (received.data.message_id,),
        )
        row = await cur.fetchone()
    assert row == {"text": "end of C string\ufffd and more", "sender_name": "Ann\ufffd"}
    assert [record async for record in _read_stream(stack, "DLQ")] == []
    assert await _unread(stack) == expectations.unread_counts(events)
    # The log keeps what the channel sent.
    stored = [record async for record in stack.store.read(subject=f"ev.{received.tenant_id}.>")]
    assert any(b"end of C string\\u0000" in record.data for record in stored)


@pytest.mark.parametrize("with_indexes", [True, False], ids=["live", "rebuilding"])
async def test_looking_up_a_batchs_messages_never_scans_the_table(stack: Stack, with_indexes: bool) -> None:
    # Every batch, even of one event, looks up its messages: a sequential scan there makes
    # the fold slower the larger the inbox grows. With seq scans priced out, any left in the
    # plan is one the query cannot avoid.
    async with pg_connection(stack.database_url) as conn:
        await ensure_core(conn)
        async with conn.transaction():
            await create_tables(conn, InboxProjection(), "rm_inbox__plan", with_indexes=with_indexes)
            await conn.execute("SET LOCAL enable_seqscan = off")
            cur = await conn.execute(
                f"EXPLAIN {ALREADY_STORED}", (["m_1", "m_2"], ["c_1", "c_1"], ["in", "out"], ["p1", "p2"])
            )
            plan = "\n".join(str(row["QUERY PLAN"]) for row in await cur.fetchall())
    assert "Index" in plan
    assert "Seq Scan on messages" not in plan, plan


async def _read_stream(stack: Stack, name: str):  # type: ignore[no-untyped-def]
    from adapters.nats.event_store import EventStore

    dlq_store = EventStore(stack.store._nc, stream=name)
    async for record in dlq_store.read(subject="dlq.>"):
        yield record


async def test_rebuild_under_live_worker_is_identical_then_verify_catches_tampering(stack: Stack) -> None:
    events = list(generate(3000, tenants=3))
    await stack.store.append_many(events[:2500])
    async with stack.projections(batch_size=200):
        await stack.wait_caught_up()

        async with pg_connection(stack.database_url) as conn:
            writer = asyncio.create_task(stack.store.append_many(events[2500:]))  # traffic during rebuild
            progress: list[tuple[int, int]] = []
            reports = [
                await rebuild_ops.rebuild(
                    conn, p, stack.store, batch_size=400, progress=lambda s, t: progress.append((s, t))
                )
                for p in all_projections()
            ]
            await writer
        assert all(r.events > 0 for r in reports)
        assert progress and progress[-1][0] >= 2500
        await stack.wait_caught_up()
        # The live worker carried on after the swap: the oracle agrees on every event.
        assert await _unread(stack) == expectations.unread_counts(events)
        assert await _usage(stack) == expectations.usage_sums(events)

        async with pg_connection(stack.database_url) as conn:
            for projection in all_projections():
                report = await rebuild_ops.verify(conn, projection, stack.store)
                assert report.identical, report
            await conn.execute(
                "UPDATE rm_inbox.conversations SET unread_count = unread_count + 1"
                " WHERE conversation_id = (SELECT min(conversation_id) FROM rm_inbox.conversations)"
            )
            tampered = await rebuild_ops.verify(conn, by_name("inbox"), stack.store)
        assert not tampered.identical
        assert [d.table for d in tampered.differences] == ["conversations"]
        assert tampered.differences[0].only_in_live == 1
        assert tampered.differences[0].only_in_rebuilt == 1

        # Nothing is left behind by rebuild or verify.
        async with pg_connection(stack.database_url) as conn:
            cur = await conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rm\\_%'")
            schemas = sorted(r["nspname"] for r in await cur.fetchall())
            cur = await conn.execute("SELECT DISTINCT slot FROM moltbot.projection_checkpoints")
            slots = [r["slot"] for r in await cur.fetchall()]
        assert schemas == sorted(f"rm_{p.name}" for p in all_projections())
        assert slots == ["live"]


async def test_rebuild_matches_a_live_model_row_for_row(stack: Stack) -> None:
    events = list(generate(2000, tenants=2))
    await stack.store.append_many(events)
    async with stack.projections(batch_size=150):
        await stack.wait_caught_up()
    live = await stack.snapshot()
    async with pg_connection(stack.database_url) as conn:
        for projection in all_projections():
            await rebuild_ops.rebuild(conn, projection, stack.store, batch_size=700)
    assert await stack.snapshot() == live


class UsageNext(UsageProjection):
    version = UsageProjection.version + 1


async def test_new_version_is_rebuilt_beside_and_swapped_in(stack: Stack) -> None:
    events = list(generate(800, tenants=2))
    await stack.store.append_many(events)
    async with stack.projections([UsageProjection()]):
        await stack.wait_caught_up(names=["usage"])
    before = await stack.snapshot([UsageProjection()])
    async with pg_connection(stack.database_url) as conn:
        await prepare_live(conn, UsageNext(), stack.store)
        cur = await conn.execute(
            "SELECT version, last_seq FROM moltbot.projection_checkpoints WHERE projection = 'usage'"
        )
        row = await cur.fetchone()
    assert row == {"version": UsageProjection.version + 1, "last_seq": len(events)}
    assert await stack.snapshot([UsageNext()]) == before


async def test_status_reports_checkpoint_and_lag(stack: Stack) -> None:
    events = list(generate(500, tenants=1))
    await stack.store.append_many(events)
    async with pg_connection(stack.database_url) as conn:
        before = await rebuild_ops.status(conn, by_name("inbox"), stack.store)
    assert before["checkpoint"] == 0 and before["lag"] == 500
    assert before["running"] == "-"
    async with stack.projections([by_name("inbox")]):
        await stack.wait_caught_up(names=["inbox"])
        async with pg_connection(stack.database_url) as conn:
            during = await rebuild_ops.status(conn, by_name("inbox"), stack.store)
    assert during["running"] == "single"
    async with pg_connection(stack.database_url) as conn:
        after = await rebuild_ops.status(conn, by_name("inbox"), stack.store)
    assert after["checkpoint"] == 500
    assert after["lag"] == 0
    assert after["consumer"] == f"proj-inbox-v{InboxProjection.version}"
    assert after["running"] == "-" and after["buckets"] is None


@pytest.mark.parametrize("batch_size", [1, 97])
async def test_small_batches_give_the_same_result(stack: Stack, batch_size: int) -> None:
    events = list(generate(400, tenants=1, seed=batch_size))
    await stack.store.append_many(events)
    async with stack.projections(batch_size=batch_size):
        await stack.wait_caught_up()
    assert await _unread(stack) == expectations.unread_counts(events)
    assert await _usage(stack) == expectations.usage_sums(events)


async def test_an_event_naming_another_tenants_message_changes_nothing_of_it(stack: Stack) -> None:
    """A connection can be made to report anything about any message id (a provider's
    webhook echoes data we gave it; a tenant signs its own provider's deliveries): a failure,
    edit or unsend naming another tenant's message must leave that message alone."""
    events = list(generate(200, tenants=2))
    theirs = next(e for e in events if isinstance(e, ev.MessageReceived))
    intruder = next(e.tenant_id for e in events if e.tenant_id != theirs.tenant_id)
    message_id, at = theirs.data.message_id, theirs.occurred_at

    def forge(cls: type[ev.E], data: msgspec.Struct) -> ev.E:
        return ev.new_event(
            cls, tenant_id=intruder, aggregate_id=theirs.aggregate_id, actor="connector:x", data=data
        )

    forged: list[ev.Event] = [
        forge(ev.MessageEdited, ev.MessageEditedData(message_id=message_id, text="forged", edited_at=at)),
        forge(ev.MessageDeleted, ev.MessageDeletedData(message_id=message_id, deleted_at=at)),
        forge(ev.MessageSendFailed, ev.MessageSendFailedData(message_id, "cn_x", "x", "forged")),
    ]
    await stack.store.append_many(events)
    async with stack.projections(projections=[InboxProjection()]):
        await stack.wait_caught_up(names=["inbox"])  # the message is stored first, then the forgeries
        await stack.store.append_many(forged)
        await stack.wait_caught_up(names=["inbox"])
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute(
            "SELECT text, status, deleted_at FROM rm_inbox.messages WHERE message_id = %s", (message_id,)
        )
        row = await cur.fetchone()
    assert row == {"text": theirs.data.text, "status": "received", "deleted_at": None}
