"""The agent's reads (``domain.reads.AgentReads``) from the read models, each confined to
one tenant by row-level security (the same role and setting the gateway uses)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from adapters.agent import byok
from adapters.postgres import tenancy
from adapters.postgres.applied import AppliedSignal
from adapters.postgres.database import Connection
from adapters.vault.cipher import Keyring
from domain import away as away_rules
from domain.away import Away
from domain.reads import ConversationView, FoundMessage, RoutedAgents, RunContext, TriggerContext
from projections import (
    agents_queries,
    connections_queries,
    contacts_queries,
    inbox_queries,
    tenants_queries,
    usage_queries,
)
from projections.registry import all_projections

# What each read model folds: one that ignores an event's type is not held up by it.
_FOLDS = {projection.name: projection.handles for projection in all_projections()}


class AgentReads:
    def __init__(self, database_url: str, *, max_size: int = 8) -> None:
        self.pool: AsyncConnectionPool[Any] = tenancy.pool(database_url, max_size=max_size)
        self.applied = AppliedSignal(database_url)  # wakes a trigger waiting for the read models

    async def open(self) -> None:
        await self.pool.open()
        await self.applied.start()

    async def close(self) -> None:
        await self.applied.close()
        await self.pool.close()

    async def caught_up(
        self, seq: int, read_models: tuple[str, ...], *, wait: float, event_type: str | None = None
    ) -> bool:
        """Whether every named read model has applied ``seq`` (waiting up to ``wait`` seconds);
        one that does not fold ``event_type`` (the event at ``seq``) needs only the event before."""
        unchanged = [name for name in read_models if event_type not in _FOLDS[name]] if event_type else []
        return await tenancy.wait_for_seq(
            self.pool, seq, read_models, within=wait, applied=self.applied, unchanged=unchanged
        )

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationView | None:
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            return await inbox_queries.conversation(conn, tenant_id, conversation_id)

    async def trigger_context(
        self, tenant_id: str, conversation_id: str, *, now: datetime, runs_since: datetime, other_than: str
    ) -> TriggerContext | None:
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            conversation = await inbox_queries.conversation(conn, tenant_id, conversation_id)
            if conversation is None:
                return None
            routed = RoutedAgents(await agents_queries.all_agents(conn), await agents_queries.routing(conn))
            spend = await usage_queries.plan_and_spend(conn, tenant_id, now)
            runs = await agents_queries.runs_requested_since(
                conn, conversation_id, runs_since, other_than=other_than
            )
            zone = await tenants_queries.owner_time_zone(conn, tenant_id)
            away = await _away_unanswered(conn, tenant_id, conversation_id, now)
        return TriggerContext(conversation, routed, spend, runs, zone, away)

    async def sender_status(self, tenant_id: str, connection_id: str, sender_id: str) -> str | None:
        """What the owner decided about a sender on a connection, or None when they never asked."""
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            found = await connections_queries.sender(conn, connection_id, sender_id)
        return found.status if found is not None else None

    async def run_context(self, tenant_id: str, conversation_id: str, messages: int) -> RunContext:
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            history = await inbox_queries.recent_messages(conn, conversation_id, messages)
            facts = await agents_queries.approved_facts(conn, conversation_id)
            person = await contacts_queries.person_of(conn, conversation_id)
        return RunContext(history, facts, person)

    async def provider_id_of_sent(self, tenant_id: str, message_id: str) -> str | None:
        """The provider's id of a message we sent, once its ``message.sent`` is in the inbox."""
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            return await inbox_queries.provider_id_of_sent(conn, message_id)

    async def own_anthropic_key(self, tenant_id: str, keyring: Keyring) -> str | None:
        """The tenant's own Anthropic key (BYOK), opened from the vault, or None."""
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            return await byok.read_key(conn, keyring, tenant_id)

    async def search(
        self, tenant_id: str, query: str, *, conversation_id: str | None, limit: int = 5
    ) -> list[FoundMessage]:
        """The best matches for ``query`` in one conversation, or in the whole inbox when
        ``conversation_id`` is None (the caller decides which; see ``domain.agent.search_scope``)."""
        async with tenancy.tenant_transaction(self.pool, tenant_id) as conn:
            return await inbox_queries.find_messages(
                conn, query, conversation_id=conversation_id, limit=limit
            )


async def _away_unanswered(
    conn: Connection, tenant_id: str, conversation_id: str, now: datetime
) -> Away | None:
    """The inbox's away period when it is on and its answer is not in the conversation yet."""
    found = await tenants_queries.away(conn, tenant_id)
    if found is None or not away_rules.is_on(found, now):
        return None
    answer = away_rules.answer_id(found.away_id, conversation_id)
    draft = away_rules.draft_id(found.away_id, conversation_id)
    return None if await inbox_queries.has_message_or_draft(conn, answer, draft) else found
