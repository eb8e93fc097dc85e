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
    takeover_minutes integer,  -- NULL: the default (30)
    dm_policy        text      -- open, pairing, allowlist (NULL: open)
);

-- People who wrote a direct message on a connection whose DM policy asks for approval,
-- and what the owner decided (approved or blocked).
CREATE TABLE senders (
    connection_id   text NOT NULL,
    sender_id       text NOT NULL,
    tenant_id       text NOT NULL,
    sender_name     text NOT NULL DEFAULT '',
    status          text NOT NULL,  -- pending, approved, blocked
    code            text,           -- pairing: the code they were sent
    conversation_id text,           -- where they asked
    message_id      text,           -- their first message
    requested_at    timestamptz,
    decided_at      timestamptz,
    decided_via     text,           -- inbox, code
    PRIMARY KEY (connection_id, sender_id)
);
"""

INDEXES = """
CREATE INDEX connections_tenant ON connections (tenant_id, channel);
CREATE INDEX connections_device ON connections (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX senders_tenant ON senders (tenant_id, status, requested_at);
CREATE INDEX senders_code ON senders (tenant_id, code) WHERE code IS NOT NULL;
CREATE INDEX senders_conversation ON senders (conversation_id);
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
        " takeover_minutes = COALESCE(%(takeover_minutes)s, takeover_minutes),"
        " dm_policy = COALESCE(%(dm_policy)s, dm_policy)"
        " WHERE connection_id = %(aggregate_id)s"
    ),
    # A request never undoes a decision: an approved or blocked sender stays so.
    "connection.sender_requested": statement(
        "INSERT INTO senders (connection_id, sender_id, tenant_id, sender_name, status, code,"
        " conversation_id, message_id, requested_at) VALUES (%(aggregate_id)s, %(sender_id)s,"
        " %(tenant_id)s, %(sender_name)s, 'pending', %(code)s, %(conversation_id)s, %(message_id)s,"
        " %(occurred_at)s) ON CONFLICT (connection_id, sender_id) DO UPDATE SET"
        " sender_name = EXCLUDED.sender_name, code = COALESCE(senders.code, EXCLUDED.code),"
        " conversation_id = COALESCE(senders.conversation_id, EXCLUDED.conversation_id),"
        " message_id = COALESCE(senders.message_id, EXCLUDED.message_id),"
        " requested_at = COALESCE(senders.requested_at, EXCLUDED.requested_at)"
    ),
    "connection.sender_approved": statement(
        "INSERT INTO senders (connection_id, sender_id, tenant_id, status, decided_at, decided_via)"
        " VALUES (%(aggregate_id)s, %(sender_id)s, %(tenant_id)s, 'approved', %(occurred_at)s, %(via)s)"
        " ON CONFLICT (connection_id, sender_id) DO UPDATE SET status = 'approved',"
        " decided_at = EXCLUDED.decided_at, decided_via = EXCLUDED.decided_via"
    ),
    "connection.sender_blocked": statement(
        "INSERT INTO senders (connection_id, sender_id, tenant_id, status, decided_at, decided_via)"
        " VALUES (%(aggregate_id)s, %(sender_id)s, %(tenant_id)s, 'blocked', %(occurred_at)s, %(via)s)"
        " ON CONFLICT (connection_id, sender_id) DO UPDATE SET status = 'blocked',"
        " decided_at = EXCLUDED.decided_at, decided_via = EXCLUDED.decided_via"
    ),
    "connection.deleted": statement(
        "UPDATE connections SET deleted_at = %(occurred_at)s, state = 'disconnected'"
        " WHERE connection_id = %(aggregate_id)s"
    ),
}


class ConnectionsProjection(StatementProjection):
    name = "connections"
    # 2: row-level security on every table; 3: mode and device_id (the Personal Bridge);
    # 4: the agent's mode and takeover time; 5: the DM policy and its senders
    version = 5
    tables: tuple[str, ...] = ("connections", "senders")
    schema = SCHEMA
    indexes = INDEXES
    handlers = HANDLERS
