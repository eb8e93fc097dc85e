"""One tenant's events from a sequence on, replayed then live: the source of both SSE
and WebSocket delivery.

The subject filter is built from the caller's tenant (a literal prefix, ``ev.<tenant>.>``)
and one consumer serves replay and live, so there is no gap and no duplicate at the seam.
Type patterns (``message.*``) narrow what is delivered; they cannot widen it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import AsyncIterator
from typing import NamedTuple, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg

from adapters.nats.pull import raise_if_cancelled
from domain import subjects
from domain.ports import EventStore, StoredRecord
from gateway.errors import ApiError

_PATTERN_CHARS = set("abcdefghijklmnopqrstuvwxyz_.*")


class LiveEventStore(EventStore, Protocol):
    """The event log and the NATS connection under it, which the feeds need besides the log:
    agent deltas are live signals that are never stored, and a server that restarts forgets
    a reader's consumer, which a feed notices by the connection's reconnects."""

    @property
    def nc(self) -> Client: ...


def type_patterns(topics: list[str] | None, field: str) -> list[str] | None:
    """Validated event-type patterns; anything else (``>``, tenant ids, subjects) is refused."""
    if not topics:
        return None
    patterns = [t.strip() for t in topics if t.strip()]
    for pattern in patterns:
        if not set(pattern) <= _PATTERN_CHARS or len(pattern) > 64:
            raise ApiError(
                400,
                "invalid_topic",
                f"{pattern!r} is not an event type pattern like message.* (you always get only your"
                " own tenant's events)",
                field=field,
            )
    return patterns


def event_type(record: StoredRecord) -> str:
    return subjects.event_type_of(record.subject.rsplit(".", 1)[-1])


async def tenant_feed(
    store: LiveEventStore,
    tenant_id: str,
    since: int,
    patterns: list[str] | None,
    *,
    heartbeat: float,
) -> AsyncIterator[list[StoredRecord] | None]:
    """Matching records in order, in the batches the log delivers them (never empty);
    ``None`` after each ``heartbeat`` seconds without one."""
    async for batch in subject_batches(store, subjects.tenant_filter(tenant_id), since, heartbeat=heartbeat):
        if batch is not None and patterns:
            batch = [r for r in batch if any(fnmatch.fnmatchcase(event_type(r), p) for p in patterns)]
            if not batch:
                continue
        yield batch


async def subject_feed(
    store: LiveEventStore, subject: str, since: int, *, heartbeat: float
) -> AsyncIterator[StoredRecord | None]:
    """:func:`subject_batches` one record at a time."""
    async for batch in subject_batches(store, subject, since, heartbeat=heartbeat):
        if batch is None:
            yield None
            continue
        for record in batch:
            yield record


async def subject_batches(
    store: LiveEventStore, subject: str, since: int, *, heartbeat: float
) -> AsyncIterator[list[StoredRecord] | None]:
    """Records on ``subject`` from ``since``, replayed then live, in the batches the log
    delivers them, with ``None`` as a heartbeat after each ``heartbeat`` seconds of quiet (one
    consumer: no gap, no duplicate).

    The reader's consumer acknowledges nothing, so what the server sent while the
    connection was down is gone, and a server restart forgets the consumer: after a
    reconnect the feed starts a new reader right after the last record it yielded.
    """
    next_seq = since
    while True:
        reconnects = store.nc.stats["reconnects"]
        quiet_since = time.monotonic()
        batches = store.read_batches(
            since=next_seq, subject=subject, follow=True, idle_timeout=min(heartbeat, 1.0)
        )
        try:
            async for batch in batches:
                if store.nc.stats["reconnects"] != reconnects:
                    break  # this batch may follow a gap: read again from the last record yielded
                if batch:
                    next_seq = batch[-1].seq + 1
                    quiet_since = time.monotonic()
                    yield batch
                elif time.monotonic() - quiet_since >= heartbeat:
                    quiet_since = time.monotonic()
                    yield None
        finally:
            with contextlib.suppress(Exception):
                await batches.aclose()  # type: ignore[attr-defined]


LIVE_QUEUE = 1000  # agent deltas held for one slow client before the oldest are dropped


class Signal(NamedTuple):
    """A live signal as clients get it: its subject, and its data with sealed fields opened."""

    subject: str
    data: bytes


@contextlib.asynccontextmanager
async def live_signals(store: LiveEventStore, *subjects: str) -> AsyncIterator[asyncio.Queue[Signal]]:
    """Short-lived signals (agent token deltas, pairing codes) on ``subjects`` as they
    happen, no replay; their sealed fields opened (``store.open``).

    They are not part of the log: a client that drops misses the ones sent meanwhile, and
    the finished reply arrives as a message event anyway. A bounded queue keeps a slow
    client from holding more than ``LIVE_QUEUE`` of them.
    """
    queue: asyncio.Queue[Signal] = asyncio.Queue(LIVE_QUEUE)

    async def deliver(msg: Msg) -> None:
        signal = Signal(msg.subject, await store.open(msg.data))
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(signal)

    subscriptions = [await store.nc.subscribe(subject, cb=deliver) for subject in subjects]
    try:
        raise_if_cancelled()  # the subscribes' flushes can swallow a client gone meanwhile
        yield queue
    finally:
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


def agent_deltas(tenant_id: str, conversation_id: str | None = None) -> str:
    """The live subject of a tenant's agent deltas, or of one conversation's."""
    if conversation_id is None:
        return subjects.live_subject(tenant_id, "agent") + ".>"
    return subjects.live_subject(tenant_id, "agent", conversation_id) + ".*"
