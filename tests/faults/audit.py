"""After a fault: wait until the product is quiet, then count what was lost or doubled.

Every count is taken from the real servers: the event log (EVENTS), the dead letters
(DLQ), the read models in PostgreSQL and what the resuming client received.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nats.js.errors import NotFoundError

from adapters.nats.dead_letters import CONSUMER, ORIGIN_SEQ
from adapters.nats.event_store import EventStore, StoredRecord
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain.errors import InvalidEvent
from domain.subjects import parse_event_subject
from projections.base import consumer_name
from projections.registry import all_projections
from tests.faults.load import Accepted, Follower
from tests.faults.plant import CONSUMERS, checkpoints, read_models_reach


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # wrong in another way (DLQ, order)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def summary(self) -> str:
        parts = [f"{name}: {items[:10]}" for name, items in vars(self).items() if items]
        return "; ".join(parts) or "clean"


async def _pending(store: EventStore) -> int:
    js = store.nc.jetstream()
    total = 0
    for stream, consumer in CONSUMERS.values():
        try:
            info = await js.consumer_info(stream, consumer)
        except NotFoundError:
            continue
        total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    return total


async def settle(store: EventStore, database_url: str, timeout: float) -> None:
    """Wait until the log stops growing, every worker is idle and the read models hold it all."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    last = -1
    while time.monotonic() < deadline:
        seq = await store.last_seq()
        idle = await _pending(store) == 0 and await read_models_reach(database_url, seq)
        if idle and seq == last:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.5:  # longer than the agent's debounce
                return
        else:
            quiet_since = None
        last = seq
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"not quiet after {timeout}s: log at {await store.last_seq()}, pending {await _pending(store)},"
        f" checkpoints {await checkpoints(database_url)}"
    )


async def _log(store: EventStore) -> tuple[list[tuple[StoredRecord, ev.Event]], dict[int, str]]:
    """The decodable events, and the subject of each undecodable one by its seq."""
    decoded: list[tuple[StoredRecord, ev.Event]] = []
    undecodable: dict[int, str] = {}
    async for record in store.read():
        try:
            decoded.append((record, store.codec.decode(record.data)))
        except InvalidEvent:
            undecodable[record.seq] = record.subject
    return decoded, undecodable


def _dead_lettered_by(subject: str) -> list[str]:
    """The consumers that dead-letter an undecodable event on ``subject``: the read models
    that fold its type (the subject's last token), or every one when no build knows it."""
    event_type = parse_event_subject(subject).event_type
    return [
        consumer_name(p) for p in all_projections() if event_type not in ev.BY_TYPE or event_type in p.handles
    ]


async def _dead_letters(store: EventStore) -> list[tuple[str, int]]:
    """(consumer, origin sequence) of every dead letter."""
    js = store.nc.jetstream()
    info = await js.stream_info("DLQ")
    letters: list[tuple[str, int]] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if not info.state.messages:
            break
        msg = await js.get_msg("DLQ", seq, direct=True)
        headers = msg.headers or {}
        letters.append((headers.get(CONSUMER, "?"), int(headers.get(ORIGIN_SEQ, "0"))))
    return letters


async def audit(
    store: EventStore,
    database_url: str,
    accepted: Accepted,
    *,
    webchat_tenant: str,
    follower: Follower,
    poison: list[int],
) -> Findings:
    found = Findings()
    log_records, undecodable = await _log(store)
    events = [event for _, event in log_records]

    # 1. Every accepted inbound message is in the log once and in the read model once.
    received = Counter(e.data.message_id for e in events if isinstance(e, ev.MessageReceived))
    direct = {
        e.data.message_id
        for e in accepted.appended.values()
        if isinstance(e, ev.MessageReceived | ev.MessageSent)
    }
    async with pg_connection(database_url) as conn:
        cur = await conn.execute("SELECT message_id, status, direction FROM rm_inbox.messages")
        rows = {r["message_id"]: r for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT c.conversation_id, c.message_count,"
            " (SELECT count(*) FROM rm_inbox.messages m WHERE m.conversation_id = c.conversation_id) AS n"
            " FROM rm_inbox.conversations c"
        )
        counts = await cur.fetchall()
        cur = await conn.execute(
            "SELECT tenant_id, sum(quantity) AS q FROM rm_usage.usage_daily"
            " WHERE metric = 'messages_in' GROUP BY tenant_id"
        )
        usage_in = {r["tenant_id"]: int(r["q"]) for r in await cur.fetchall()}
    for message_id in [*accepted.visitor_messages, *direct]:
        if message_id not in rows:
            found.lost.append(f"message {message_id} not in the inbox")
    found.duplicated += [f"message {m} received {n}x in the log" for m, n in received.items() if n > 1]
    found.duplicated += [
        f"conversation {r['conversation_id']} counts {r['message_count']} messages, has {r['n']}"
        for r in counts
        if r["message_count"] != r["n"]
    ]
    inbound_rows = Counter(
        e.tenant_id for e in events if isinstance(e, ev.MessageReceived) and e.data.message_id in rows
    )
    found.duplicated += [
        f"usage counts {usage_in.get(t, 0)} messages in for {t}, the inbox has {n}"
        for t, n in inbound_rows.items()
        if usage_in.get(t, 0) != n
    ]

    # 2. Every agent reply was sent exactly once, and every visitor's last question answered.
    replies = {e.data.message_id: e for e in events if isinstance(e, ev.MessageSendRequested)}
    sent = Counter(e.data.message_id for e in events if isinstance(e, ev.MessageSent))
    for message_id in replies:
        if sent[message_id] == 0:
            found.lost.append(f"reply {message_id} never sent")
        elif sent[message_id] > 1:
            found.duplicated.append(f"reply {message_id} sent {sent[message_id]}x")
        elif rows.get(message_id, {}).get("status") != "sent":
            found.lost.append(f"reply {message_id} not shown as sent in the inbox")
    last_question: dict[str, int] = {}
    last_reply: dict[str, int] = {}
    for record, event in log_records:
        if isinstance(event, ev.MessageReceived) and event.data.message_id in accepted.visitor_messages:
            last_question[event.aggregate_id] = record.seq
        if isinstance(event, ev.MessageSendRequested) and event.data.agent_run_id:
            last_reply[event.aggregate_id] = record.seq
    for conversation, seq in last_question.items():
        if last_reply.get(conversation, 0) < seq:
            found.lost.append(f"conversation {conversation}: last question (seq {seq}) not answered")
    runs = Counter(e.data.run_id for e in events if isinstance(e, ev.AgentRunCompleted))
    found.duplicated += [f"run {r} completed {n}x" for r, n in runs.items() if n > 1]

    # 3. The dead letters are exactly the poison events, once per read model of their type.
    letters = await _dead_letters(store)
    expected = {(c, seq) for seq in poison if seq in undecodable for c in _dead_lettered_by(undecodable[seq])}
    found.unexpected += [f"poison seq {seq} was decoded" for seq in poison if seq not in undecodable]
    got = Counter(letters)
    found.unexpected += [f"dead letter {k} not a poison event" for k in got if k not in expected]
    found.lost += [f"poison seq {seq} not dead-lettered by {c}" for c, seq in expected - set(got)]
    found.duplicated += [f"dead letter {k} {n}x" for k, n in got.items() if n > 1]
    found.unexpected += [f"undecodable seq {s} was not injected" for s in undecodable if s not in poison]

    # 4. While a part was down, the gateway said so (503, retry), nothing else.
    found.unexpected += [
        f"{n} posts answered {status}" for status, n in accepted.answers.items() if status != 503
    ]

    # 5. The resumed client saw every event of its tenant once, in order.
    mine = [r.seq for r, e in log_records if e.tenant_id == webchat_tenant]
    await follower.wait_for(mine[-1], 30)
    seen = Counter(follower.seqs)
    found.lost += [f"client missed seq {s}" for s in mine if s not in seen]
    found.duplicated += [f"client saw seq {s} {n}x" for s, n in seen.items() if n > 1]
    if follower.seqs != sorted(follower.seqs):
        found.unexpected.append("client saw events out of order")
    return found


def in_flight(before: int, after: int) -> int:
    return max(0, after - before)


def describe(rows: list[dict[str, Any]]) -> str:
    """The suite's table, as Markdown."""
    lines = [
        "| fault | events in flight | lost | duplicated | recovery time |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['fault']} | {r['in_flight']} | {r['lost']} | {r['duplicated']} | {r['recovery']:.2f} s |"
        for r in rows
    ]
    return "\n".join(lines)
