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
from collections.abc import AsyncIterator

from adapters.nats.event_store import EventStore, StoredRecord
from domain import subjects
from gateway.errors import ApiError

_PATTERN_CHARS = set("abcdefghijklmnopqrstuvwxyz_.*")


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
    store: EventStore,
    tenant_id: str,
    since: int,
    patterns: list[str] | None,
    *,
    heartbeat: float,
) -> AsyncIterator[StoredRecord | None]:
    """Matching records in order; ``None`` after each ``heartbeat`` seconds without one."""
    records = store.read(since=since, subject=subjects.tenant_filter(tenant_id), follow=True).__aiter__()
    pending: asyncio.Future[StoredRecord] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(records.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                yield None
                continue
            record = pending.result()
            pending = None
            if patterns and not any(fnmatch.fnmatchcase(event_type(record), p) for p in patterns):
                continue
            yield record
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await records.aclose()  # type: ignore[attr-defined]
