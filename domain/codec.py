"""Events to bytes and back, with schema upcasting on read.

The fast path is one msgspec decode of the tagged union. Only when that fails, or the
stored ``v`` is older than the event class's ``VERSION``, is the message decoded
generically, classified (malformed JSON, unknown type, invalid payload, unsupported
version) and, where an upcaster chain exists, upgraded to the current shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from domain import ids
from domain.errors import InvalidEvent
from domain.events import BY_TYPE, AnyEvent, Event

# An upcaster turns the ``data`` of (type, v) into the ``data`` of (type, v + 1).
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class _EnvelopeHead(msgspec.Struct):
    type: str
    v: int


class EventCodec:
    """Encodes events to JSON and decodes them back, upcasting old versions.

    ``versions`` overrides the current version of a type and ``upcasters`` maps
    ``(type, from_version)`` to the function lifting its payload one version.
    """

    def __init__(
        self,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
        versions: Mapping[str, int] | None = None,
    ) -> None:
        self._upcasters = dict(upcasters or {})
        self._versions = {name: cls.VERSION for name, cls in BY_TYPE.items()} | dict(versions or {})
        self._decoder = msgspec.json.Decoder(AnyEvent)
        self._head = msgspec.json.Decoder(_EnvelopeHead)
        self._encoder = msgspec.json.Encoder()

    def encode(self, event: Event) -> bytes:
        return self._encoder.encode(event)

    def decode(self, raw: bytes) -> Event:
        try:
            event: Event = self._decoder.decode(raw)
        except msgspec.DecodeError:
            return self._decode_slow(raw)
        if event.v == self._versions[event.type]:
            return event
        return self._decode_slow(raw)

    def _decode_slow(self, raw: bytes) -> Event:
        try:
            head = self._head.decode(raw)
        except msgspec.ValidationError as exc:
            raise InvalidEvent("invalid", f"envelope: {exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidEvent("malformed", f"not a JSON event envelope: {exc}") from None
        current = self._versions.get(head.type)
        if current is None:
            raise InvalidEvent("unknown_type", f"no event type {head.type!r}")
        if head.v > current or head.v < 1:
            raise InvalidEvent(
                "unsupported_version", f"{head.type} v{head.v}: this build reads up to v{current}"
            )
        if head.v == current:
            try:
                decoded: Event = self._decoder.decode(raw)
                return decoded
            except msgspec.ValidationError as exc:
                raise InvalidEvent("invalid", f"{head.type}: {exc}") from None
        envelope = msgspec.json.decode(raw)
        data = envelope["data"]
        for version in range(head.v, current):
            upcast = self._upcasters.get((head.type, version))
            if upcast is None:
                raise InvalidEvent(
                    "unsupported_version", f"{head.type} v{version}: no upcaster to v{version + 1}"
                )
            data = upcast(data)
        envelope["data"] = data
        envelope["v"] = BY_TYPE[head.type].VERSION
        try:
            upcast_event: Event = msgspec.convert(envelope, AnyEvent)
        except msgspec.ValidationError as exc:
            raise InvalidEvent("invalid", f"{head.type} after upcast: {exc}") from None
        return upcast_event


def dedupe_key(event: Event) -> str:
    """The ``Nats-Msg-Id`` of an event (DESIGN §3).

    Inbound messages are identified by the provider's id, so a retried webhook is
    stored once. A send request, its confirmation and its failure are each keyed by the
    message id, so a retried send (an idempotent API call, a redelivered command) is
    recorded once; an agent run's events by the run id, and metered usage by what it
    meters (``source_id``), so a run resumed after a crash records each step once.
    Everything else by its own event id.
    """
    data = getattr(event, "data", None)
    if event.type == "message.received":
        return f"{data.channel}:{data.connection_id}:{data.provider_message_id}"  # type: ignore[union-attr]
    if event.type in _KEYED_BY_MESSAGE:
        return f"{event.type}:{event.tenant_id}:{data.message_id}"  # type: ignore[union-attr]
    if event.type in _KEYED_BY_RUN:
        return f"{event.type}:{event.tenant_id}:{data.run_id}"  # type: ignore[union-attr]
    if event.type == "message.draft_proposed":
        return f"{event.type}:{event.tenant_id}:{data.draft_id}"  # type: ignore[union-attr]
    if event.type == "connection.sender_requested":  # once per sender (their id stays out of headers)
        sender = ids.stable_id("s", data.sender_id)  # type: ignore[union-attr]
        return f"{event.type}:{event.tenant_id}:{event.aggregate_id}:{sender}"
    if event.type == "reminder.due":  # several schedulers at its time remind once
        return f"{event.type}:{event.tenant_id}:{data.follow_up_id}"  # type: ignore[union-attr]
    if event.type == "reminder.proposed":  # a trigger handled twice proposes it once
        return f"{event.type}:{event.tenant_id}:{data.follow_up_id}"  # type: ignore[union-attr]
    if event.type == "tenant.away_ended":  # the owner and the scheduler end it once
        return f"{event.type}:{event.tenant_id}:{data.away_id}"  # type: ignore[union-attr]
    if event.type == "user.digest_due":  # once a day, however many schedulers tick
        return f"{event.type}:{event.aggregate_id}:{data.date.isoformat()}"  # type: ignore[union-attr]
    if event.type == "memory.fact_proposed":  # a run resumed after a crash proposes it once
        return f"{event.type}:{event.tenant_id}:{data.fact_id}"  # type: ignore[union-attr]
    if event.type == "media.available":
        return f"media:{event.tenant_id}:{data.media_id}"  # type: ignore[union-attr]
    if event.type == "usage.recorded" and data.source_id:  # type: ignore[union-attr]
        return f"usage:{event.tenant_id}:{data.metric}:{data.source_id}"  # type: ignore[union-attr]
    return event.id


_KEYED_BY_MESSAGE = frozenset(
    {
        "message.send_requested",
        "message.send_released",
        "message.send_cancelled",
        "message.sent",
        "message.send_failed",
    }
)
_KEYED_BY_RUN = frozenset(
    {"agent.run_requested", "agent.run_started", "agent.run_completed", "agent.run_failed"}
)
