"""Where cloud WhatsApp sessions keep their keys: the product's PostgreSQL, schema
``whatsapp``, which only the connectors' login reaches (no grant to the gateway's confined
role ``moltbot_gateway``, none to PUBLIC).

The library (whatsmeow, through neonize) keeps a linked device's keys in its own
``whatsmeow_*`` tables there (:func:`library_dsn`); :class:`SessionStore` records which
device each connection paired (``whatsapp.devices``), so a restart or another replica
resumes it without a new QR code, and deletes a device's keys with its connection.
On the Personal Bridge the same library keeps them in a file on the device instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg_pool import AsyncConnectionPool

from adapters.postgres.database import Connection

SCHEMA = "whatsapp"
SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS whatsapp;
REVOKE ALL ON SCHEMA whatsapp FROM PUBLIC;
CREATE TABLE IF NOT EXISTS whatsapp.devices (
    connection_id text PRIMARY KEY,
    tenant_id     text NOT NULL,
    jid           text NOT NULL,  -- the linked device, user:device@s.whatsapp.net
    paired_at     timestamptz NOT NULL DEFAULT now()
);
"""
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def library_dsn(database_url: str) -> str:
    """The product's database URL as the library's DSN: ``postgres://…`` (the prefix is how
    it tells PostgreSQL from SQLite), its tables in schema ``whatsapp``, and TLS required
    except to a local server (the library's driver has no "prefer")."""
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    if "sslmode" not in query:
        query["sslmode"] = "disable" if (parts.hostname or "") in _LOCAL_HOSTS else "require"
    query["search_path"] = SCHEMA
    return urlunsplit(("postgres", parts.netloc, parts.path, urlencode(query), ""))


async def ensure_schema(conn: Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.whatsapp.schema'))")
        await conn.execute(SCHEMA_SQL)


class SessionStore:
    """Which device each cloud WhatsApp connection paired (a pool of the connectors' login)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def jid(self, connection_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT jid FROM whatsapp.devices WHERE connection_id = %s", (connection_id,)
            )
            row = await cur.fetchone()
        return None if row is None else str(row["jid"])

    async def remember(self, tenant_id: str, connection_id: str, jid: str | None) -> None:
        """Record the connection's paired device; None forgets it and its keys."""
        if jid is None:
            await self.forget(connection_id)
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO whatsapp.devices (connection_id, tenant_id, jid) VALUES (%s, %s, %s)"
                " ON CONFLICT (connection_id) DO UPDATE SET jid = EXCLUDED.jid, paired_at = now()",
                (connection_id, tenant_id, jid),
            )

    async def forget(self, connection_id: str) -> None:
        """Delete the connection's device and the library's keys of it."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM whatsapp.devices WHERE connection_id = %s RETURNING jid", (connection_id,)
            )
            row = await cur.fetchone()
            if row is not None:
                await _delete_keys(conn, str(row["jid"]))

    async def forget_removed(self) -> list[str]:
        """Forget the devices of connections that were removed; their ids."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.connection_id FROM whatsapp.devices d JOIN rm_connections.connections c"
                " USING (connection_id) WHERE c.deleted_at IS NOT NULL"
            )
            removed = [str(row["connection_id"]) for row in await cur.fetchall()]
        for connection_id in removed:
            await self.forget(connection_id)
        return removed


async def _delete_keys(conn: Connection, jid: str) -> None:
    """The library's rows of a device: its other tables cascade from ``whatsmeow_device``."""
    cur = await conn.execute("SELECT to_regclass('whatsapp.whatsmeow_device') AS found")
    row = await cur.fetchone()
    if row is not None and row["found"] is not None:
        await conn.execute("DELETE FROM whatsapp.whatsmeow_device WHERE jid = %s", (jid,))
