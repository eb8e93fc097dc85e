"""Queries on the connections read model (``projections/connections.py``): a tenant's
channels, and what connectors look up across tenants. Each takes a connection: in a
tenant's transaction for the gateway, as the owner role for connectors."""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters.postgres.database import Connection


class Channel(msgspec.Struct, frozen=True):
    connection_id: str
    channel: str
    display_name: str
    state: str
    state_code: str | None
    state_message: str | None
    suggested_action: str | None
    created_at: datetime
    mode: str = "cloud"  # "bridge": runs on the device named by device_id
    device_id: str | None = None
    agent_mode: str | None = None  # set by the owner (None: the channel kind's default)
    takeover_minutes: int | None = None  # set by the owner (None: the default)
    dm_policy: str | None = None  # open, pairing, allowlist (None: open)


async def channels(conn: Connection, tenant_id: str, *, device_id: str | None = None) -> list[Channel]:
    """The tenant's connections that are not removed (those ``device_id`` hosts, when given),
    oldest first."""
    cur = await conn.execute(
        "SELECT * FROM rm_connections.connections WHERE tenant_id = %(tenant)s AND deleted_at IS NULL"
        " AND (%(device)s::text IS NULL OR device_id = %(device)s) ORDER BY created_at",
        {"tenant": tenant_id, "device": device_id},
    )
    return [msgspec.convert(r, Channel, strict=False) for r in await cur.fetchall()]


async def connection(conn: Connection, connection_id: str) -> Channel | None:
    """A connection that is not removed (where it runs included), or None."""
    cur = await conn.execute(
        "SELECT * FROM rm_connections.connections WHERE connection_id = %s AND deleted_at IS NULL",
        (connection_id,),
    )
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Channel, strict=False)


async def live(conn: Connection, channel: str) -> set[str]:
    """Connections of ``channel`` that should have a session in the cloud: not deleted, not
    on a device, not waiting for a person to act (a revoked token stays down until it is
    connected again)."""
    cur = await conn.execute(
        "SELECT connection_id FROM rm_connections.connections WHERE channel = %s"
        " AND deleted_at IS NULL AND state <> 'action_required' AND mode = 'cloud'",
        (channel,),
    )
    return {row["connection_id"] for row in await cur.fetchall()}


async def owner(conn: Connection, connection_id: str) -> str | None:
    """The tenant of a connection (removed or not), or None."""
    cur = await conn.execute(
        "SELECT tenant_id FROM rm_connections.connections WHERE connection_id = %s", (connection_id,)
    )
    row = await cur.fetchone()
    return None if row is None else str(row["tenant_id"])


class Sender(msgspec.Struct, frozen=True):
    """Someone who wrote a direct message on a connection that asks for approval."""

    connection_id: str
    sender_id: str
    sender_name: str
    status: str  # pending, approved, blocked
    code: str | None = None
    conversation_id: str | None = None
    requested_at: datetime | None = None
    decided_at: datetime | None = None


_SENDER_COLUMNS = (
    "connection_id, sender_id, sender_name, status, code, conversation_id, requested_at, decided_at"
)


async def senders(conn: Connection, connection_id: str, *, status: str | None, limit: int) -> list[Sender]:
    """The connection's senders (with ``status`` only, when given), the latest request first."""
    cur = await conn.execute(
        f"SELECT {_SENDER_COLUMNS} FROM rm_connections.senders WHERE connection_id = %(connection)s"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY coalesce(requested_at, decided_at) DESC, sender_id LIMIT %(limit)s",
        {"connection": connection_id, "status": status, "limit": limit},
    )
    return [msgspec.convert(r, Sender, strict=False) for r in await cur.fetchall()]


async def sender(conn: Connection, connection_id: str, sender_id: str) -> Sender | None:
    cur = await conn.execute(
        f"SELECT {_SENDER_COLUMNS} FROM rm_connections.senders WHERE connection_id = %s AND sender_id = %s",
        (connection_id, sender_id),
    )
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Sender, strict=False)


async def sender_by_code(conn: Connection, tenant_id: str, code: str) -> Sender | None:
    """The sender of the tenant who was sent ``code`` (on a connection not removed)."""
    cur = await conn.execute(
        f"SELECT {', '.join('s.' + c for c in _SENDER_COLUMNS.split(', '))} FROM rm_connections.senders s"
        " JOIN rm_connections.connections n ON n.connection_id = s.connection_id"
        " WHERE s.tenant_id = %s AND s.code = %s AND n.deleted_at IS NULL",
        (tenant_id, code),
    )
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Sender, strict=False)
