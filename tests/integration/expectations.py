"""An independent oracle: what the read models must say about a list of events,
computed in plain Python without the projection code."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date

from domain import events as ev


def unread_counts(events: Iterable[ev.Event]) -> dict[str, int]:
    unread: dict[str, int] = {}
    seen_messages: set[str] = set()
    for event in events:
        if isinstance(event, ev.ConversationCreated):
            unread.setdefault(event.aggregate_id, 0)
        elif isinstance(event, ev.MessageReceived) and event.data.message_id not in seen_messages:
            seen_messages.add(event.data.message_id)
            unread[event.aggregate_id] = unread.get(event.aggregate_id, 0) + 1
        elif isinstance(event, ev.ConversationUpdated) and event.data.marked_read:
            unread[event.aggregate_id] = 0
    return unread


def message_counts(events: Iterable[ev.Event]) -> Counter[str]:
    ids: dict[str, str] = {}
    for event in events:
        if isinstance(event, ev.MessageReceived | ev.MessageSent):
            ids.setdefault(event.data.message_id, event.aggregate_id)
    return Counter(ids.values())


def usage_sums(events: Iterable[ev.Event]) -> dict[tuple[str, date, str], int]:
    sums: defaultdict[tuple[str, date, str], int] = defaultdict(int)
    for event in events:
        if isinstance(event, ev.UsageRecorded):
            sums[(event.tenant_id, event.occurred_at.date(), event.data.metric)] += event.data.quantity
        elif isinstance(event, ev.MessageReceived | ev.MessageSent):
            metric = "messages_in" if isinstance(event, ev.MessageReceived) else "messages_out"
            sums[(event.tenant_id, event.occurred_at.date(), metric)] += 1
    return dict(sums)
