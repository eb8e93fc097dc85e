"""Appending what a provider delivered: the conversation first when it is new (expected
sequence 0; an existing one is left alone), then the events, whose dedupe keys store a
redelivery once; and a live session's :class:`Intake` of its deliveries."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass
class Intake:
    """Where a live session puts what its provider delivers: appended (:func:`append_delivered`,
    each conversation created once per session), each event logged as ``stored_as``, and
    each received message's attachments brought into ``media`` (None: they stay at the
    provider, ``download`` fetches them)."""

    store: EventStore
    media: MediaStore | None
    download: Download
    actor: str
    log: Any
    stored_as: str
    known_conversations: set[str] = field(default_factory=set)

    async def take(
        self, created: ev.ConversationCreated | None, events: Sequence[ev.Event], **context: Any
    ) -> None:
        """Store one delivery's events, logged with ``context``; a delivery without events
        (our own bot's message, a service message) creates no conversation either."""
        if not events:
            return
        stored = await append_delivered(self.store, created, events, self.known_conversations)
        for appended, event in zip(stored, events, strict=True):
            self.log.info(
                self.stored_as,
                **context,
                event_type=event.type,
                seq=appended.seq,
                duplicate=appended.duplicate,
            )
            if self.media is not None and isinstance(event, ev.MessageReceived) and event.data.attachments:
                await fetch_media(self.store, self.media, event, self.download, actor=self.actor)
