"""Appending what a provider delivered: the conversation first when it is new (expected
sequence 0; an existing one is left alone), then the events, whose dedupe keys store a
redelivery once."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from adapters.channels.media import Download, fetch_media
from adapters.media.store import MediaStore
from adapters.nats.errors import ConcurrencyConflict
from domain import events as ev
from domain.ports import Appended, EventStore


async def append_delivered(
    store: EventStore,
    created: ev.ConversationCreated | None,
    events: Sequence[ev.Event],
    known_conversations: set[str] | None = None,
) -> list[Appended]:
    """Append ``created`` unless ``known_conversations`` has it (remembering it), then ``events``."""
    if created is not None and (
        known_conversations is None or created.aggregate_id not in known_conversations
    ):
        with contextlib.suppress(ConcurrencyConflict):  # the conversation is known already
            await store.append(created, expected_seq=0)
        if known_conversations is not None:
            known_conversations.add(created.aggregate_id)
    return [await store.append(event) for event in events]


async def store_delivered(
    store: EventStore,
    created: ev.ConversationCreated | None,
    events: Sequence[ev.Event],
    known_conversations: set[str],
    *,
    media: MediaStore | None,
    download: Download,
    actor: str,
    log: Any,
    stored_as: str,
    **context: Any,
) -> None:
    """What a session does with what it received: append it (:func:`append_delivered`), log
    each event as ``stored_as`` with ``context``, and bring each received message's
    attachments into ``media`` (None: they stay at the provider)."""
    stored = await append_delivered(store, created, events, known_conversations)
    for appended, event in zip(stored, events, strict=True):
        log.info(stored_as, **context, event_type=event.type, seq=appended.seq, duplicate=appended.duplicate)
        if media is not None and isinstance(event, ev.MessageReceived) and event.data.attachments:
            await fetch_media(store, media, event, download, actor=actor)
