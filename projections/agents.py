"""Read model: each tenant's agents (configuration) and their runs (status, model, tokens,
cost, the tools they used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from domain import events as ev
from projections.statements import Handler, Statement, StatementProjection, event_fields, statement

SCHEMA = """
CREATE TABLE agents (
    agent_id      text PRIMARY KEY,
    tenant_id     text NOT NULL,
    name          text NOT NULL,
    model         text NOT NULL,
    system_prompt text NOT NULL,
    tools         text[] NOT NULL,
    rules         jsonb NOT NULL,
    enabled       boolean NOT NULL,
    template      text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       integer NOT NULL
);
CREATE TABLE agent_runs (
    run_id           text PRIMARY KEY,
    tenant_id        text NOT NULL,
    conversation_id  text NOT NULL,
    agent_id         text NOT NULL,
    trigger_message_id text NOT NULL,
    status           text NOT NULL,  -- requested, started, completed, failed
    model            text,
    tokens_in        integer,
    tokens_out       integer,
    cost_micros      bigint,
    reply_message_id text,
    tool_calls       jsonb,
    offline          boolean,
    error_code       text,
    error            text,
    requested_at     timestamptz NOT NULL,
    finished_at      timestamptz,
    routed_by        integer  -- the routing rule that chose the agent (NULL: the default agent)
);
-- What the agent remembers: facts it proposed (waiting for the owner) or the owner approved.
CREATE TABLE facts (
    fact_id         text PRIMARY KEY,
    tenant_id       text NOT NULL,
    conversation_id text,           -- NULL: about every conversation
    text            text NOT NULL,
    status          text NOT NULL,  -- proposed, approved, forgotten
    run_id          text,           -- the run that proposed it (NULL: the owner wrote it)
    created_at      timestamptz NOT NULL,
    decided_at      timestamptz
);
CREATE TABLE routing (
    tenant_id  text PRIMARY KEY,
    rules      jsonb NOT NULL,  -- ordered: the first a message matches picks the agent
    updated_at timestamptz NOT NULL
);
"""

INDEXES = """
CREATE INDEX agents_tenant ON agents (tenant_id);
CREATE INDEX agent_runs_conversation ON agent_runs (conversation_id, requested_at);
CREATE INDEX agent_runs_tenant ON agent_runs (tenant_id, requested_at);
CREATE INDEX facts_tenant ON facts (tenant_id, status, created_at);
CREATE INDEX facts_conversation ON facts (conversation_id) WHERE status = 'approved';
"""


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _configured(seq: int, e: ev.AgentConfigured) -> list[Statement]:
    return [
        (
            "INSERT INTO agents VALUES (%(aggregate_id)s, %(tenant_id)s, %(name)s, %(model)s,"
            " %(system_prompt)s, %(tools)s, %(rules)s, %(enabled)s, %(template)s, %(occurred_at)s,"
            " %(occurred_at)s, 1)"
            " ON CONFLICT (agent_id) DO UPDATE SET name = EXCLUDED.name, model = EXCLUDED.model,"
            " system_prompt = EXCLUDED.system_prompt, tools = EXCLUDED.tools, rules = EXCLUDED.rules,"
            " enabled = EXCLUDED.enabled, template = EXCLUDED.template, updated_at = EXCLUDED.updated_at,"
            " version = agents.version + 1",
            event_fields(e) | {"tools": list(e.data.tools), "rules": _json(e.data.rules)},
        )
    ]


def _completed(seq: int, e: ev.AgentRunCompleted) -> list[Statement]:
    return [
        (
            "UPDATE agent_runs SET status = 'completed', model = %(model)s, tokens_in = %(tokens_in)s,"
            " tokens_out = %(tokens_out)s, cost_micros = %(cost_micros)s,"
            " reply_message_id = %(reply_message_id)s, tool_calls = %(tool_calls)s,"
            " offline = %(offline)s, finished_at = %(occurred_at)s WHERE run_id = %(run_id)s",
            event_fields(e) | {"tool_calls": _json(e.data.tool_calls)},
        )
    ]


def _routing(seq: int, e: ev.AgentRoutingSet) -> list[Statement]:
    return [
        (
            "INSERT INTO routing VALUES (%(tenant_id)s, %(rules)s, %(occurred_at)s)"
            " ON CONFLICT (tenant_id) DO UPDATE SET rules = EXCLUDED.rules, updated_at = EXCLUDED.updated_at",
            {"tenant_id": e.tenant_id, "rules": _json(e.data.rules), "occurred_at": e.occurred_at},
        )
    ]


def configuration(row: Mapping[str, Any]) -> ev.AgentConfiguredData:
    """An ``agents`` row back as the configuration it was folded from."""
    return ev.AgentConfiguredData(
        name=row["name"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        tools=tuple(row["tools"]),
        rules=msgspec.convert(row["rules"], ev.AgentRoutingRules),
        enabled=row["enabled"],
        template=row["template"],
    )


HANDLERS: dict[str, Handler] = {
    "agent.configured": _configured,
    # aggregate_id: the conversation
    "agent.routing_set": _routing,
    "agent.run_requested": statement(
        "INSERT INTO agent_runs (run_id, tenant_id, conversation_id, agent_id, trigger_message_id,"
        " status, requested_at, routed_by) VALUES (%(run_id)s, %(tenant_id)s, %(aggregate_id)s,"
        " %(agent_id)s, %(trigger_message_id)s, 'requested', %(occurred_at)s, %(routed_by)s)"
        " ON CONFLICT DO NOTHING"
    ),
    "agent.run_started": statement(
        "UPDATE agent_runs SET status = 'started', model = %(model)s"
        " WHERE run_id = %(run_id)s AND status = 'requested'"
    ),
    "agent.run_completed": _completed,
    "memory.fact_proposed": statement(
        "INSERT INTO facts (fact_id, tenant_id, conversation_id, text, status, run_id, created_at)"
        " VALUES (%(fact_id)s, %(tenant_id)s, %(conversation_id)s, %(text)s, 'proposed', %(run_id)s,"
        " %(occurred_at)s) ON CONFLICT (fact_id) DO NOTHING"
    ),
    "memory.fact_approved": statement(
        "INSERT INTO facts (fact_id, tenant_id, conversation_id, text, status, created_at, decided_at)"
        " VALUES (%(fact_id)s, %(tenant_id)s, %(conversation_id)s, %(text)s, 'approved', %(occurred_at)s,"
        " %(occurred_at)s) ON CONFLICT (fact_id) DO UPDATE SET status = 'approved', text = EXCLUDED.text,"
        " conversation_id = EXCLUDED.conversation_id, decided_at = EXCLUDED.decided_at"
    ),
    "memory.fact_forgotten": statement(
        "UPDATE facts SET status = 'forgotten', decided_at = %(occurred_at)s WHERE fact_id = %(fact_id)s"
    ),
    "agent.run_failed": statement(
        "UPDATE agent_runs SET status = 'failed', error_code = %(code)s, error = %(reason)s,"
        " finished_at = %(occurred_at)s WHERE run_id = %(run_id)s"
    ),
}


class AgentsProjection(StatementProjection):
    name = "agents"
    # 2: the routing table, and which rule chose a run's agent; 3: the facts it remembers
    version = 3
    tables: tuple[str, ...] = ("agents", "agent_runs", "routing", "facts")
    schema = SCHEMA
    indexes = INDEXES
    handlers = HANDLERS
