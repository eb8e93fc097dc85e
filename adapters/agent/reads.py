"""What the agent reads from the read models, each query confined to one tenant by
row-level security (the same role and setting the gateway uses)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from adapters.agent import byok, spend
from adapters.vault.cipher import Keyring
from domain import events as ev
from projections.agents import configuration


class ConversationView(msgspec.Struct, frozen=True):
    conversation_id: str
    channel: str
    connection_id: str
    kind: str
    external_id: str
    agent_enabled: bool


class AgentView(msgspec.Struct, frozen=True):
    agent_id: str
    config: ev.AgentConfiguredData


class PastMessage(msgspec.Struct, frozen=True):
    message_id: str
    direction: str  # in, out
    sender_name: str
    text: str
    sent_at: datetime


class AgentReads:
    def __init__(self, database_url: str, *, max_size: int = 8) -> None:
        async def as_confined_role(conn: AsyncConnection[Any]) -> None:
            await conn.execute("SET ROLE moltbot_gateway")

        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            open=False,
            configure=as_confined_role,
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
        )

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def _tenant(self, tenant_id: str) -> AsyncIterator[AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT set_config('moltbot.tenant_id', %s, true)", (tenant_id,))
            yield conn

    async def caught_up(self, seq: int, read_models: tuple[str, ...], *, wait: float) -> bool:
        """Whether every named read model has applied ``seq`` (waiting up to ``wait`` seconds)."""
        deadline = asyncio.get_running_loop().time() + wait
        async with self.pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM moltbot.projection_checkpoints"
                    " WHERE slot = 'live' AND projection = ANY(%s) AND last_seq >= %s",
                    (list(read_models), seq),
                )
                row = await cur.fetchone()
                if row is not None and row["n"] == len(read_models):
                    return True
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.02)

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationView | None:
        async with self._tenant(tenant_id) as conn:
            cur = await conn.execute(
                "SELECT conversation_id, channel, connection_id, kind, external_id, agent_enabled"
                " FROM rm_inbox.conversations WHERE conversation_id = %s",
                (conversation_id,),
            )
            row = await cur.fetchone()
        return None if row is None else msgspec.convert(row, ConversationView)

    async def agent(self, tenant_id: str) -> AgentView | None:
        """The tenant's agent: the first one created (every tenant gets one at sign-up)."""
        async with self._tenant(tenant_id) as conn:
            cur = await conn.execute("SELECT * FROM rm_agents.agents ORDER BY created_at, agent_id LIMIT 1")
            row = await cur.fetchone()
        if row is None:
            return None
        return AgentView(row["agent_id"], configuration(row))

    async def plan_and_spend(self, tenant_id: str, now: datetime) -> tuple[str, int]:
        """The tenant's plan and its model spend this calendar month (micro-dollars)."""
        async with self._tenant(tenant_id) as conn:
            return await spend.plan_and_spend(conn, tenant_id, now)

    async def runs_requested_since(
        self, tenant_id: str, conversation_id: str, since: datetime, *, other_than: str
    ) -> int:
        """How many agent runs other than ``other_than`` were requested in the conversation
        at or after ``since``."""
        async with self._tenant(tenant_id) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM rm_agents.agent_runs"
                " WHERE conversation_id = %s AND requested_at >= %s AND run_id <> %s",
                (conversation_id, since, other_than),
            )
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def recent_messages(self, tenant_id: str, conversation_id: str, limit: int) -> list[PastMessage]:
        """The conversation's latest messages, oldest first (deleted ones left out)."""
        async with self._tenant(tenant_id) as conn:
            cur = await conn.execute(
                "SELECT message_id, direction, sender_name, text, sent_at FROM rm_inbox.messages"
                " WHERE conversation_id = %s AND deleted_at IS NULL AND status <> 'failed'"
                " ORDER BY seq DESC LIMIT %s",
                (conversation_id, limit),
            )
            rows = await cur.fetchall()
        return [msgspec.convert(r, PastMessage) for r in reversed(rows)]

    async def own_anthropic_key(self, tenant_id: str, keyring: Keyring) -> str | None:
        """The tenant's own Anthropic key (BYOK), opened from the vault, or None."""
        async with self._tenant(tenant_id) as conn:
            return await byok.read_key(conn, keyring, tenant_id)

    async def search(
        self, tenant_id: str, query: str, *, conversation_id: str | None, limit: int = 5
    ) -> list[dict[str, Any]]:
        """The best matches for ``query`` in one conversation, or in the whole inbox when
        ``conversation_id`` is None (the caller decides which; see ``domain.agent.search_scope``)."""
        async with self._tenant(tenant_id) as conn:
            cur = await conn.execute(
                "SELECT m.sender_name, m.text, m.sent_at, c.title FROM rm_inbox.messages m"
                " JOIN rm_inbox.conversations c USING (conversation_id),"
                " websearch_to_tsquery('simple', %(query)s) q WHERE m.search @@ q AND m.deleted_at IS NULL"
                " AND (%(conversation)s::text IS NULL OR m.conversation_id = %(conversation)s)"
                " ORDER BY ts_rank(m.search, q) DESC, m.seq DESC LIMIT %(limit)s",
                {"query": query, "conversation": conversation_id, "limit": limit},
            )
            rows: list[dict[str, Any]] = await cur.fetchall()
        return rows
