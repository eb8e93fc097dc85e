"""Queries on the tenants read model (``projections/tenants.py``): inboxes, their people and
plans. Each takes a connection already in a tenant's transaction and answers with Structs."""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from adapters.postgres.database import Connection
from domain.away import Away
from projections.rows import one_row


class Account(msgspec.Struct, frozen=True):
    """A person as a member of an inbox (the person's fields are None until the read model has them)."""

    email: str | None
    display_name: str | None
    tenant_name: str
    plan: str


class InboxNames(msgspec.Struct, frozen=True):
    name: str
    owner_email: str | None  # the first owner's


class Membership(msgspec.Struct, frozen=True):
    """An inbox a person belongs to."""

    tenant_id: str
    name: str
    role: str


class Member(msgspec.Struct, frozen=True):
    """A person in an inbox (email and name None while the read model lacks their account)."""

    user_id: str
    email: str | None
    display_name: str | None
    role: str
    added_at: datetime


async def memberships(conn: Connection, user_id: str) -> list[Membership]:
    """Every inbox the user belongs to, oldest first (in a ``tenancy.user_transaction``)."""
    cur = await conn.execute(
        "SELECT m.tenant_id, t.name, m.role FROM rm_tenants.members m"
        " JOIN rm_tenants.tenants t ON t.tenant_id = m.tenant_id WHERE m.user_id = %s ORDER BY m.added_at",
        (user_id,),
    )
    return [msgspec.convert(row, Membership) for row in await cur.fetchall()]


async def members(conn: Connection, tenant_id: str) -> list[Member]:
    """The inbox's people, owners first, then by when they joined."""
    cur = await conn.execute(
        "SELECT m.user_id, u.email, u.display_name, m.role, m.added_at FROM rm_tenants.members m"
        " LEFT JOIN rm_tenants.users u ON u.user_id = m.user_id WHERE m.tenant_id = %s"
        " ORDER BY m.role <> 'owner', m.added_at",
        (tenant_id,),
    )
    return [msgspec.convert(row, Member) for row in await cur.fetchall()]


async def member_role(conn: Connection, tenant_id: str, user_id: str) -> str | None:
    """The user's role in the tenant, or None when not a member."""
    cur = await conn.execute(
        "SELECT role FROM rm_tenants.members WHERE tenant_id = %s AND user_id = %s", (tenant_id, user_id)
    )
    row = await cur.fetchone()
    return None if row is None else str(row["role"])


async def account(conn: Connection, tenant_id: str, user_id: str) -> Account | None:
    """The inbox with the person's name and e-mail; None while the inbox is not in the read model."""
    return await one_row(
        conn,
        Account,
        "SELECT u.email, u.display_name, t.name AS tenant_name, t.plan FROM rm_tenants.tenants t"
        " LEFT JOIN rm_tenants.users u ON u.user_id = %s WHERE t.tenant_id = %s",
        (user_id, tenant_id),
    )


async def inbox_names(conn: Connection, tenant_id: str) -> InboxNames | None:
    """An inbox's name and its owner's e-mail, to show whose inbox an install joins."""
    return await one_row(
        conn,
        InboxNames,
        "SELECT t.name, (SELECT u.email FROM rm_tenants.members m JOIN rm_tenants.users u"
        " ON u.user_id = m.user_id WHERE m.tenant_id = t.tenant_id AND m.role = 'owner'"
        " ORDER BY m.added_at LIMIT 1) AS owner_email FROM rm_tenants.tenants t WHERE t.tenant_id = %s",
        (tenant_id,),
    )


async def plan(conn: Connection, tenant_id: str) -> str | None:
    """The tenant's plan, or None while the tenant is not in the read model."""
    cur = await conn.execute("SELECT plan FROM rm_tenants.tenants WHERE tenant_id = %s", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else str(row["plan"])


async def display_name(conn: Connection, user_id: str) -> str | None:
    """The person's display name, or None when unknown."""
    cur = await conn.execute("SELECT display_name FROM rm_tenants.users WHERE user_id = %s", (user_id,))
    row = await cur.fetchone()
    return None if row is None else row["display_name"]


class Preferences(msgspec.Struct, frozen=True):
    """A person's time zone (None: UTC), the hours in it without push notifications, and the
    hour of their morning digest (None: none)."""

    time_zone: str | None = None
    quiet_start: int | None = None
    quiet_end: int | None = None
    digest_hour: int | None = None
    digest_email: bool = True


class MemberPreferences(msgspec.Struct, frozen=True):
    """A person of an inbox, their role and their preferences."""

    user_id: str
    role: str
    time_zone: str | None = None
    quiet_start: int | None = None
    quiet_end: int | None = None


async def preferences(conn: Connection, user_id: str) -> Preferences:
    """The person's preferences (all None until they set them, or while the read model lacks them)."""
    found = await one_row(
        conn,
        Preferences,
        "SELECT time_zone, quiet_start, quiet_end, digest_hour, digest_email FROM rm_tenants.users"
        " WHERE user_id = %s",
        (user_id,),
    )
    return found or Preferences()


async def member_preferences(conn: Connection, tenant_id: str) -> list[MemberPreferences]:
    """Every person of the inbox with their preferences, owners first."""
    cur = await conn.execute(
        "SELECT m.user_id, m.role, u.time_zone, u.quiet_start, u.quiet_end FROM rm_tenants.members m"
        " LEFT JOIN rm_tenants.users u ON u.user_id = m.user_id WHERE m.tenant_id = %s"
        " ORDER BY m.role <> 'owner', m.added_at",
        (tenant_id,),
    )
    return [msgspec.convert(row, MemberPreferences) for row in await cur.fetchall()]


async def owner_time_zone(conn: Connection, tenant_id: str) -> str | None:
    """The IANA time zone of the inbox's first owner (e.g. "Europe/Berlin"), or None when they
    never set one (then UTC is theirs): the clock the owner's quiet hours and the agent's
    "current time" read."""
    cur = await conn.execute(
        "SELECT u.time_zone FROM rm_tenants.members m JOIN rm_tenants.users u ON u.user_id = m.user_id"
        " WHERE m.tenant_id = %s AND m.role = 'owner' ORDER BY m.added_at LIMIT 1",
        (tenant_id,),
    )
    row = await cur.fetchone()
    return None if row is None else row["time_zone"]


async def away(conn: Connection, tenant_id: str) -> Away | None:
    """The inbox's latest away period (on, or over), or None when it was never away."""
    return await one_row(
        conn,
        Away,
        "SELECT away_id, until, message, connection_ids, mode, started_at, ended_at, ended_reason"
        " FROM rm_tenants.away_periods WHERE tenant_id = %s ORDER BY started_at DESC, away_id LIMIT 1",
        (tenant_id,),
    )


async def away_ended_between(conn: Connection, tenant_id: str, start: datetime, end: datetime) -> Away | None:
    """The latest away period of the inbox that ended (or ran out) in [start, end)."""
    return await one_row(
        conn,
        Away,
        "SELECT away_id, until, message, connection_ids, mode, started_at, ended_at, ended_reason"
        " FROM rm_tenants.away_periods WHERE tenant_id = %s"
        " AND coalesce(ended_at, until) >= %s AND coalesce(ended_at, until) < %s"
        " ORDER BY coalesce(ended_at, until) DESC LIMIT 1",
        (tenant_id, start, end),
    )


class AwayOver(msgspec.Struct, frozen=True):
    tenant_id: str
    away_id: str


async def aways_run_out(conn: Connection, now: datetime, *, limit: int) -> list[AwayOver]:
    """Away periods whose ``until`` came and that are not ended yet, across tenants (owner role)."""
    cur = await conn.execute(
        "SELECT tenant_id, away_id FROM rm_tenants.away_periods WHERE ended_at IS NULL AND until <= %s"
        " ORDER BY until LIMIT %s",
        (now, limit),
    )
    return [msgspec.convert(r, AwayOver) for r in await cur.fetchall()]


class DigestOwed(msgspec.Struct, frozen=True):
    tenant_id: str  # the person's home inbox: what the digest covers
    user_id: str
    day: date  # today on their clock


async def digests_due(conn: Connection, now: datetime, *, limit: int) -> list[DigestOwed]:
    """People whose digest hour it is on their clock and whose digest of today is not due yet,
    across tenants (owner role). Only during that hour: a stack that was down then skips the day
    rather than send yesterday's morning in the afternoon."""
    cur = await conn.execute(
        "SELECT tenant_id, user_id, day FROM ("
        " SELECT tenant_id, user_id, digest_on, digest_hour,"
        " (%(now)s::timestamptz AT TIME ZONE coalesce(time_zone, 'UTC')) AS local,"
        " (%(now)s::timestamptz AT TIME ZONE coalesce(time_zone, 'UTC'))::date AS day"
        " FROM rm_tenants.users WHERE digest_hour IS NOT NULL) u"
        " WHERE extract(hour FROM local) = digest_hour AND (digest_on IS NULL OR digest_on < day)"
        " ORDER BY user_id LIMIT %(limit)s",
        {"now": now, "limit": limit},
    )
    return [msgspec.convert(r, DigestOwed) for r in await cur.fetchall()]
