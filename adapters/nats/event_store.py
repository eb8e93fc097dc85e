"""The event store: canonical events appended to and read from the EVENTS stream.

- ``append`` publishes with ``Nats-Msg-Id`` = the event's dedupe key, so a retry inside
  the duplicate window is stored once, and optionally with an expected last sequence on
  the aggregate's subjects (optimistic concurrency).
- ``append_many`` publishes concurrently (a window of requests in flight on one
  connection, acks awaited together), which keeps the log in the order given.
- ``append_batch`` appends events as one JetStream atomic batch (the stream's
  ``allow_atomic``): all of them are stored, contiguous and in order, or none, in one
  round trip; optionally expecting the first one's aggregate to be at a sequence.
- ``update`` is the decide loop: load an aggregate, decide, append the decision as one
  atomic batch with the expected sequence, and on conflict reload and decide again.
- ``read`` replays from a sequence with a subject filter through an ephemeral pull
  consumer (no acks), prefetching the next batch while the caller works.

With a :class:`~adapters.vault.sealing.Sealer`, personal fields are sealed before every
append and opened in everything read back (``open`` / ``open_many`` for bytes the caller
pulled itself); without one, events are stored and read as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from adapters.nats.errors import ConcurrencyConflict, EventStoreError
from adapters.nats.jetstream import JetStreamApi
from adapters.nats.pull import PullStream, ack_position
from adapters.vault.sealing import Sealer
from domain import subjects
from domain.codec import EventCodec, dedupe_key
from domain.events import Event
from domain.ports import Appended, Decide, StoredEvent, StoredRecord

__all__ = ["EVENTS_STREAM", "Appended", "EventStore", "StoredEvent", "StoredRecord"]

log = structlog.get_logger()

EVENTS_STREAM = "EVENTS"
_STALL_LIMIT = 30.0  # seconds without a message while replaying what is known to be stored
_WRONG_LAST_SEQUENCE = 10071
_WRONG_LAST_SEQUENCE_CLUSTERED = 10164
_BATCH_DUPLICATE_ID = 10201  # an atomic batch holding a message id stored before: a retry
MAX_BATCH = 1000  # the server's limit of messages in one atomic batch


class EventStore:
    def __init__(
        self,
        nc: Client,
        *,
        codec: EventCodec | None = None,
        stream: str = EVENTS_STREAM,
        window: int = 512,
        timeout: float = 10.0,
        sealer: Sealer | None = None,
    ) -> None:
        self._nc = nc
        self.sealer = sealer
        self._js: JetStreamContext = nc.jetstream(timeout=timeout)
        self.codec = codec or EventCodec()
        self.stream = stream
        self._window = window
        self._timeout = timeout

    @property
    def nc(self) -> Client:
        return self._nc

    # --- writing -------------------------------------------------------------------

    async def append(self, event: Event, *, expected_seq: int | None = None) -> Appended:
        """Append one event. ``expected_seq`` is the aggregate's last sequence (0 = new)."""
        if self.sealer is not None:
            (event,) = await self.sealer.seal_events([event])
        return await self._append_sealed(event, expected_seq)

    async def _append_sealed(self, event: Event, expected_seq: int | None = None) -> Appended:
        key = dedupe_key(event)
        headers = {"Nats-Msg-Id": key}
        aggregate = subjects.aggregate_filter(event.tenant_id, event.AGGREGATE, event.aggregate_id)
        if expected_seq is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_seq)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = aggregate
        try:
            ack = await self._js.publish(
                event.subject, self.codec.encode(event), timeout=self._timeout, headers=headers
            )
        except BadRequestError as exc:
            if expected_seq is None or exc.err_code not in (
                _WRONG_LAST_SEQUENCE,
                _WRONG_LAST_SEQUENCE_CLUSTERED,
            ):
                raise
            return await self._resolve_conflict(event, key, aggregate, expected_seq)
        return Appended(event.id, ack.seq, bool(ack.duplicate))

    async def _resolve_conflict(self, event: Event, key: str, aggregate: str, expected_seq: int) -> Appended:
        # The expected-sequence check runs before dedupe: a retry of an append whose ack
        # was lost lands here. It succeeded if the aggregate's last message is ours.
        last = await self.last_on(aggregate)
        if last is not None and (last.headers or {}).get("Nats-Msg-Id") == key:
            return Appended(event.id, last.seq, duplicate=True)
        raise ConcurrencyConflict(aggregate, expected_seq, last.seq if last else None)

    async def append_many(self, events: Sequence[Event]) -> list[Appended]:
        """Append events in order, a window of publishes in flight at a time."""
        results: list[Appended] = []
        if self.sealer is not None:  # first: sealing may wait for a key, which would reorder
            events = await self.sealer.seal_events(events)
        for start in range(0, len(events), self._window):
            chunk = events[start : start + self._window]
            # Tasks start in creation order and each writes its request before its first
            # suspension, so the server receives (and sequences) them in this order.
            results.extend(await asyncio.gather(*(self._append_sealed(event) for event in chunk)))
        return results

    async def append_batch(
        self, events: Sequence[Event], *, expected_seq: int | None = None
    ) -> list[Appended]:
        """Append ``events`` as one atomic batch: all stored (contiguous, in order) or none.

        ``expected_seq`` is the last sequence of the first event's aggregate (0 = new); a
        concurrent writer makes the whole batch fail with :class:`ConcurrencyConflict`. A
        retry of a batch whose ack was lost answers the stored sequences, as duplicates."""
        if len(events) > MAX_BATCH:
            raise EventStoreError(f"an atomic batch holds at most {MAX_BATCH} events, not {len(events)}")
        if len(events) <= 1:
            return [await self.append(events[0], expected_seq=expected_seq)] if events else []
        if self.sealer is not None:
            events = await self.sealer.seal_events(events)
        batch_id, last = uuid.uuid4().hex, len(events)
        sends: list[Awaitable[Msg | None]] = []
        for n, event in enumerate(events, 1):
            headers = {"Nats-Msg-Id": dedupe_key(event), "Nats-Batch-Id": batch_id}
            headers["Nats-Batch-Sequence"] = str(n)
            if n == 1 and expected_seq is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_seq)
                headers["Nats-Expected-Last-Subject-Sequence-Subject"] = _aggregate_of(event)
            if n == last:
                headers["Nats-Batch-Commit"] = "1"
            body = self.codec.encode(event)
            if n in (1, last):  # the first reports a refused batch early, the last commits it
                sends.append(self._nc.request(event.subject, body, timeout=self._timeout, headers=headers))
            else:
                sends.append(self._nc.publish(event.subject, body, headers=headers))
        # As in append_many: each send is written before its first suspension, in this order.
        replies = await asyncio.gather(*sends)
        first, commit = (_batch_reply(reply) for reply in (replies[0], replies[-1]))
        error = first.get("error") or commit.get("error")
        if error is None:
            last_seq = int(commit["seq"])
            return [Appended(e.id, last_seq - last + n, False) for n, e in enumerate(events, 1)]
        code = error.get("err_code")
        if code in (_WRONG_LAST_SEQUENCE, _WRONG_LAST_SEQUENCE_CLUSTERED, _BATCH_DUPLICATE_ID):
            return await self._resolve_batch(events, expected_seq, code)
        raise EventStoreError(f"atomic batch refused: {error.get('description', error)}")

    async def _resolve_batch(
        self, events: Sequence[Event], expected_seq: int | None, code: int
    ) -> list[Appended]:
        # A lost ack retried: the batch is stored when its last event is the last on its aggregate.
        stored = await self.last_on(_aggregate_of(events[-1]))
        if stored is not None and (stored.headers or {}).get("Nats-Msg-Id") == dedupe_key(events[-1]):
            return [Appended(e.id, stored.seq - len(events) + n, True) for n, e in enumerate(events, 1)]
        if code == _BATCH_DUPLICATE_ID:
            # Part of it was stored apart (before batches, or by another writer): the rest
            # goes one at a time, each deduplicated on its own.
            log.info("atomic_batch_partly_stored", events=len(events))
            results = [await self._append_sealed(events[0], expected_seq)]
            return results + [await self._append_sealed(event) for event in events[1:]]
        aggregate = _aggregate_of(events[0])
        first = stored if aggregate == _aggregate_of(events[-1]) else await self.last_on(aggregate)
        raise ConcurrencyConflict(aggregate, expected_seq or 0, first.seq if first else None)

    async def last_on(self, subject: str) -> StoredRecord | None:
        """The last message stored on ``subject`` (wildcards allowed), or None."""
        try:
            raw = await self._js.get_last_msg(self.stream, subject, direct=True)
        except NotFoundError:
            return None
        headers = {k: v for k, v in (raw.headers or {}).items() if not k.startswith("Nats-Stream")}
        return StoredRecord(raw.seq or 0, raw.subject or subject, await self.open(raw.data or b""), headers)

    async def get(self, seq: int) -> Event | None:
        """The event stored at ``seq``, or None."""
        try:
            raw = await self._js.get_msg(self.stream, seq, direct=True)
        except NotFoundError:
            return None
        return await self.decode(raw.data or b"")

    async def open(self, raw: bytes) -> bytes:
        """Stored bytes with their personal fields opened (as they are without a sealer)."""
        return raw if self.sealer is None else await self.sealer.open(raw)

    async def open_many(self, raws: Sequence[bytes]) -> list[bytes]:
        return list(raws) if self.sealer is None else await self.sealer.open_many(raws)

    async def seal_text(self, tenant_id: str, text: str) -> str:
        """One personal value sealed for a live signal (as it is without a sealer)."""
        return text if self.sealer is None else await self.sealer.seal_text(tenant_id, text)

    async def decode(self, raw: bytes) -> Event:
        """Stored bytes as an event, its personal fields opened."""
        return self.codec.decode(await self.open(raw))

    async def load(self, tenant_id: str, aggregate: str, aggregate_id: str) -> tuple[list[StoredEvent], int]:
        """An aggregate's events and its last sequence (0 when it has none)."""
        subject = subjects.aggregate_filter(tenant_id, aggregate, aggregate_id)
        last = await self.last_on(subject)
        if last is None:
            return [], 0
        history = [
            StoredEvent(record.seq, self.codec.decode(record.data))
            async for record in self.read(subject=subject, until_seq=last.seq)
        ]
        return history, last.seq

    async def update(
        self,
        tenant_id: str,
        aggregate: str,
        aggregate_id: str,
        decide: Decide,
        *,
        attempts: int = 5,
    ) -> list[Appended]:
        """Load, decide, append with the expected sequence; retry on conflict.

        ``decide`` gets the aggregate's events and returns the new ones (maybe none).
        The new events are appended as one atomic batch expecting the aggregate's last
        sequence, so a decision is stored whole or not at all, and a concurrent writer makes
        it run again on fresh history.
        """
        for attempt in range(1, attempts + 1):
            history, last_seq = await self.load(tenant_id, aggregate, aggregate_id)
            new_events = decide([stored.event for stored in history])
            try:
                return await self.append_batch(new_events, expected_seq=last_seq)
            except ConcurrencyConflict:
                if attempt == attempts:
                    raise
                log.info("append_conflict_retried", aggregate_id=aggregate_id, attempt=attempt)
        raise EventStoreError("unreachable")  # pragma: no cover

    # --- reading -------------------------------------------------------------------

    async def last_seq(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def read(
        self,
        *,
        since: int = 1,
        subject: str = subjects.ALL_EVENTS,
        until_seq: int | None = None,
        follow: bool = False,
        batch: int = 1000,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[StoredRecord]:
        """Stored messages from sequence ``since`` matching ``subject``, in order.

        Stops at ``until_seq`` or, without ``follow``, at the end of what is stored when
        reading began; with ``follow`` waits for new messages until cancelled.
        """
        async for records in self.read_batches(
            since=since, subject=subject, until_seq=until_seq, follow=follow, batch=batch,
            idle_timeout=idle_timeout,
        ):  # fmt: skip
            for record in records:
                yield record

    async def read_batches(
        self,
        *,
        since: int = 1,
        subject: str = subjects.ALL_EVENTS,
        until_seq: int | None = None,
        follow: bool = False,
        batch: int = 1000,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[list[StoredRecord]]:
        """:meth:`read` as the batches the server delivered (at most ``batch`` records each,
        their personal fields opened together); following, an empty batch after each
        ``idle_timeout`` without one, so a reader can tell quiet from a stall."""
        if until_seq is None and not follow:
            until_seq = await self.last_seq()
        if until_seq is not None and since > until_seq:
            return
        reader = _PullReader(self._js, self.stream, subject, since, batch, idle_timeout, follow)
        await reader.start()
        try:
            async for stored in reader.batches():
                if until_seq is not None and stored and stored[-1].seq >= until_seq:
                    stored = [record for record in stored if record.seq <= until_seq]
                    yield await self._opened_all(stored)
                    return
                yield await self._opened_all(stored)
        finally:
            await reader.close()

    async def _opened_all(self, records: list[StoredRecord]) -> list[StoredRecord]:
        if self.sealer is None or not records:
            return records
        opened = await self.sealer.open_many([record.data for record in records])
        return [
            record if data is record.data else msgspec.structs.replace(record, data=data)
            for record, data in zip(records, opened, strict=True)
        ]

    async def read_events(self, **kwargs: Any) -> AsyncIterator[StoredEvent]:
        async for record in self.read(**kwargs):
            yield StoredEvent(record.seq, self.codec.decode(record.data))


class _PullReader:
    """An ephemeral AckNone pull consumer from a start sequence, read ahead in batches."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str,
        since: int,
        batch: int,
        idle_timeout: float,
        follow: bool,
    ) -> None:
        self._api = JetStreamApi(js._nc)
        self._cleanup_api = JetStreamApi(js._nc, timeout=5)  # closing waits less
        self._stream = stream
        self._subject = subject
        self._since = max(since, 1)
        self._batch = batch
        self._idle_timeout = idle_timeout
        self._follow = follow
        self._pull: PullStream | None = None
        self._consumer: str | None = None
        self._pending_at_start = 0

    async def start(self) -> None:
        config = {
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": self._since,
            "ack_policy": "none",
            "filter_subject": self._subject,
            "inactive_threshold": 60_000_000_000,
            "mem_storage": True,
            "num_replicas": 1,
        }
        created = await self._api.create_ephemeral(self._stream, config)
        self._consumer = created["name"]
        self._pending_at_start = int(created.get("num_pending", 0))
        self._pull = self._api.pull(self._stream, created["name"], batch=self._batch)
        await self._pull.start()

    async def batches(self) -> AsyncIterator[list[StoredRecord]]:
        """What each pull delivered, in order; following, ``[]`` after each idle wait."""
        assert self._pull is not None
        if not self._follow and self._pending_at_start == 0:
            return
        stalled_since = time.monotonic()
        while True:
            msgs = await self._pull.next_batch(self._idle_timeout)
            if not msgs:
                if not self._follow and time.monotonic() - stalled_since > _STALL_LIMIT:
                    raise EventStoreError(f"{self._stream}: replay stalled for {_STALL_LIMIT:.0f}s")
                if self._follow:
                    yield []
                continue
            stalled_since = time.monotonic()
            records = []
            for msg in msgs:
                seq, pending = ack_position(msg.reply)
                records.append(StoredRecord(seq, msg.subject, msg.data, msg.headers))
                if not self._follow and pending == 0:
                    yield records
                    return
            yield records

    async def close(self) -> None:
        if self._pull is not None:
            with contextlib.suppress(Exception):
                await self._pull.close()
        if self._consumer is not None:
            # Unsubscribing does not delete the consumer; the inactive threshold would.
            with contextlib.suppress(Exception):
                await self._cleanup_api.delete_consumer(self._stream, self._consumer)


def _batch_reply(reply: Msg | None) -> dict[str, Any]:
    """A reply to a message of an atomic batch: empty for one taken in, else JSON."""
    return msgspec.json.decode(reply.data) if reply is not None and reply.data else {}


def _aggregate_of(event: Event) -> str:
    """The subjects of an event's aggregate (what an expected sequence is checked on)."""
    return subjects.aggregate_filter(event.tenant_id, event.AGGREGATE, event.aggregate_id)
