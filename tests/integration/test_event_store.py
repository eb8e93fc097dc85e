"""The event store against a real nats-server: dedupe, optimistic concurrency, replay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from adapters.nats.errors import ConcurrencyConflict
from adapters.nats.event_store import EventStore
from domain import events as ev
from domain import ids
from domain.examples import examples
from moltbot.loadgen import generate


def _conversation_event(conversation_id: str, **changes: object) -> ev.ConversationUpdated:
    return ev.new_event(
        ev.ConversationUpdated,
        tenant_id="t_1",
        aggregate_id=conversation_id,
        actor="user:u_1",
        data=ev.ConversationUpdatedData(**changes),  # type: ignore[arg-type]
    )


async def test_same_dedupe_key_is_stored_once(store: EventStore) -> None:
    received = next(e for e in examples() if isinstance(e, ev.MessageReceived))
    first = await store.append(received)
    # A webhook retry: a new event id, the same provider message id.
    retry = ev.new_event(
        ev.MessageReceived,
        tenant_id=received.tenant_id,
        aggregate_id=received.aggregate_id,
        actor=received.actor,
        data=received.data,
    )
    second = await store.append(retry)
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    assert await store.last_seq() == 1


async def test_concurrency_conflict_is_reported(store: EventStore) -> None:
    conversation_id = ids.new_id("c")
    first = await store.append(_conversation_event(conversation_id, pinned=True), expected_seq=0)
    with pytest.raises(ConcurrencyConflict) as conflict:
        await store.append(_conversation_event(conversation_id, pinned=False), expected_seq=0)
    assert conflict.value.expected_seq == 0
    assert conflict.value.actual_seq == first.seq
    # Expecting the right sequence succeeds.
    second = await store.append(_conversation_event(conversation_id, pinned=False), expected_seq=first.seq)
    assert second.seq > first.seq


async def test_retry_after_lost_ack_is_a_duplicate_not_a_conflict(store: EventStore) -> None:
    conversation_id = ids.new_id("c")
    event = _conversation_event(conversation_id, title="x")
    first = await store.append(event, expected_seq=0)
    again = await store.append(event, expected_seq=0)  # the same append, retried
    assert again.duplicate
    assert again.seq == first.seq


async def test_concurrent_deciders_retry_and_both_land(store: EventStore) -> None:
    """Two writers race on one aggregate: each decision is re-run on fresh history."""
    conversation_id = ids.new_id("c")
    seen_history_lengths: list[int] = []

    def decide_append(label: str):  # type: ignore[no-untyped-def]
        def decide(history: Sequence[ev.Event]) -> list[ev.Event]:
            seen_history_lengths.append(len(history))
            return [_conversation_event(conversation_id, title=f"{label}-{len(history)}")]

        return decide

    results = await asyncio.gather(
        *(store.update("t_1", "conversation", conversation_id, decide_append(f"w{i}")) for i in range(4))
    )
    history, last_seq = await store.load("t_1", "conversation", conversation_id)
    assert len(history) == 4
    # Each event was decided knowing every earlier one: titles carry 0, 1, 2, 3.
    history_sizes = [int(e.event.data.title.split("-")[1]) for e in history]  # type: ignore[attr-defined]
    assert history_sizes == [0, 1, 2, 3]
    assert last_seq == max(r[0].seq for r in results)
    assert len(seen_history_lengths) > 4  # somebody lost a race and decided again


async def test_a_batch_is_stored_whole_contiguous_and_once(store: EventStore) -> None:
    conversation_id = ids.new_id("c")
    await store.append(_conversation_event(ids.new_id("c"), title="elsewhere"))
    batch = [_conversation_event(conversation_id, title=f"t{n}") for n in range(5)]
    stored = await store.append_batch(batch, expected_seq=0)
    assert [a.seq for a in stored] == [2, 3, 4, 5, 6]
    assert [a.event_id for a in stored] == [e.id for e in batch]
    # The same batch again (an ack lost, the step retried): the same sequences, as duplicates.
    again = await store.append_batch(batch, expected_seq=0)
    assert [(a.seq, a.duplicate) for a in again] == [(a.seq, True) for a in stored]
    again = await store.append_batch(batch)
    assert [(a.seq, a.duplicate) for a in again] == [(a.seq, True) for a in stored]
    history, last_seq = await store.load("t_1", "conversation", conversation_id)
    assert [h.event for h in history] == batch
    assert last_seq == 6


async def test_a_batch_that_conflicts_stores_nothing(store: EventStore) -> None:
    conversation_id = ids.new_id("c")
    first = await store.append(_conversation_event(conversation_id, title="first"), expected_seq=0)
    batch = [_conversation_event(conversation_id, title=f"late {n}") for n in range(3)]
    with pytest.raises(ConcurrencyConflict) as conflict:
        await store.append_batch(batch, expected_seq=0)
    assert conflict.value.actual_seq == first.seq
    assert await store.last_seq() == first.seq


async def test_a_batch_partly_stored_apart_stores_the_rest_once(store: EventStore) -> None:
    conversation_id = ids.new_id("c")
    batch = [_conversation_event(conversation_id, title=f"t{n}") for n in range(3)]
    await store.append(batch[0])  # stored one at a time before, as events were before batches
    stored = await store.append_batch(batch)
    assert [a.duplicate for a in stored] == [True, False, False]
    history, _ = await store.load("t_1", "conversation", conversation_id)
    assert [h.event for h in history] == batch


async def test_append_many_keeps_order_and_read_filters(store: EventStore) -> None:
    events = list(generate(3000, tenants=3))
    results = await store.append_many(events)
    seqs = [r.seq for r in results]
    assert seqs == list(range(1, len(events) + 1))

    everything = [r async for r in store.read_events()]
    assert [s.event for s in everything] == events

    tenant = events[0].tenant_id
    mine = [r async for r in store.read_events(subject=f"ev.{tenant}.>")]
    assert mine and all(s.event.tenant_id == tenant for s in mine)
    assert len(mine) == sum(1 for e in events if e.tenant_id == tenant)

    tail = [r.seq async for r in store.read(since=2990)]
    assert tail == list(range(2990, 3001))
    assert [r async for r in store.read(since=5000)] == []


async def test_follow_sees_new_events(store: EventStore) -> None:
    events = list(generate(50, tenants=1))
    await store.append_many(events[:10])
    seen: list[int] = []

    async def follow() -> None:
        async for record in store.read(since=5, follow=True, idle_timeout=0.2):
            seen.append(record.seq)
            if record.seq == 50:
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    await store.append_many(events[10:])
    await asyncio.wait_for(follower, 10)
    assert seen == list(range(5, 51))
