"""Read model: each tenant's agents (configuration) and their runs (status, model, tokens,
cost, the tools they used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from domain import events as ev
from projections.base import Batch
from projections.statements import Handler, Statement, StatementBatch

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
    finished_at      timestamptz
);
"""

INDEXES = """
CREATE INDEX agents_tenant ON agents (tenant_id);
CREATE INDEX agent_runs_conversation ON agent_runs (conversation_id, requested_at);
CREATE INDEX agent_runs_tenant ON agent_runs (tenant_id, requested_at);
"""


def _configured(seq: int, e: ev.AgentConfigured) -> list[Statement]:
    d = e.data
    row = {
        "id": e.aggregate_id,
        "tenant": e.tenant_id,
        "name": d.name,
        "model": d.model,
        "prompt": d.system_prompt,
        "tools": list(d.tools),
        "rules": msgspec.json.encode(d.rules).decode(),
        "enabled": d.enabled,
        "template": d.template,
        "at": e.occurred_at,
    }
    return [
        (
            "INSERT INTO agents VALUES (%(id)s, %(tenant)s, %(name)s, %(model)s, %(prompt)s, %(tools)s,"
            " %(rules)s, %(enabled)s, %(template)s, %(at)s, %(at)s, 1)"
            " ON CONFLICT (agent_id) DO UPDATE SET name = EXCLUDED.name, model = EXCLUDED.model,"
            " system_prompt = EXCLUDED.system_prompt, tools = EXCLUDED.tools, rules = EXCLUDED.rules,"
            " enabled = EXCLUDED.enabled, template = EXCLUDED.template, updated_at = EXCLUDED.updated_at,"
            " version = agents.version + 1",
            row,
        )
    ]


def _requested(seq: int, e: ev.AgentRunRequested) -> list[Statement]:
    d = e.data
    return [
        (
            "INSERT INTO agent_runs (run_id, tenant_id, conversation_id, agent_id, trigger_message_id,"
            " status, requested_at) VALUES (%s, %s, %s, %s, %s, 'requested', %s) ON CONFLICT DO NOTHING",
            (d.run_id, e.tenant_id, e.aggregate_id, d.agent_id, d.trigger_message_id, e.occurred_at),
        )
    ]


def _started(seq: int, e: ev.AgentRunStarted) -> list[Statement]:
    return [
        (
            "UPDATE agent_runs SET status = 'started', model = %s WHERE run_id = %s AND status = 'requested'",
            (e.data.model, e.data.run_id),
        )
    ]


def _completed(seq: int, e: ev.AgentRunCompleted) -> list[Statement]:
    d = e.data
    return [
        (
            "UPDATE agent_runs SET status = 'completed', model = %s, tokens_in = %s, tokens_out = %s,"
            " cost_micros = %s, reply_message_id = %s, tool_calls = %s, offline = %s, finished_at = %s"
            " WHERE run_id = %s",
            (
                d.model, d.tokens_in, d.tokens_out, d.cost_micros, d.reply_message_id,
                msgspec.json.encode(d.tool_calls).decode(), d.offline, e.occurred_at, d.run_id,
            ),
        )
    ]  # fmt: skip


def _failed(seq: int, e: ev.AgentRunFailed) -> list[Statement]:
    d = e.data
    return [
        (
            "UPDATE agent_runs SET status = 'failed', error_code = %s, error = %s, finished_at = %s"
            " WHERE run_id = %s",
            (d.code, d.reason, e.occurred_at, d.run_id),
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
    "agent.run_requested": _requested,
    "agent.run_started": _started,
    "agent.run_completed": _completed,
    "agent.run_failed": _failed,
}


class AgentsProjection:
    name: str = "agents"
    version: int = 1
    tables: tuple[str, ...] = ("agents", "agent_runs")
    handles: frozenset[str] = frozenset(HANDLERS)

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return INDEXES

    def new_batch(self) -> Batch:
        return StatementBatch(HANDLERS)
