"""Read model: a tenant's channel connections and their current state."""

from __future__ import annotations

from projections.statements import Handler, StatementProjection, statement

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
    mode             text NOT NULL DEFAULT 'cloud',  -- "bridge": runs on the device device_id names
    device_id        text,
    agent_mode       text,     -- auto, draft, off (NULL: the channel kind's default)
    takeover_minutes integer   -- NULL: the default (30)
);
"""

INDEXES = """
CREATE INDEX connections_tenant ON connections (tenant_id, channel);
CREATE INDEX connections_device ON connections (device_id) WHERE device_id IS NOT NULL;
"""


HANDLERS: dict[str, Handler] = {
    "connection.created": statement(
        "INSERT INTO connections (connection_id, tenant_id, channel, display_name, state, created_at,"
        " state_changed_at, mode, device_id) VALUES (%(aggregate_id)s, %(tenant_id)s, %(channel)s,"
        " %(display_name)s, 'connecting', %(occurred_at)s, %(occurred_at)s, %(mode)s, %(device_id)s)"
        " ON CONFLICT (connection_id) DO NOTHING"
    ),
    "connection.state_changed": statement(
        "UPDATE connections SET state = %(state)s, state_code = %(code)s, state_message = %(message)s,"
        " suggested_action = %(action)s, state_changed_at = %(occurred_at)s"
        " WHERE connection_id = %(aggregate_id)s"
    ),
    "connection.credentials_rotated": statement(
        "UPDATE connections SET key_id = %(key_id)s WHERE connection_id = %(aggregate_id)s"
    ),
    "connection.agent_settings_changed": statement(
        "UPDATE connections SET agent_mode = COALESCE(%(agent_mode)s, agent_mode),"
        " takeover_minutes = COALESCE(%(takeover_minutes)s, takeover_minutes)"
        " WHERE connection_id = %(aggregate_id)s"
    ),
    "connection.deleted": statement(
        "UPDATE connections SET deleted_at = %(occurred_at)s, state = 'disconnected'"
        " WHERE connection_id = %(aggregate_id)s"
    ),
}


class ConnectionsProjection(StatementProjection):
    name = "connections"
    # 2: row-level security on every table; 3: mode and device_id (the Personal Bridge);
    # 4: the agent's mode and takeover time
    version = 4
    tables: tuple[str, ...] = ("connections",)
    schema = SCHEMA
    indexes = INDEXES
    handlers = HANDLERS
