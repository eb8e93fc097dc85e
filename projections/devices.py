"""Read model: a tenant's Personal Bridge devices, their keys and whether they are online."""

from __future__ import annotations

from domain import events as ev
from projections.statements import Handler, Statement, StatementProjection, event_fields, statement

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


def _state_changed(seq: int, e: ev.DeviceStateChanged) -> list[Statement]:
    online = e.data.state == "online"
    return [
        (
            # A revoked device stays revoked, whatever a late tunnel event says.
            "UPDATE devices SET state = %(state)s, state_reason = %(reason)s, last_seen_at = %(occurred_at)s"
            + (", version = %(version)s, capabilities = %(capabilities)s" if online else "")
            + " WHERE device_id = %(aggregate_id)s AND revoked_at IS NULL",
            event_fields(e) | {"capabilities": list(e.data.capabilities)},
        )
    ]


HANDLERS: dict[str, Handler] = {
    "device.paired": statement(
        "INSERT INTO devices (device_id, tenant_id, name, platform, public_key, fingerprint, paired_by,"
        " paired_at, state) VALUES (%(aggregate_id)s, %(tenant_id)s, %(name)s, %(platform)s, %(public_key)s,"
        " %(fingerprint)s, %(user_id)s, %(occurred_at)s, 'offline') ON CONFLICT (device_id) DO NOTHING"
    ),
    "device.state_changed": _state_changed,
    "device.revoked": statement(
        "UPDATE devices SET state = 'revoked', state_reason = %(reason)s, revoked_at = %(occurred_at)s"
        " WHERE device_id = %(aggregate_id)s AND revoked_at IS NULL"
    ),
}


class DevicesProjection(StatementProjection):
    name = "devices"
    version = 1
    tables: tuple[str, ...] = ("devices",)
    schema = SCHEMA
    indexes = INDEXES
    handlers = HANDLERS
