"""Rewriting the event log into itself with the same sequence numbers (``moltbot events seal``).

JetStream never changes a stored message, so a rewrite copies the log, each message passed
through ``transform``, into a second stream and swaps it in by mirror-and-promote:

1. **Park.** EVENTS stops taking appends: its subjects move to ``parked.ev.>``, so a writer
   still running gets no responder and retries rather than losing an event.
2. **Copy.** Every message, in order, into ``EVENTS_REWRITE``, which starts at EVENTS' first
   sequence, listens on ``rewrite.ev.>`` and stores the subjects back as ``ev.>`` (a subject
   transform); each ack must name the original's sequence, or the rewrite stops.
3. **Swap.** ``EVENTS_PARTITIONED`` (derived: on a new source it would copy everything again,
   duplicates included) and EVENTS are deleted, and their files with them. EVENTS is made
   again as a mirror of the copy (a mirror keeps sequence numbers), the copy is deleted once
   the mirror holds all of it, and EVENTS is promoted: no mirror, its own configuration and
   subjects as before.
4. **Consumers.** Every durable consumer EVENTS had is made again where it stood: from the
   sequence after its ack floor.

A failure before the swap puts EVENTS back as it was and deletes the copy. A rewrite
stopped during the swap is finished by running it again: the copy is complete by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog
from nats.aio.client import Client

from adapters.nats.errors import EventStoreError
from adapters.nats.event_store import EVENTS_STREAM, EventStore
from adapters.nats.jetstream import JetStreamApi

log = structlog.get_logger()

COPY: Final = "EVENTS_REWRITE"
PARTITIONED: Final = "EVENTS_PARTITIONED"
_LOG_SUBJECTS: Final = ["ev.>"]
_PARKED: Final = ["parked.ev.>"]
_COPY_PREFIX: Final = "rewrite."
_NOT_FOUND: Final = 10059
_FINISHED: Final = "moltbot.rewrite"  # the copy's metadata, once complete
_WINDOW: Final = 256  # publishes in flight while copying
_DUPLICATE_WINDOW: Final = 0.1  # seconds (the server's least): an id seen again within it waits

Transform = Callable[[bytes], Awaitable[bytes]]
Progress = Callable[[int, int], None]  # (sequence copied, last sequence)


class RewriteError(EventStoreError):
    """The log cannot be rewritten as asked; the message says why and what to do."""


class ConsumerPosition(msgspec.Struct, frozen=True):
    name: str
    config: dict[str, Any]
    ack_floor: int  # the last stream sequence it acknowledged
    waiting: int  # pull requests waiting: a process is reading it

    def recreated(self) -> dict[str, Any]:
        """Its configuration, starting after its ack floor."""
        config = {k: v for k, v in self.config.items() if k not in ("opt_start_seq", "opt_start_time")}
        if self.ack_floor > 0:
            config |= {"deliver_policy": "by_start_sequence", "opt_start_seq": self.ack_floor + 1}
        return config


class RewritePlan(msgspec.Struct, frozen=True):
    first_seq: int
    last_seq: int
    messages: int
    consumers: list[ConsumerPosition]
    partitioned: bool  # EVENTS_PARTITIONED exists (it is deleted; its first worker makes it again)
    resuming: bool  # a rewrite stopped during its swap: only the swap is left to do
    config: dict[str, Any]  # EVENTS' configuration, to make it again with


class RewriteReport(msgspec.Struct, frozen=True):
    copied: int
    changed: int  # messages whose bytes the transform changed
    first_seq: int
    last_seq: int
    consumers: list[str]
    partitioned_deleted: bool


class LogRewrite:
    """The rewrite of EVENTS through one ``transform`` (see the module)."""

    def __init__(self, nc: Client, *, timeout: float = 30.0) -> None:
        self._nc = nc
        self._api = JetStreamApi(nc, timeout=timeout)

    async def plan(self) -> RewritePlan:
        events = await self._api.stream_info(EVENTS_STREAM)
        copy = await self._api.stream_info(COPY)
        partitioned = "error" not in await self._api.stream_info(PARTITIONED)
        finished = _finished_copy(copy)
        if finished is not None and ("error" in events or events["config"].get("mirror")):
            config, consumers = finished
            state = copy["state"]
            return RewritePlan(
                state["first_seq"], state["last_seq"], state["messages"], consumers, partitioned, True, config
            )
        if "error" in events:
            raise RewriteError(f"{EVENTS_STREAM}: {events['error'].get('description')}")
        state = events["state"]
        if state.get("num_deleted"):
            raise RewriteError(
                f"{EVENTS_STREAM} has {state['num_deleted']} deleted sequences: a rewrite could not keep"
                " its sequence numbers"
            )
        config = events["config"]
        if config.get("subjects") == _PARKED:  # parked by a rewrite that stopped before its swap
            config["subjects"] = _LOG_SUBJECTS
        consumers = await self._durables()
        return RewritePlan(
            state["first_seq"], state["last_seq"], state["messages"], consumers, partitioned, False, config
        )

    async def run(self, transform: Transform, progress: Progress | None = None) -> RewriteReport:
        plan = await self.plan()
        if plan.resuming:
            log.info("log_rewrite_resumed", stream=COPY, last_seq=plan.last_seq)
            await self._swap(plan)
            return self._report(plan, 0, 0)
        busy = [f"{c.name} ({c.waiting} pull requests waiting)" for c in plan.consumers if c.waiting]
        if busy:
            raise RewriteError(
                f"{EVENTS_STREAM} is being read by {', '.join(busy)}: stop the product's processes first"
            )
        await self._delete_stream(COPY)  # left by a rewrite that failed before its swap
        await self._update(plan.config | {"subjects": _PARKED})
        try:
            copied, changed = await self._copy(plan, transform, progress)
        except BaseException:
            await self._delete_stream(COPY)
            await self._update(plan.config)
            raise
        await self._swap(plan)
        return self._report(plan, copied, changed)

    @staticmethod
    def _report(plan: RewritePlan, copied: int, changed: int) -> RewriteReport:
        return RewriteReport(
            copied, changed, plan.first_seq, plan.last_seq, [c.name for c in plan.consumers], plan.partitioned
        )

    # --- steps ---------------------------------------------------------------------

    async def _copy(
        self, plan: RewritePlan, transform: Transform, progress: Progress | None
    ) -> tuple[int, int]:
        config = plan.config
        copy_config = {
            "name": COPY,
            "description": f"A rewrite of {EVENTS_STREAM} in progress (moltbot events seal).",
            "subjects": [f"{_COPY_PREFIX}ev.>"],
            "subject_transform": {"src": f"{_COPY_PREFIX}ev.>", "dest": "ev.>"},
            "first_seq": plan.first_seq,
            "retention": "limits",
            "storage": config.get("storage", "file"),
            "num_replicas": config.get("num_replicas", 1),
            "duplicate_window": int(_DUPLICATE_WINDOW * 1e9),  # message ids are copied as they are
        }
        created = await self._api.create_stream(COPY, copy_config)
        if "error" in created:
            raise RewriteError(f"{COPY}: {created['error'].get('description')}")
        js = self._nc.jetstream(timeout=30)
        source = EventStore(self._nc)
        copied = changed = 0
        pending: list[asyncio.Task[Any]] = []
        expected: list[int] = []

        async def settle() -> None:
            for seq, ack in zip(expected, await asyncio.gather(*pending), strict=True):
                if ack.seq != seq or ack.duplicate:
                    raise RewriteError(
                        f"copy of sequence {seq} was stored as {ack.seq} (duplicate: {ack.duplicate})"
                    )
            pending.clear()
            expected.clear()

        recent = _RecentIds()
        if plan.messages:
            async for record in source.read(since=plan.first_seq, until_seq=plan.last_seq):
                data = await transform(record.data)
                changed += data != record.data
                headers = {k: v for k, v in (record.headers or {}).items() if _kept_header(k)}
                wait = recent.wait_before(headers.get("Nats-Msg-Id"))
                if wait:  # the log holds this id twice (stored further apart than its window)
                    await settle()
                    await asyncio.sleep(wait)
                pending.append(
                    asyncio.create_task(
                        js.publish(_COPY_PREFIX + record.subject, data, headers=headers or None)
                    )
                )
                expected.append(record.seq)
                copied += 1
                if len(pending) >= _WINDOW:
                    await settle()
                    if progress:
                        progress(record.seq, plan.last_seq)
            await settle()
        if progress:
            progress(plan.last_seq, plan.last_seq)
        state = (await self._api.stream_info(COPY))["state"]
        if state["messages"] != plan.messages or (plan.messages and state["last_seq"] != plan.last_seq):
            raise RewriteError(
                f"{COPY} holds {state['messages']} messages up to {state['last_seq']}, not the log's"
            )
        # Finished: what the swap needs is kept with the copy, for a swap that has to be resumed.
        metadata = {_FINISHED: msgspec.json.encode([config, plan.consumers]).decode()}
        updated = await self._api.request(f"STREAM.UPDATE.{COPY}", copy_config | {"metadata": metadata})
        if "error" in updated:
            raise RewriteError(f"{COPY}: {updated['error'].get('description')}")
        return copied, changed

    async def _swap(self, plan: RewritePlan) -> None:
        config = plan.config
        await self._delete_stream(PARTITIONED)
        events = await self._api.stream_info(EVENTS_STREAM)
        if "error" in events or not events["config"].get("mirror"):
            await self._delete_stream(EVENTS_STREAM)
            # A mirror takes no subjects of its own, and no atomic publishing (the server refuses
            # both); EVENTS gets them back when it is promoted below.
            mirror = {
                k: v
                for k, v in config.items()
                if k not in ("subjects", "subject_transform", "first_seq", "allow_atomic")
            }
            created = await self._api.create_stream(EVENTS_STREAM, mirror | {"mirror": {"name": COPY}})
            if "error" in created:
                raise RewriteError(f"{EVENTS_STREAM} as a mirror: {created['error'].get('description')}")
        await self._caught_up(plan)
        await self._delete_stream(COPY)
        promoted = config | {"subjects": _LOG_SUBJECTS}
        await self._update({k: v for k, v in promoted.items() if k != "allow_atomic"})
        if config.get("allow_atomic"):
            await self._update(promoted)  # once it is no mirror
        for consumer in plan.consumers:
            await self._api.recreate_consumer(EVENTS_STREAM, consumer.name, consumer.recreated())
        log.info("log_rewritten", stream=EVENTS_STREAM, first_seq=plan.first_seq, last_seq=plan.last_seq)

    async def _caught_up(self, plan: RewritePlan) -> None:
        deadline = asyncio.get_running_loop().time() + 60 + plan.messages / 5_000
        while True:
            state = (await self._api.stream_info(EVENTS_STREAM))["state"]
            if state["messages"] == plan.messages and (
                not plan.messages or state["last_seq"] == plan.last_seq
            ):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RewriteError(
                    f"{EVENTS_STREAM} mirrored {state['messages']} of {plan.messages} messages from {COPY};"
                    " run `moltbot events seal` again to finish"
                )
            await asyncio.sleep(0.1)

    # --- JetStream requests --------------------------------------------------------

    async def _durables(self) -> list[ConsumerPosition]:
        found: list[ConsumerPosition] = []
        offset = 0
        while True:
            page = await self._api.request(f"CONSUMER.LIST.{EVENTS_STREAM}", {"offset": offset})
            if "error" in page:
                raise RewriteError(f"{EVENTS_STREAM} consumers: {page['error'].get('description')}")
            infos = page.get("consumers") or []
            for info in infos:
                config = info["config"]
                if config.get("durable_name"):
                    found.append(
                        ConsumerPosition(
                            name=info["name"],
                            config=config,
                            ack_floor=int(info.get("ack_floor", {}).get("stream_seq", 0)),
                            waiting=int(info.get("num_waiting", 0)),
                        )
                    )
            offset += len(infos)
            if not infos or offset >= int(page.get("total", 0)):
                return found

    async def _update(self, config: dict[str, Any]) -> None:
        updated = await self._api.request(f"STREAM.UPDATE.{EVENTS_STREAM}", config)
        if "error" in updated:
            raise RewriteError(f"{EVENTS_STREAM}: {updated['error'].get('description')}")

    async def _delete_stream(self, name: str) -> None:
        deleted = await self._api.request(f"STREAM.DELETE.{name}")
        if "error" in deleted and deleted["error"].get("err_code") != _NOT_FOUND:
            raise RewriteError(f"{name}: {deleted['error'].get('description')}")


def _finished_copy(info: dict[str, Any]) -> tuple[dict[str, Any], list[ConsumerPosition]] | None:
    """EVENTS' configuration and consumers, kept with a copy that is complete; None for none."""
    if "error" in info:
        return None
    kept = (info["config"].get("metadata") or {}).get(_FINISHED)
    if not kept:
        return None
    return msgspec.json.decode(kept, type=tuple[dict[str, Any], list[ConsumerPosition]])


class _RecentIds:
    """Message ids copied within the copy's duplicate window: the log may hold an id twice
    (written further apart than its own window), and the copy must store both."""

    def __init__(self) -> None:
        self._ids: dict[str, float] = {}  # id -> when it was copied, oldest first

    def wait_before(self, msg_id: str | None) -> float:
        """Seconds to wait before ``msg_id`` can be copied again (0: at once); records it."""
        now = time.monotonic()
        while self._ids:
            oldest, at = next(iter(self._ids.items()))
            if now - at <= _DUPLICATE_WINDOW + 0.05:
                break
            del self._ids[oldest]
        if msg_id is None:
            return 0.0
        seen = self._ids.pop(msg_id, None)
        wait = 0.0 if seen is None else _DUPLICATE_WINDOW + 0.05 - (now - seen)
        self._ids[msg_id] = now + max(wait, 0.0)
        return max(wait, 0.0)


def _kept_header(name: str) -> bool:
    """Headers copied with a message: ours and its message id, not the server's or a publish
    condition (an expected sequence would be checked again, against the copy)."""
    return not name.startswith("Nats-") or name == "Nats-Msg-Id"
