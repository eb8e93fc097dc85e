"""The envelope every event shares (DESIGN §5): its fields, the aggregates that name
subjects, the payload base, and :func:`new_event`. The event types themselves are in
:mod:`domain.events`, which re-exports all of this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Literal, TypeVar

import msgspec

from domain import ids, subjects

# Aggregates: the middle token of an event subject.
TENANT = "tenant"
USER = "user"
CONNECTION = "connection"
CONVERSATION = "conversation"
DEVICE = "device"
AGENT = "agent"
CONTACT = "contact"  # a person across channels (domain/contacts.py)
# One lane per conversation for the agent's runs (aggregate id = the conversation id):
# appending with an expected sequence on it keeps at most one run at a time, without
# contending with the conversation's own message traffic.
ASSISTANT = "assistant"

Role = Literal["owner", "admin", "member"]
Plan = Literal["free", "pro", "team", "byok"]
ConnectionState = Literal["connecting", "connected", "degraded", "action_required", "disconnected"]
ConversationKind = Literal["direct", "group", "thread"]
AgentMode = Literal["auto", "draft", "off"]  # answer, propose drafts, stay out
# who the agent answers in direct messages: anyone, senders the owner approved after a
# one-time code was offered to them, or only senders the owner approved
DmPolicy = Literal["open", "pairing", "allowlist"]
UsageMetric = Literal["messages_in", "messages_out", "agent_runs", "tokens_in", "tokens_out", "cost_micros"]


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every event payload: unknown fields are an error, not silently dropped."""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope shared by every event; subclasses add ``data`` and a tag."""

    AGGREGATE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    TYPE: ClassVar[str]  # the tag, e.g. "message.received"; domain.events sets it for every type

    id: str
    v: int
    tenant_id: str
    aggregate_id: str
    occurred_at: datetime
    causation_id: str | None = None
    correlation_id: str | None = None
    actor: str

    @property
    def type(self) -> str:
        return self.TYPE

    @property
    def subject(self) -> str:
        return subjects.event_subject(self.tenant_id, self.AGGREGATE, self.aggregate_id, self.type)


E = TypeVar("E", bound=Event)


def new_event(
    event_cls: type[E],
    *,
    tenant_id: str,
    aggregate_id: str,
    actor: str,
    data: msgspec.Struct,
    causation_id: str | None = None,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> E:
    """Build an event of the current schema version with a fresh sortable id."""
    subjects.token("tenant_id", tenant_id)
    subjects.token("aggregate_id", aggregate_id)
    return event_cls(
        id=event_id or ids.ulid(),
        v=event_cls.VERSION,
        tenant_id=tenant_id,
        aggregate_id=aggregate_id,
        occurred_at=occurred_at or datetime.now(UTC),
        causation_id=causation_id,
        correlation_id=correlation_id,
        actor=actor,
        data=data,  # type: ignore[call-arg]
    )
