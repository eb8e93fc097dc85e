"""Read model: tenants, their members, and users."""

from __future__ import annotations

from domain.events import AwaySet, UserPreferencesChanged
from projections.statements import Handler, Statement, StatementProjection, statement

SCHEMA = """
CREATE TABLE tenants (
    tenant_id  text PRIMARY KEY,
    name       text NOT NULL,
    plan       text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE users (
    user_id        text PRIMARY KEY,
    tenant_id      text NOT NULL,  -- the user's home tenant
    email          text NOT NULL,
    display_name   text NOT NULL,
    registered_at  timestamptz NOT NULL,
    time_zone      text,      -- IANA name (NULL: UTC), for quiet hours and the agent's clock
    quiet_start    smallint,  -- no push notifications from this hour (in time_zone) ...
    quiet_end      smallint,  -- ... until this one (NULL: none)
    digest_hour    smallint,  -- the morning digest at this hour in time_zone (NULL: none, the default)
    digest_email   boolean NOT NULL DEFAULT true,
    digest_on      date       -- the latest day whose digest was due
);
CREATE TABLE away_periods (
    away_id        text PRIMARY KEY,
    tenant_id      text NOT NULL,
    started_at     timestamptz NOT NULL,
    until          timestamptz NOT NULL,
    message        text NOT NULL,
    connection_ids text[] NOT NULL,  -- empty: every connection
    mode           text NOT NULL,    -- answer, draft
    ended_at       timestamptz,      -- back (NULL: away until "until", or back by then)
    ended_reason   text
);
CREATE TABLE members (
    tenant_id text NOT NULL,
    user_id   text NOT NULL,
    role      text NOT NULL,
    added_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
-- Besides its own inbox's rows (every table's tenant_isolation policy), the gateway sees the
-- memberships and inboxes of the user in moltbot.user_id (which inboxes may I switch to?) and
-- the people who are members of the inbox in moltbot.tenant_id (who is in my inbox?).
CREATE POLICY own_memberships ON members TO moltbot_gateway
    USING (user_id = current_setting('moltbot.user_id', true));
CREATE POLICY member_inboxes ON tenants TO moltbot_gateway
    USING (tenant_id IN (SELECT m.tenant_id FROM members m
                         WHERE m.user_id = current_setting('moltbot.user_id', true)));
CREATE POLICY fellow_members ON users TO moltbot_gateway
    USING (user_id IN (SELECT m.user_id FROM members m
                       WHERE m.tenant_id = current_setting('moltbot.tenant_id', true))
           OR user_id = current_setting('moltbot.user_id', true));
"""

INDEXES = """
CREATE INDEX users_email ON users (lower(email));
CREATE INDEX away_periods_tenant ON away_periods (tenant_id, started_at DESC);
CREATE INDEX away_periods_open ON away_periods (until) WHERE ended_at IS NULL;
CREATE INDEX members_user ON members (user_id);
"""


def _preferences(seq: int, event: UserPreferencesChanged) -> list[Statement]:
    quiet = event.data.quiet_hours
    return [
        (
            "UPDATE users SET time_zone = %(time_zone)s, quiet_start = %(start)s, quiet_end = %(end)s,"
            " digest_hour = %(digest_hour)s, digest_email = %(digest_email)s WHERE user_id = %(user_id)s",
            {
                "user_id": event.aggregate_id,
                "time_zone": event.data.time_zone,
                "start": quiet.start if quiet else None,
                "end": quiet.end if quiet else None,
                "digest_hour": event.data.digest_hour,
                "digest_email": event.data.digest_email,
            },
        )
    ]


def _away_set(seq: int, event: AwaySet) -> list[Statement]:
    """A new away period replaces the one that was on."""
    a = event.data
    values = {
        "away": a.away_id, "tenant": event.tenant_id, "at": event.occurred_at, "until": a.until,
        "message": a.message, "connections": list(a.connection_ids), "mode": a.mode,
    }  # fmt: skip
    return [
        (
            "UPDATE away_periods SET ended_at = %(at)s, ended_reason = 'replaced'"
            " WHERE tenant_id = %(tenant)s AND ended_at IS NULL AND away_id <> %(away)s",
            values,
        ),
        (
            "INSERT INTO away_periods (away_id, tenant_id, started_at, until, message, connection_ids, mode)"
            " VALUES (%(away)s, %(tenant)s, %(at)s, %(until)s, %(message)s, %(connections)s, %(mode)s)"
            " ON CONFLICT (away_id) DO NOTHING",
            values,
        ),
    ]


HANDLERS: dict[str, Handler] = {
    "tenant.created": statement(
        "INSERT INTO tenants VALUES (%(tenant_id)s, %(name)s, %(plan)s, %(occurred_at)s, %(occurred_at)s)"
        " ON CONFLICT (tenant_id) DO NOTHING"
    ),
    "tenant.renamed": statement(
        "UPDATE tenants SET name = %(name)s, updated_at = %(occurred_at)s WHERE tenant_id = %(tenant_id)s"
    ),
    "plan.changed": statement(
        "UPDATE tenants SET plan = %(plan)s, updated_at = %(occurred_at)s WHERE tenant_id = %(tenant_id)s"
    ),
    # aggregate_id: the user; tenant_id: their home tenant
    "user.registered": statement(
        "INSERT INTO users (user_id, tenant_id, email, display_name, registered_at) VALUES"
        " (%(aggregate_id)s, %(tenant_id)s, %(email)s, %(display_name)s, %(occurred_at)s)"
        " ON CONFLICT (user_id) DO NOTHING"
    ),
    "user.preferences_changed": _preferences,
    "user.digest_due": statement(
        "UPDATE users SET digest_on = GREATEST(digest_on, %(date)s) WHERE user_id = %(aggregate_id)s"
    ),
    "tenant.away_set": _away_set,
    "tenant.away_ended": statement(
        "UPDATE away_periods SET ended_at = LEAST(until, %(occurred_at)s), ended_reason = %(reason)s"
        " WHERE away_id = %(away_id)s AND tenant_id = %(tenant_id)s AND ended_at IS NULL"
    ),
    "member.added": statement(
        "INSERT INTO members VALUES (%(tenant_id)s, %(user_id)s, %(role)s, %(occurred_at)s)"
        " ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role"
    ),
    "member.role_changed": statement(
        "UPDATE members SET role = %(role)s WHERE tenant_id = %(tenant_id)s AND user_id = %(user_id)s"
    ),
    "member.removed": statement(
        "DELETE FROM members WHERE tenant_id = %(tenant_id)s AND user_id = %(user_id)s"
    ),
}


class TenantsProjection(StatementProjection):
    name = "tenants"
    # 2: row-level security on every table; 3: members see each other, users their inboxes;
    # 4: people's time zones and quiet hours; 5: morning digests, away periods
    version = 5
    tables: tuple[str, ...] = ("tenants", "users", "members", "away_periods")
    schema = SCHEMA
    indexes = INDEXES
    handlers = HANDLERS
