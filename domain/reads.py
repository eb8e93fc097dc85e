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


class AgentReads(Protocol):
    """The agent's reads, each confined to one tenant (row-level security)."""

    async def caught_up(self, seq: int, read_models: tuple[str, ...], *, wait: float) -> bool:
        """Whether every named read model has applied ``seq`` (waiting up to ``wait`` seconds)."""
        ...

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationView | None: ...

    async def routed_agents(self, tenant_id: str) -> RoutedAgents:
        """The tenant's agents (the default first) and its routing rules."""
        ...

    async def sender_status(self, tenant_id: str, connection_id: str, sender_id: str) -> str | None:
        """What the owner decided about a sender on a connection (pending, approved, blocked),
        or None when they never asked."""
        ...

    async def plan_and_spend(self, tenant_id: str, now: datetime) -> Spend:
        """The tenant's plan and its model spend this calendar month and today (micro-dollars)."""
        ...

    async def runs_requested_since(
        self, tenant_id: str, conversation_id: str, since: datetime, *, other_than: str
    ) -> int:
        """How many agent runs other than ``other_than`` were requested in the conversation
        at or after ``since``."""
        ...

    async def owner_time_zone(self, tenant_id: str) -> str | None:
        """The IANA time zone the inbox's owner set (None: never set; read as UTC)."""
        ...

    async def away_unanswered(self, tenant_id: str, conversation_id: str, now: datetime) -> Away | None:
        """The inbox's away period when it is on at ``now`` and its answer is not in the
        conversation yet (sent, or proposed as a draft); else None."""
        ...

    async def approved_facts(self, tenant_id: str, conversation_id: str) -> list[str]:
        """The facts the owner approved for a conversation and for every conversation."""
        ...

    async def person(self, tenant_id: str, conversation_id: str) -> Person | None:
        """Who a direct conversation is with, or None (a group, or no contact yet)."""
        ...

    async def provider_id_of_sent(self, tenant_id: str, message_id: str) -> str | None:
        """The provider's id of a message we sent, once its ``message.sent`` is in the inbox."""
        ...

    async def recent_messages(self, tenant_id: str, conversation_id: str, limit: int) -> list[PastMessage]:
        """The conversation's latest messages, oldest first (deleted ones left out)."""
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
