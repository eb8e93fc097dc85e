"""Read model: a tenant's channel connections and their current state."""

from __future__ import annotations

from domain import events as ev
from projections.base import Batch
from projections.statements import Handler, Statement, StatementBatch

SCHEMA = """
CREATE TABLE connections (
    connection_id    text PRIMARY KEY,
    tenant_id        text NOT NULL,
    channel          text NOT NULL,
    display_name     text NOT NULL,
    state            text NOT NULL,
    state_code       text,
    state_message    text,
    suggested_action text,
    key_id           text,
    created_at       timestamptz NOT NULL,
    state_changed_at timestamptz NOT NULL,
    deleted_at       timestamptz,
    mode             text NOT NULL DEFAULT 'cloud',
    device_id        text
);
"""

INDEXES = """
CREATE INDEX connections_tenant ON connections (tenant_id, channel);
CREATE INDEX connections_device ON connections (device_id) WHERE device_id IS NOT NULL;
"""


def _created(seq: int, e: ev.ConnectionCreated) -> list[Statement]:
    return [
        (
            "INSERT INTO connections (connection_id, tenant_id, channel, display_name, state,"
            " created_at, state_changed_at, mode, device_id) VALUES (%(id)s, %(tenant)s, %(channel)s,"
            " %(name)s, 'connecting', %(at)s, %(at)s, %(mode)s, %(device)s)"
            " ON CONFLICT (connection_id) DO NOTHING",
            {
                "id": e.aggregate_id,
                "tenant": e.tenant_id,
                "channel": e.data.channel,
                "name": e.data.display_name,
                "at": e.occurred_at,
                "mode": e.data.mode,
                "device": e.data.device_id,
            },
        )
    ]


def _state_changed(seq: int, e: ev.ConnectionStateChanged) -> list[Statement]:
    return [
        (
            "UPDATE connections SET state = %(state)s, state_code = %(code)s,"
            " state_message = %(message)s, suggested_action = %(action)s, state_changed_at = %(at)s"
            " WHERE connection_id = %(id)s",
            {
                "id": e.aggregate_id,
                "state": e.data.state,
                "code": e.data.code,
                "message": e.data.message,
                "action": e.data.action,
                "at": e.occurred_at,
            },
        )
    ]


def _credentials_rotated(seq: int, e: ev.ConnectionCredentialsRotated) -> list[Statement]:
    return [
        (
            "UPDATE connections SET key_id = %(key)s WHERE connection_id = %(id)s",
            {"id": e.aggregate_id, "key": e.data.key_id},
        )
    ]


def _deleted(seq: int, e: ev.ConnectionDeleted) -> list[Statement]:
    return [
        (
            "UPDATE connections SET deleted_at = %(at)s, state = 'disconnected' WHERE connection_id = %(id)s",
            {"id": e.aggregate_id, "at": e.occurred_at},
        )
    ]


HANDLERS: dict[str, Handler] = {
    "connection.created": _created,
    "connection.state_changed": _state_changed,
    "connection.credentials_rotated": _credentials_rotated,
    "connection.deleted": _deleted,
}


class ConnectionsProjection:
    name: str = "connections"
    version: int = 3  # 2: row-level security on every table; 3: mode and device_id
    tables: tuple[str, ...] = ("connections",)
    handles: frozenset[str] = frozenset(HANDLERS)

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return INDEXES

    def new_batch(self) -> Batch:
        return StatementBatch(HANDLERS)
