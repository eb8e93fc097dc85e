"""Notifications an inbox gets once per period (``push.notices``): the notifier claims the
notice's key before sending, so a second event of the month — or a second notifier — finds it
taken. A crash between the claim and the send loses that one notification, never repeats it."""

from __future__ import annotations

from adapters.postgres.database import Connection

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS push;
CREATE TABLE IF NOT EXISTS push.notices (
    tenant_id  text NOT NULL,
    notice     text NOT NULL,      -- what and when, e.g. 'ai_allowance:2026-11'
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, notice)
);
GRANT USAGE ON SCHEMA push TO moltbot_gateway;
GRANT SELECT, INSERT ON push.notices TO moltbot_gateway;
ALTER TABLE push.notices ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_only ON push.notices;
CREATE POLICY tenant_only ON push.notices TO moltbot_gateway
    USING (tenant_id = current_setting('moltbot.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('moltbot.tenant_id', true));
"""


async def ensure_schema(conn: Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.push.schema'))")
        await conn.execute(SCHEMA_SQL)


async def claim(conn: Connection, tenant_id: str, notice: str) -> bool:
    """True the first time ``notice`` is claimed for the tenant, False ever after."""
    cur = await conn.execute(
        "INSERT INTO push.notices (tenant_id, notice) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (tenant_id, notice),
    )
    return cur.rowcount == 1
