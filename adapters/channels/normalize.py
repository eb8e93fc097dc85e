"""What every kind's ``normalize`` shares (pure): the actor of a connection's events,
what a file is by its mime type, and :class:`Origin`, which makes the canonical events of
one connection's deliveries (event ids derived from what happened, so a delivery repeated
by the provider is stored once)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from domain import events as ev
from domain import ids

FileKind = Literal["image", "video", "audio", "document"]
_FILE_KINDS: dict[str, FileKind] = {"image": "image", "video": "video", "audio": "audio"}


def connection_actor(kind: str, connection_id: str) -> str:
    """Who a connection's events are by: its connector."""
    return f"connector:{kind}:{connection_id}"


def file_kind(mime: str | None) -> FileKind:
    """An attachment's kind by its mime type's major part: any other file is a document."""
    return _FILE_KINDS.get((mime or "").split("/", 1)[0], "document")


@dataclass(frozen=True)
class Origin:
    """Where a delivery comes from: the channel kind, whose inbox, which connection; ``now``
    dates its events (None: when they are made); ``actor`` records them (None: the
    connection's connector; a Personal Bridge device records its own as ``device:<id>``)."""

    kind: str
    tenant_id: str
    connection_id: str
    now: datetime | None
    actor: str | None = field(default=None, kw_only=True)

    def event(
        self, event_cls: type[ev.E], conversation_id: str, data: msgspec.Struct, event_id: str | None = None
    ) -> ev.E:
        """An event of one of the connection's conversations."""
        return ev.new_event(
            event_cls,
            tenant_id=self.tenant_id,
            aggregate_id=conversation_id,
            actor=self.actor or connection_actor(self.kind, self.connection_id),
            occurred_at=self.now,
            event_id=event_id,
            data=data,
        )

    def conversation_created(
        self,
        conversation_id: str,
        kind: ev.ConversationKind,
        title: str,
        external_id: str,
        *,
        preview: bool = False,
    ) -> ev.ConversationCreated:
        """The ``conversation.created`` of one of the connection's conversations."""
        data = ev.ConversationCreatedData(
            channel=self.kind,
            connection_id=self.connection_id,
            kind=kind,
            title=title,
            external_id=external_id,
            preview=preview,
        )
        return self.event(ev.ConversationCreated, conversation_id, data)

    def derived_event_id(self, provider_message_id: str, what: str, at: datetime) -> str:
        """The id of the event saying ``what`` happened to a provider's message, dated ``at``
        and derived from both: the same delivery again has the same id (stored once)."""
        key = f"{self.kind}:{self.connection_id}:{provider_message_id}:{what}"
        digest = hashlib.blake2b(key.encode(), digest_size=10).digest()
        return ids.ulid(at_ms=int(at.timestamp() * 1000), randomness=digest)
