"""One partition worker of a read model: worker K of N folds the tenants of its buckets.

A LiveWorker (projections/worker.py) like the single one: it (re)creates its durable
consumer at start from its checkpoints — here on the feed ``EVENTS_PARTITIONED``, named
``proj-<name>-v<version>-p<K>of<N>``, filtered to ``part.<b>.>`` for each bucket it owns,
starting after the lowest ``source_seq`` of those buckets — and applies one batch per
transaction, acking after commit. What a bucket checkpoint means, and how the 'live'
checkpoint follows them, is in projections/partitions.py.
"""

from __future__ import annotations

from typing import Any, Unpack

import structlog
from nats.aio.msg import Msg
from nats.js.errors import APIError

from adapters.nats.event_store import EVENTS_STREAM
from adapters.nats.pull import ack_position
from adapters.postgres.database import Connection
from projections.engine import BatchOutcome
from projections.partitions import (
    Assignment,
    PartitionError,
    Partitioning,
    apply_partition_batch,
    ensure_partitions,
    from_feed,
    raise_idle,
    read_partitions,
)
from projections.worker import LiveWorker, WorkerOptions

log = structlog.get_logger()

_STREAM_NOT_FOUND = 10059


class PartitionWorker(LiveWorker):
    def __init__(
        self,
        *,
        partitioning: Partitioning,
        partitions: int,
        partition: int,
        **options: Unpack[WorkerOptions],
    ) -> None:
        self.assignment = Assignment(partitions, partition, partitioning.buckets)
        super().__init__(consumer=self.assignment.consumer(options["projection"]), **options)
        self._partitioning = partitioning
        self._feed = partitioning.stream_name
        self._idle_raised_to = 0  # the feed sequence the last idle raise covered

    def _buckets(self) -> list[int]:
        return self.assignment.owned

    async def _start(self, conn: Connection) -> str:
        await self._ensure_feed()
        await ensure_partitions(conn, self.projection, self.assignment.buckets)
        stored = await read_partitions(conn, self.projection)
        checkpoints = {bucket: stored[bucket] for bucket in self.assignment.owned}
        lowest_events = min(events for events, _ in checkpoints.values())
        self.last_applied_seq = lowest_events
        await self._refuse_gap(lowest_events)
        await self._recreate_consumer(after=min(source for _, source in checkpoints.values()))
        return self._feed

    async def _fold(self, conn: Connection, msgs: list[Msg]) -> BatchOutcome:
        records = [from_feed(m.subject, ack_position(m.reply)[0], m.data, m.headers) for m in msgs]
        return await apply_partition_batch(conn, self._target, records, owned=self.assignment.owned)

    async def _when_idle(self, conn: Connection) -> None:
        """Nothing arrived: if nothing of ours lies between what we acknowledged and the feed's
        last message, our buckets are applied up to that message. The feed's end is read
        first, so a message of ours stored after it is beyond what the raise covers.

        The consumer's ``num_pending`` is not enough: the server counts it apart from the
        store, a moment behind, and a raise on a stale zero skipped events of ours. So the
        store itself is asked for each owned bucket's next message after the ack floor."""
        info = await self._jetstream.stream_info(self._feed)
        feed_last = int(info.get("state", {}).get("last_seq", 0))
        if feed_last <= self._idle_raised_to:
            return
        consumer = await self._jetstream.consumer_info(self._feed, self.consumer)
        if "error" in consumer or consumer.get("num_pending", 1) or consumer.get("num_ack_pending", 1):
            return
        acked = int(consumer.get("ack_floor", {}).get("stream_seq", 0))
        for bucket in self.assignment.owned:
            waiting = await self._jetstream.next_seq(self._feed, acked + 1, f"part.{bucket}.>")
            if waiting is not None and waiting <= feed_last:
                return  # not delivered yet: the next batch brings it
        events_seq = await self._events_seq_at(feed_last)
        if events_seq is None:
            return
        await raise_idle(conn, self.projection, self.assignment.owned, events_seq, feed_last)
        self._idle_raised_to = feed_last
        self.last_applied_seq = max(self.last_applied_seq, events_seq)

    async def _events_seq_at(self, feed_seq: int) -> int | None:
        """The EVENTS sequence of the feed's message ``feed_seq`` (None if it is gone)."""
        reply = await self._jetstream.direct_get(self._feed, feed_seq)
        if not reply.headers or "Nats-Stream-Source" not in reply.headers:
            return None
        return from_feed(reply.headers["Nats-Subject"], feed_seq, b"", reply.headers).record.seq

    async def _ensure_feed(self) -> None:
        """Create the feed on first use, replicated like EVENTS; refuse one made differently."""
        desired = dict(self._partitioning.stream)
        info = await self._jetstream.stream_info(self._feed)
        if "error" not in info:
            if info["config"].get("sources") != desired.get("sources"):
                raise PartitionError(
                    f"{self._feed} exists with sources {info['config'].get('sources')}, streams.yaml says"
                    f" {desired.get('sources')}: delete it (it is derived) and start the workers again"
                )
            return
        if info["error"].get("err_code") != _STREAM_NOT_FOUND:
            raise APIError.from_error(info["error"])
        events = await self._jetstream.stream_info(EVENTS_STREAM)
        if "error" in events:
            raise APIError.from_error(events["error"])
        desired["num_replicas"] = events["config"].get("num_replicas", 1)
        created = await self._jetstream.create_stream(self._feed, desired)
        if "error" in created:
            raise APIError.from_error(created["error"])
        log.info("partition_feed_created", stream=self._feed, buckets=self.assignment.buckets)

    async def _refuse_gap(self, lowest_events: int) -> None:
        """The feed keeps a window (max_age); a worker stopped longer than that cannot resume."""
        info = await self._jetstream.stream_info(self._feed)
        state = info.get("state", {})
        if not state.get("messages"):
            return
        first_events = await self._events_seq_at(int(state["first_seq"]))
        if first_events is not None and first_events > lowest_events + 1:
            raise PartitionError(
                f"{self._feed} starts at EVENTS seq {first_events} but {self.consumer} has applied only"
                f" up to {lowest_events}: the events between have aged out of the feed. Rebuild the read"
                f" model (`moltbot projections rebuild {self.projection.name}`), then start the workers."
            )

    async def _recreate_consumer(self, *, after: int) -> None:
        template = {k: v for k, v in self._partitioning.consumer_template.items() if k != "stream"}
        position: dict[str, Any] = (
            {"deliver_policy": "by_start_sequence", "opt_start_seq": after + 1}
            if after
            else {"deliver_policy": "all"}
        )
        config = template | {"filter_subjects": [f"part.{b}.>" for b in self.assignment.owned]} | position
        await self._jetstream.recreate_consumer(self._feed, self.consumer, config)
        log.info(
            "projection_consumer_ready",
            consumer=self.consumer,
            buckets=self.assignment.owned,
            start_seq=after + 1,
        )
