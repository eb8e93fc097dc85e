"""Queries on the devices read model (``projections/devices.py``): a tenant's devices for
the gateway (in the tenant's transaction), and a device's identity for the tunnel."""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters.postgres.database import Connection


class Device(msgspec.Struct, frozen=True):
    device_id: str
    tenant_id: str
    name: str
    platform: str
    public_key: str
    fingerprint: str
    state: str
    state_reason: str | None
    version: str | None
    capabilities: list[str]
    paired_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None


async def devices(conn: Connection, tenant_id: str) -> list[Device]:
    """The tenant's devices, revoked ones included (they say so), oldest first."""
    cur = await conn.execute(
        "SELECT * FROM rm_devices.devices WHERE tenant_id = %s ORDER BY paired_at, device_id", (tenant_id,)
    )
    return [msgspec.convert(r, Device, strict=False) for r in await cur.fetchall()]


async def device(conn: Connection, device_id: str) -> Device | None:
    """One device (any tenant's: the tunnel looks it up before it knows the tenant), or None."""
    cur = await conn.execute("SELECT * FROM rm_devices.devices WHERE device_id = %s", (device_id,))
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Device, strict=False)
