"""Queries on the agents read model (``projections/agents.py``): a tenant's agents and their
runs. Each takes a connection already in a tenant's transaction and answers with Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from adapters.postgres.database import Connection
from domain import events as ev
from domain.reads import AgentView
from projections.agents import configuration


class Agent(msgspec.Struct, frozen=True):
    agent_id: str
    name: str
    model: str
    system_prompt: str
    tools: list[str]
    rules: dict[str, Any]
    enabled: bool
    template: str | None
    updated_at: datetime


async def agents(conn: Connection) -> list[Agent]:
    """The tenant's agents, oldest first."""
    cur = await conn.execute("SELECT * FROM rm_agents.agents ORDER BY created_at, agent_id")
    return [msgspec.convert(r, Agent, strict=False) for r in await cur.fetchall()]


async def agent_configuration(conn: Connection, agent_id: str) -> ev.AgentConfiguredData | None:
    cur = await conn.execute("SELECT * FROM rm_agents.agents WHERE agent_id = %s", (agent_id,))
    row = await cur.fetchone()
    return None if row is None else configuration(row)


async def all_agents(conn: Connection) -> list[AgentView]:
    """The tenant's agents, oldest (the default) first."""
    cur = await conn.execute("SELECT * FROM rm_agents.agents ORDER BY created_at, agent_id")
    return [AgentView(row["agent_id"], configuration(row)) for row in await cur.fetchall()]


async def routing(conn: Connection) -> tuple[ev.RoutingRule, ...]:
    """The tenant's routing rules, in order (none set: empty)."""
    cur = await conn.execute("SELECT rules FROM rm_agents.routing")
    row = await cur.fetchone()
    return () if row is None else msgspec.convert(row["rules"], tuple[ev.RoutingRule, ...])


async def runs_requested_since(
    conn: Connection, conversation_id: str, since: datetime, *, other_than: str
) -> int:
    """How many agent runs other than ``other_than`` were requested in the conversation
    at or after ``since``."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM rm_agents.agent_runs"
        " WHERE conversation_id = %s AND requested_at >= %s AND run_id <> %s",
        (conversation_id, since, other_than),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
