"""The notifier's reads (``domain.notifications.NotifierReads``) from the read models, each
confined to one tenant by row-level security (the role and setting the gateway uses)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from adapters.postgres import tenancy
from adapters.postgres.applied import AppliedSignal
from domain import away as away_rules
from domain import events as ev
from domain import zones
from domain.notifications import ConversationFacts, Recipient
from domain.plans import Spend
from projections import connections_queries, digest_queries, inbox_queries, tenants_queries, usage_queries
from projections.digest_queries import Digest
from projections.inbox_queries import WhileAway
from projections.tenants_queries import Preferences


class NotifierReads:
    def __init__(
        self, pool: AsyncConnectionPool[Any], *, auto_kinds: list[str], applied: AppliedSignal | None = None
    ) -> None:
        self._pool = pool  # the confined role's (row-level security)
        self._applied = applied  # read models' commits (None: polling)
        self._auto_kinds = auto_kinds  # channel kinds whose agent answers by default (the registry's)

    async def caught_up(self, seq: int, read_models: tuple[str, ...], *, wait: float) -> bool:
        return await tenancy.wait_for_seq(self._pool, seq, read_models, within=wait, applied=self._applied)

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

    async def away_on(self, tenant_id: str, now: datetime) -> bool:
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            return away_rules.is_on(await tenants_queries.away(conn, tenant_id), now)

    async def while_away(self, tenant_id: str, away_id: str) -> WhileAway | None:
        """What came in during the away period (None: the read model does not have it)."""
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            found = await tenants_queries.away(conn, tenant_id)
            if found is None or found.away_id != away_id:
                return None
            back = found.ended_at or found.until
            return await inbox_queries.while_away(conn, tenant_id, found.started_at, back)

    async def digest(self, tenant_id: str, user_id: str, day: date) -> tuple[Digest, Preferences, str | None]:
        """A person's digest of ``day`` on their clock, their preferences and their address."""
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            chosen = await tenants_queries.preferences(conn, user_id)
            found = await digest_queries.digest(conn, tenant_id, zones.zone(chosen.time_zone), day)
            account = await tenants_queries.account(conn, tenant_id, user_id)
        return found, chosen, account.email if account is not None else None
