"""What waits for its time in the inbox read model, released when it comes:

- scheduled sends: a ``message.send_requested`` with ``send_at`` (status ``scheduled``) is
  released — ``message.send_released`` with the request's data, which the outbox sends like
  any request;
- follow-ups: one still ``waiting`` at ``due_at`` (the contact did not write first, when
  that was its condition) becomes a ``reminder.due``;
- away periods (tenants read model): one still on at its ``until`` ends (``tenant.away_ended``);
- morning digests: a person whose digest hour it is on their clock, and whose digest of today
  was not due yet, gets ``user.digest_due`` (the notifier sends it).

Why a schedule read model and a tick rather than JetStream's message schedules (nats-server
2.12+): the schedule is then the log itself (a rebuild restores it, ``nats`` shows it as
events), cancelling is an event like the rest (no message deletes in a stream, which the
roles are denied), and a release is keyed by the message, so several gateways ticking at
once, or a tick repeated after a crash, release it once (an away period ends once, a digest
is due once a day and person: each keyed by what it is). The cost is up to one tick
(``EVERY``) of lateness and one indexed query per tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from domain import events as ev
from domain.commands import release_event, reminder_event
from domain.ports import EventStore
from projections import inbox_queries, tenants_queries

log = structlog.get_logger()

EVERY = 1.0  # seconds between looks for what is due
BATCH = 200  # releases per look at most
SCHEDULER = "system:scheduler"


async def release_due(owner_pool: AsyncConnectionPool[Any], store: EventStore, now: datetime) -> int:
    """Release every scheduled message due at ``now``; how many were released."""
    async with owner_pool.connection() as conn:
        due = await inbox_queries.due_scheduled(conn, now, limit=BATCH)
    released = 0
    for found in due:
        request = await store.get(found.seq)
        if not isinstance(request, ev.MessageSendRequested) or request.data.message_id != found.message_id:
            log.error("scheduled_send_unreadable", message_id=found.message_id, seq=found.seq)
            continue
        await store.append(release_event(request, at=now))
        released += 1
    if released:
        log.info("scheduled_sends_released", count=released)
    return released


async def remind_due(owner_pool: AsyncConnectionPool[Any], store: EventStore, now: datetime) -> int:
    """A ``reminder.due`` for every follow-up due at ``now`` that still waits; how many."""
    async with owner_pool.connection() as conn:
        due = await inbox_queries.due_follow_ups(conn, now, limit=BATCH)
    reminders = [
        reminder_event(found.tenant_id, found.conversation_id, found.follow_up_id, found.note, at=now)
        for found in due
    ]
    return await _record(store, reminders, "follow_ups_due")


async def end_run_out(owner_pool: AsyncConnectionPool[Any], store: EventStore, now: datetime) -> int:
    """End every away period whose ``until`` came; how many."""
    async with owner_pool.connection() as conn:
        over = await tenants_queries.aways_run_out(conn, now, limit=BATCH)
    ends = [
        ev.new_event(
            ev.AwayEnded, tenant_id=found.tenant_id, aggregate_id=found.tenant_id, actor=SCHEDULER,
            occurred_at=now, data=ev.AwayEndedData(away_id=found.away_id, reason="until"),
        )
        for found in over
    ]  # fmt: skip
    return await _record(store, ends, "away_periods_ended")


async def owe_digests(owner_pool: AsyncConnectionPool[Any], store: EventStore, now: datetime) -> int:
    """A ``user.digest_due`` for every person whose morning it is; how many."""
    async with owner_pool.connection() as conn:
        owed = await tenants_queries.digests_due(conn, now, limit=BATCH)
    digests = [
        ev.new_event(
            ev.DigestDue, tenant_id=found.tenant_id, aggregate_id=found.user_id, actor=SCHEDULER,
            occurred_at=now, data=ev.DigestDueData(date=found.day),
        )
        for found in owed
    ]  # fmt: skip
    return await _record(store, digests, "digests_due")


async def _record(store: EventStore, events: Sequence[ev.Event], what: str) -> int:
    """The tick's events, appended together (each keyed by what it is); how many."""
    await store.append_many(events)
    if events:
        log.info(what, count=len(events))
    return len(events)
