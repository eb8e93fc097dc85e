"""What the agent and the connectors read from the read models, as ports: the projections
implement them (``projections/agent_reads.py``, ``projections/connection_reads.py``) and the
composition root passes them in, so no adapter knows a read-model table."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import msgspec

from domain import events as ev
from domain.away import Away
from domain.plans import Spend


class ConversationView(msgspec.Struct, frozen=True):
    """What answering or writing into a conversation needs to know of it."""

    conversation_id: str
    channel: str
    connection_id: str
    kind: str
    external_id: str
    agent_enabled: bool
    agent_mode: str | None = None  # its own mode (None: its connection's)
    connection_agent_mode: str | None = None  # its connection's (None: the channel kind's default)
    takeover_minutes: int | None = None  # its connection's (None: the default)
    dm_policy: str | None = None  # its connection's: open, pairing, allowlist (None: open)
    agent_paused_until: datetime | None = None
    preview: bool = False  # the owner's own "Try it" chat


class AgentView(msgspec.Struct, frozen=True):
    agent_id: str
    config: ev.AgentConfiguredData


class RoutedAgents(msgspec.Struct, frozen=True):
    """A tenant's agents, the default (the first created) first, and its routing."""

    agents: list[AgentView]
    rules: tuple[ev.RoutingRule, ...] = ()


class PastMessage(msgspec.Struct, frozen=True):
    message_id: str
    direction: str  # in, out
    sender_name: str
    text: str
    sent_at: datetime


class FoundMessage(msgspec.Struct, frozen=True):
    """A message the agent's history search found, with its conversation's title."""

    sender_name: str
    text: str
    sent_at: datetime
    title: str


class Elsewhere(msgspec.Struct, frozen=True):
    """One of the same person's other conversations, as the agent hears of it."""

    conversation_id: str
    channel: str
    last_message_at: datetime | None
    last_message_preview: str | None


class Person(msgspec.Struct, frozen=True):
    """Who a direct conversation is with (their contact): the owner's notes, and their other
    conversations, the most recent first."""

    contact_id: str
    display_name: str
    notes: str
    elsewhere: list[Elsewhere] = []


class TriggerContext(msgspec.Struct, frozen=True):
    """What deciding on a trigger needs, read together (one transaction)."""

    conversation: ConversationView
    routed: RoutedAgents
    spend: Spend  # the plan and its model spend this month and today
    recent_runs: int  # runs requested in the conversation since the window's start, but this one
    owner_time_zone: str | None  # None: never set (UTC)
    away: Away | None  # the away period when it is on and its answer is not in the conversation yet


class RunContext(msgspec.Struct, frozen=True):
    """What a run tells the model besides its prompt, read together (one transaction)."""

    history: list[PastMessage]  # the latest messages, oldest first
    facts: list[str]  # approved for this conversation and for every one
    person: Person | None  # who a direct conversation is with


class AgentReads(Protocol):
    """The agent's reads, each confined to one tenant (row-level security)."""

    async def caught_up(
        self, seq: int, read_models: tuple[str, ...], *, wait: float, event_type: str | None = None
    ) -> bool:
        """Whether every named read model has applied ``seq`` (waiting up to ``wait`` seconds);
        one that does not fold ``event_type`` (the event at ``seq``) needs only the event before."""
        ...

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationView | None: ...

    async def trigger_context(
        self, tenant_id: str, conversation_id: str, *, now: datetime, runs_since: datetime, other_than: str
    ) -> TriggerContext | None:
        """What deciding on a trigger in the conversation needs (None: no such conversation):
        runs counted from ``runs_since`` but ``other_than``, the away period as at ``now``."""
        ...

    async def sender_status(self, tenant_id: str, connection_id: str, sender_id: str) -> str | None:
        """What the owner decided about a sender on a connection (pending, approved, blocked),
        or None when they never asked."""
        ...

    async def run_context(self, tenant_id: str, conversation_id: str, messages: int) -> RunContext:
        """The conversation's latest ``messages`` (deleted ones left out), the approved facts,
        and the person it is with."""
        ...

    async def provider_id_of_sent(self, tenant_id: str, message_id: str) -> str | None:
        """The provider's id of a message we sent, once its ``message.sent`` is in the inbox."""
        ...

    async def search(
        self, tenant_id: str, query: str, *, conversation_id: str | None, limit: int = 5
    ) -> list[FoundMessage]:
        """The best matches for ``query`` in one conversation, or in the whole inbox when
        ``conversation_id`` is None (the caller decides which; see ``domain.agent.search_scope``)."""
        ...


class ConnectionReads(Protocol):
    """What connectors look up about connections, across every tenant."""

    async def live(self, channel: str) -> set[str]:
        """Connections of ``channel`` that should have a session: not deleted, not waiting
        for a person to act (a revoked token stays down until it is connected again)."""
        ...

    async def owner(self, connection_id: str) -> str | None:
        """The tenant a connection belongs to, or None when there is no such connection."""
        ...
