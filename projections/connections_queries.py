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
