"""A cloud connection's recent history, brought in once when it is first connected.

A kind gives its history as :data:`History`: for each conversation active since a time, the
conversation (to create if new) and its last :data:`PER_CONVERSATION` messages, oldest
first, normalized exactly as its live events are (the same ids from the same provider ids),
so a message that also arrives live is stored once. Each message is marked ``backfill``:
shown in the inbox with its own time, never answered by the agent, never unread.

"Once" is the log's: ``connection.backfilled`` is recorded after the history, and a session
that finds it on its connection's subject brings nothing in. A session stopped half-way finds
none and brings the history in again; what it stored before is stored once more only past
the log's duplicate window, and the read models keep each message once by its id. A failure
of the provider is logged and left for the next start; the live session goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adapters.channels.inbound import Intake
from domain import events as ev
from domain import subjects
from domain.ports import EventStore

DAYS = 14  # conversations active in this window are brought in
PER_CONVERSATION = 50  # their last messages

Delivered = tuple[ev.ConversationCreated | None, Sequence[ev.Event]]
History = Callable[[datetime], AsyncIterator[Delivered]]  # since -> each conversation's history


def as_backfill(event: ev.Event) -> ev.Event:
    """``event`` marked as history where it is a message; anything else as it is."""
    if isinstance(event, ev.MessageReceived | ev.MessageSent) and not event.data.backfill:
        return msgspec.structs.replace(event, data=msgspec.structs.replace(event.data, backfill=True))
    return event


async def backfilled(store: EventStore, tenant_id: str, connection_id: str) -> bool:
    subject = subjects.event_subject(tenant_id, ev.CONNECTION, connection_id, ev.ConnectionBackfilled.TYPE)
    return await store.last_on(subject) is not None


async def backfill_once(
    store: EventStore,
    intake: Intake,
    *,
    tenant_id: str,
    connection_id: str,
    actor: str,
    history: History,
    errors: tuple[type[BaseException], ...],
    log: Any,
    now: datetime | None = None,
) -> ev.ConnectionBackfilled | None:
    """Bring the history in unless it was (``errors``: the provider's, logged and left for the
    next start); the ``connection.backfilled`` recorded, or None."""
    if await backfilled(store, tenant_id, connection_id):
        return None
    since = (now or datetime.now(UTC)) - timedelta(days=DAYS)
    conversations = messages = 0
    log.info("backfill_started", since=since.isoformat())
    try:
        async for created, events in history(since):
            marked = [as_backfill(event) for event in events]
            if not marked:
                continue
            await intake.take(created, marked)
            conversations += 1
            messages += sum(isinstance(e, ev.MessageReceived | ev.MessageSent) for e in marked)
    except errors as exc:
        log.warning("backfill_failed", error=repr(exc), conversations=conversations, messages=messages)
        return None
    done = ev.new_event(
        ev.ConnectionBackfilled, tenant_id=tenant_id, aggregate_id=connection_id, actor=actor,
        data=ev.ConnectionBackfilledData(since=since, conversations=conversations, messages=messages),
    )  # fmt: skip
    await store.append(done)
    log.info("backfill_done", conversations=conversations, messages=messages)
    return done
