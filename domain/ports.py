"""What the services need from the outside, as Protocols (ports); ``adapters/`` implement them
and the composition root (``moltbot/roles.py``) passes them in.

``EventStore`` is the event log as the services use it: append (one, many, or by the decide
loop), the last message on a subject, the last sequence, and replay. Its records are plain
msgspec Structs, so the domain and the services stay free of NATS types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import msgspec

from domain.codec import EventCodec
from domain.events import Event


class Appended(msgspec.Struct, frozen=True):
    event_id: str
    seq: int
    duplicate: bool = False


class StoredRecord(msgspec.Struct, frozen=True):
    """One message of the log as stored: its sequence, subject, bytes and headers."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


class StoredEvent(msgspec.Struct, frozen=True):
    seq: int
    event: Event


Decide = Callable[[Sequence[Event]], Sequence[Event]]


class EventStore(Protocol):
    """The event log (adapters/nats/event_store.py is the JetStream one)."""

    @property
    def codec(self) -> EventCodec: ...

    async def append(self, event: Event, *, expected_seq: int | None = None) -> Appended:
        """Append one event; ``expected_seq`` is the aggregate's last sequence (0 = new)."""
        ...

    async def append_many(self, events: Sequence[Event]) -> list[Appended]:
        """Append events in the order given."""
        ...

    async def append_batch(
        self, events: Sequence[Event], *, expected_seq: int | None = None
    ) -> list[Appended]:
        """Append events all together or not at all (one atomic batch); ``expected_seq`` is
        the last sequence of the first event's aggregate."""
        ...

    async def update(
        self, tenant_id: str, aggregate: str, aggregate_id: str, decide: Decide, *, attempts: int = 5
    ) -> list[Appended]:
        """Load an aggregate, decide, append the decision whole with the expected sequence;
        retry on conflict."""
        ...

    async def last_on(self, subject: str) -> StoredRecord | None:
        """The last message stored on ``subject`` (wildcards allowed), or None."""
        ...

    async def get(self, seq: int) -> Event | None:
        """The event stored at ``seq``, or None."""
        ...

    async def last_seq(self) -> int:
        """The sequence of the log's last message (0 when empty)."""
        ...

    async def open(self, raw: bytes) -> bytes:
        """Stored bytes with their sealed personal fields opened (docs/privacy.md)."""
        ...

    async def open_many(self, raws: Sequence[bytes]) -> list[bytes]:
        """Many stored messages opened at once (keys loaded once)."""
        ...

    async def decode(self, raw: bytes) -> Event:
        """Stored bytes as an event, its personal fields opened."""
        ...

    async def seal_text(self, tenant_id: str, text: str) -> str:
        """One personal value sealed, for what is published beside the log (live signals)."""
        ...

    def read(
        self,
        *,
        since: int = ...,
        subject: str = ...,
        until_seq: int | None = ...,
        follow: bool = ...,
        batch: int = ...,
        idle_timeout: float = ...,
    ) -> AsyncIterator[StoredRecord]:
        """Stored messages matching ``subject`` (every event unless given), in order from
        sequence ``since`` (the first unless given), to ``until_seq`` or, without ``follow``,
        to the end of what is stored when reading began. The adapter sets the defaults."""
        ...

    def read_batches(
        self,
        *,
        since: int = ...,
        subject: str = ...,
        until_seq: int | None = ...,
        follow: bool = ...,
        batch: int = ...,
        idle_timeout: float = ...,
    ) -> AsyncIterator[list[StoredRecord]]:
        """:meth:`read` in the batches the log delivered them; following, an empty batch after
        each ``idle_timeout`` without one (a reader can tell quiet from a stall)."""
        ...
