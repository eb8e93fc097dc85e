"""The notifier's reads (``domain.notifications.NotifierReads``) from the read models, each
confined to one tenant by row-level security (the role and setting the gateway uses)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from adapters.postgres import tenancy
from domain import events as ev
from domain.notifications import ConversationFacts, Recipient
from domain.plans import Spend
from projections import connections_queries, inbox_queries, tenants_queries, usage_queries


class NotifierReads:
    def __init__(self, pool: AsyncConnectionPool[Any], *, auto_kinds: list[str]) -> None:
        self._pool = pool  # the confined role's (row-level security)
        self._auto_kinds = auto_kinds  # channel kinds whose agent answers by default (the registry's)

    async def caught_up(self, seq: int, read_models: tuple[str, ...], *, wait: float) -> bool:
        return await tenancy.wait_for_seq(self._pool, seq, read_models, within=wait)

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationFacts | None:
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            found = await inbox_queries.conversation_detail(
                conn, tenant_id, conversation_id, auto_kinds=self._auto_kinds
            )
        if found is None:
            return None
        return ConversationFacts(
            conversation_id=found.conversation_id, title=found.title, kind=found.kind,
            agent_mode=found.agent_mode, agent_paused_until=found.agent_paused_until, preview=found.preview,
        )  # fmt: skip

    async def connection_name(self, tenant_id: str, connection_id: str) -> str | None:
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            found = await connections_queries.connection(conn, connection_id)
        return found.display_name if found is not None else None

    async def recipients(self, tenant_id: str) -> list[Recipient]:
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            people = await tenants_queries.member_preferences(conn, tenant_id)
        return [
            Recipient(
                user_id=person.user_id,
                role=person.role,
                time_zone=person.time_zone,
                quiet_hours=(
                    ev.QuietHours(start=person.quiet_start, end=person.quiet_end)
                    if person.quiet_start is not None and person.quiet_end is not None
                    else None
                ),
            )
            for person in people
        ]

    async def plan_and_spend(self, tenant_id: str, now: datetime) -> Spend:
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            return await usage_queries.plan_and_spend(conn, tenant_id, now)
