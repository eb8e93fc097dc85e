"""Read model: a tenant's Personal Bridge devices, their keys and whether they are online."""

from __future__ import annotations

from domain import events as ev
from projections.base import Batch
from projections.statements import Handler, Statement, StatementBatch

SCHEMA = """
CREATE TABLE devices (
    device_id     text PRIMARY KEY,
    tenant_id     text NOT NULL,
    name          text NOT NULL,
    platform      text NOT NULL,
    public_key    text NOT NULL,
    fingerprint   text NOT NULL,
    paired_by     text NOT NULL,
    paired_at     timestamptz NOT NULL,
    state         text NOT NULL,          -- online | offline | revoked
    state_reason  text,
    version       text,
    capabilities  text[] NOT NULL DEFAULT '{}',
    last_seen_at  timestamptz,
    revoked_at    timestamptz
);
"""

INDEXES = "CREATE INDEX devices_tenant ON devices (tenant_id, paired_at);"


def _paired(seq: int, e: ev.DevicePaired) -> list[Statement]:
    return [
        (
            "INSERT INTO devices (device_id, tenant_id, name, platform, public_key, fingerprint,"
            " paired_by, paired_at, state) VALUES (%(id)s, %(tenant)s, %(name)s, %(platform)s,"
            " %(key)s, %(fingerprint)s, %(user)s, %(at)s, 'offline') ON CONFLICT (device_id) DO NOTHING",
            {
                "id": e.aggregate_id,
                "tenant": e.tenant_id,
                "name": e.data.name,
                "platform": e.data.platform,
                "key": e.data.public_key,
                "fingerprint": e.data.fingerprint,
                "user": e.data.user_id,
                "at": e.occurred_at,
            },
        )
    ]


def _state_changed(seq: int, e: ev.DeviceStateChanged) -> list[Statement]:
    online = e.data.state == "online"
    return [
        (
            # A revoked device stays revoked, whatever a late tunnel event says.
            "UPDATE devices SET state = %(state)s, state_reason = %(reason)s, last_seen_at = %(at)s"
            + (", version = %(version)s, capabilities = %(capabilities)s" if online else "")
            + " WHERE device_id = %(id)s AND revoked_at IS NULL",
            {
                "id": e.aggregate_id,
                "state": e.data.state,
                "reason": e.data.reason,
                "at": e.occurred_at,
                "version": e.data.version,
                "capabilities": list(e.data.capabilities),
            },
        )
    ]


def _revoked(seq: int, e: ev.DeviceRevoked) -> list[Statement]:
    return [
        (
            "UPDATE devices SET state = 'revoked', state_reason = %(reason)s, revoked_at = %(at)s"
            " WHERE device_id = %(id)s AND revoked_at IS NULL",
            {"id": e.aggregate_id, "reason": e.data.reason, "at": e.occurred_at},
        )
    ]


HANDLERS: dict[str, Handler] = {
    "device.paired": _paired,
    "device.state_changed": _state_changed,
    "device.revoked": _revoked,
}


class DevicesProjection:
    name: str = "devices"
    version: int = 1
    tables: tuple[str, ...] = ("devices",)
    handles: frozenset[str] = frozenset(HANDLERS)

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return INDEXES

    def new_batch(self) -> Batch:
        return StatementBatch(HANDLERS)
