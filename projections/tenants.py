"""Read model: tenants, their members, and users."""

from __future__ import annotations

from domain import events as ev
from projections.base import Batch
from projections.statements import Handler, Statement, StatementBatch

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
    registered_at  timestamptz NOT NULL
);
CREATE TABLE members (
    tenant_id text NOT NULL,
    user_id   text NOT NULL,
    role      text NOT NULL,
    added_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
"""

INDEXES = """
CREATE INDEX users_email ON users (lower(email));
CREATE INDEX members_user ON members (user_id);
"""


def _tenant_created(seq: int, e: ev.TenantCreated) -> list[Statement]:
    return [
        (
            "INSERT INTO tenants VALUES (%(id)s, %(name)s, %(plan)s, %(at)s, %(at)s)"
            " ON CONFLICT (tenant_id) DO NOTHING",
            {"id": e.tenant_id, "name": e.data.name, "plan": e.data.plan, "at": e.occurred_at},
        )
    ]


def _tenant_renamed(seq: int, e: ev.TenantRenamed) -> list[Statement]:
    return [
        (
            "UPDATE tenants SET name = %(name)s, updated_at = %(at)s WHERE tenant_id = %(id)s",
            {"id": e.tenant_id, "name": e.data.name, "at": e.occurred_at},
        )
    ]


def _plan_changed(seq: int, e: ev.PlanChanged) -> list[Statement]:
    return [
        (
            "UPDATE tenants SET plan = %(plan)s, updated_at = %(at)s WHERE tenant_id = %(id)s",
            {"id": e.tenant_id, "plan": e.data.plan, "at": e.occurred_at},
        )
    ]


def _user_registered(seq: int, e: ev.UserRegistered) -> list[Statement]:
    return [
        (
            "INSERT INTO users VALUES (%(id)s, %(tenant)s, %(email)s, %(name)s, %(at)s)"
            " ON CONFLICT (user_id) DO NOTHING",
            {
                "id": e.aggregate_id,
                "tenant": e.tenant_id,
                "email": e.data.email,
                "name": e.data.display_name,
                "at": e.occurred_at,
            },
        )
    ]


def _member_added(seq: int, e: ev.MemberAdded) -> list[Statement]:
    return [
        (
            "INSERT INTO members VALUES (%(tenant)s, %(user)s, %(role)s, %(at)s)"
            " ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            {"tenant": e.tenant_id, "user": e.data.user_id, "role": e.data.role, "at": e.occurred_at},
        )
    ]


def _member_role_changed(seq: int, e: ev.MemberRoleChanged) -> list[Statement]:
    return [
        (
            "UPDATE members SET role = %(role)s WHERE tenant_id = %(tenant)s AND user_id = %(user)s",
            {"tenant": e.tenant_id, "user": e.data.user_id, "role": e.data.role},
        )
    ]


def _member_removed(seq: int, e: ev.MemberRemoved) -> list[Statement]:
    return [
        (
            "DELETE FROM members WHERE tenant_id = %(tenant)s AND user_id = %(user)s",
            {"tenant": e.tenant_id, "user": e.data.user_id},
        )
    ]


HANDLERS: dict[str, Handler] = {
    "tenant.created": _tenant_created,
    "tenant.renamed": _tenant_renamed,
    "plan.changed": _plan_changed,
    "user.registered": _user_registered,
    "member.added": _member_added,
    "member.role_changed": _member_role_changed,
    "member.removed": _member_removed,
}


class TenantsProjection:
    name: str = "tenants"
    version: int = 2  # 2: row-level security on every table
    tables: tuple[str, ...] = ("tenants", "users", "members")
    handles: frozenset[str] = frozenset(HANDLERS)

    def schema_sql(self) -> str:
        return SCHEMA

    def index_sql(self) -> str:
        return INDEXES

    def new_batch(self) -> Batch:
        return StatementBatch(HANDLERS)
