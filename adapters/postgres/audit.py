"""The audit log: who did what to an inbox, when, and from where.

One table, ``audit.entries``, written where the action happens (the gateway's routes, the
connectors' credential reads, the operator's CLI) and read by ``GET /v1/audit``. Most
entries are one row each; frequent, unremarkable ones (a connector reading its channel's
credentials) are *counted*: one row per inbox, action, target and UTC day, whose ``count``
grows. Row-level security holds the gateway's reads to the caller's inbox.

Actions are dotted names (``signin.succeeded``, ``member.removed``, ``channel.connected``…);
``docs/accounts.md`` lists them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from adapters.postgres.database import Connection

AUDIT_SQL = """
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS audit.entries (
    entry_id   bigserial PRIMARY KEY,
    tenant_id  text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    action     text NOT NULL,
    actor      text NOT NULL,   -- user:<id>, connector, stripe, operator
    ip         text,
    user_agent text,
    target     text NOT NULL DEFAULT '',  -- what it was done to: a user, a channel, a session
    detail     jsonb NOT NULL DEFAULT '{}',
    day        date,            -- set on counted entries only: one row per day
    count      integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS entries_tenant ON audit.entries (tenant_id, entry_id DESC);
CREATE UNIQUE INDEX IF NOT EXISTS entries_counted
    ON audit.entries (tenant_id, action, target, day) WHERE day IS NOT NULL;
ALTER TABLE audit.entries ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_only ON audit.entries;
CREATE POLICY tenant_only ON audit.entries TO moltbot_gateway
    USING (tenant_id = current_setting('moltbot.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('moltbot.tenant_id', true));
GRANT USAGE ON SCHEMA audit TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE ON audit.entries TO moltbot_gateway;
GRANT USAGE ON SEQUENCE audit.entries_entry_id_seq TO moltbot_gateway;
"""


async def ensure_schema(conn: Connection) -> None:
    """Create the table if missing (the confined role must exist); safe when several
    processes start at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.audit.schema'))")
        await conn.execute(AUDIT_SQL)


class Where(msgspec.Struct, frozen=True):
    """Where an action came from: the client's address and user agent (shortened)."""

    ip: str | None = None
    user_agent: str | None = None


class Entry(msgspec.Struct, frozen=True):
    entry_id: int
    at: datetime
    action: str
    actor: str
    ip: str | None
    user_agent: str | None
    target: str
    detail: dict[str, Any]
    count: int


async def record(
    conn: Connection,
    tenant_id: str,
    action: str,
    *,
    actor: str,
    where: Where | None = None,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry, in the caller's transaction so it commits with the action (as the
    confined role, a transaction of ``tenant_id``: ``tenancy.tenant_transaction``)."""
    where = where or Where()
    await conn.execute(
        "INSERT INTO audit.entries (tenant_id, action, actor, ip, user_agent, target, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            tenant_id,
            action,
            actor,
            where.ip,
            (where.user_agent or "")[:200] or None,
            target,
            msgspec.json.encode(detail or {}).decode(),
        ),
    )


async def count(conn: Connection, tenant_id: str, action: str, *, actor: str, target: str) -> None:
    """Count one more ``action`` on ``target`` today (one row per inbox, action, target and day)."""
    await conn.execute(
        "INSERT INTO audit.entries (tenant_id, action, actor, target, day) VALUES (%s, %s, %s, %s,"
        " (now() AT TIME ZONE 'UTC')::date) ON CONFLICT (tenant_id, action, target, day)"
        " WHERE day IS NOT NULL DO UPDATE SET count = audit.entries.count + 1, at = now()",
        (tenant_id, action, actor, target),
    )


async def page(conn: Connection, tenant_id: str, *, before: int | None, limit: int) -> list[Entry]:
    """The inbox's entries, newest first, older than entry ``before`` when given."""
    cur = await conn.execute(
        "SELECT entry_id, at, action, actor, ip, user_agent, target, detail, count FROM audit.entries"
        " WHERE tenant_id = %s AND (%s::bigint IS NULL OR entry_id < %s) ORDER BY entry_id DESC LIMIT %s",
        (tenant_id, before, before, limit),
    )
    return [msgspec.convert(row, Entry) for row in await cur.fetchall()]
