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


class Fact(msgspec.Struct, frozen=True):
    """Something the agent remembers: proposed by a run, approved (or written) by the owner."""

    fact_id: str
    text: str
    status: str  # proposed, approved, forgotten
    conversation_id: str | None
    run_id: str | None
    created_at: datetime
    decided_at: datetime | None


async def facts(
    conn: Connection, *, status: str | None, conversation_id: str | None, limit: int
) -> list[Fact]:
    """The tenant's facts (with ``status``, about ``conversation_id``, when given), newest first."""
    cur = await conn.execute(
        "SELECT fact_id, text, status, conversation_id, run_id, created_at, decided_at FROM rm_agents.facts"
        " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(conversation)s::text IS NULL OR conversation_id = %(conversation)s)"
        " ORDER BY created_at DESC, fact_id DESC LIMIT %(limit)s",
        {"status": status, "conversation": conversation_id, "limit": limit},
    )
    return [msgspec.convert(r, Fact, strict=False) for r in await cur.fetchall()]


async def fact(conn: Connection, fact_id: str) -> Fact | None:
    cur = await conn.execute(
        "SELECT fact_id, text, status, conversation_id, run_id, created_at, decided_at FROM rm_agents.facts"
        " WHERE fact_id = %s",
        (fact_id,),
    )
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Fact, strict=False)


MAX_FACTS_IN_CONTEXT = 20


async def approved_facts(conn: Connection, conversation_id: str) -> list[str]:
    """What the agent may use in a conversation: the facts approved about it and about every
    conversation, the latest first (at most :data:`MAX_FACTS_IN_CONTEXT`)."""
    cur = await conn.execute(
        "SELECT text FROM rm_agents.facts WHERE status = 'approved'"
        " AND (conversation_id = %s OR conversation_id IS NULL)"
        " ORDER BY decided_at DESC, fact_id LIMIT %s",
        (conversation_id, MAX_FACTS_IN_CONTEXT),
    )
    return [str(row["text"]) for row in await cur.fetchall()]
