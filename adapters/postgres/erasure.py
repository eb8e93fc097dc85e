"""What an erased tenant leaves in the database outside the read models, deleted — run as the
database's owner role, in one transaction (docs/privacy.md). The read models drop their rows
when they fold ``tenant.erased``; the log's personal fields are unreadable once the data
keys are shredded (``adapters/vault/sealing.py``).
"""

from __future__ import annotations

import msgspec

from adapters.postgres.database import Connection

# Tables keyed by the tenant, in every schema the product owns (those that exist here).
TENANT_TABLES = (
    "gateway.webchat_widgets",
    "gateway.webhooks",
    "gateway.oauth_states",
    "gateway.pairing_codes",
    "gateway.idempotency",
    "gateway.one_time_tokens",
    "gateway.refresh_tokens",
    "gateway.identities",
    "audit.entries",
    "vault.credentials",
    "whatsapp.devices",
    "billing.customers",
    "billing.meter_reports",
    "push.subscriptions",
    "push.notices",
)
# Tables keyed by a person, for the accounts that go with it.
USER_TABLES = (
    "gateway.credentials",
    "gateway.sessions",
    "gateway.refresh_tokens",
    "gateway.two_factor",
    "gateway.recovery_codes",
    "gateway.identities",
    "push.subscriptions",
)


class Forgotten(msgspec.Struct, frozen=True):
    rows: int  # rows deleted, in every table together
    accounts: int  # people whose account went with it (no other inbox)


async def people(conn: Connection, tenant_id: str) -> dict[str, list[str]]:
    """The tenant's members, each with the other inboxes they belong to."""
    cur = await conn.execute(
        "SELECT m.user_id, coalesce(array_agg(o.tenant_id) FILTER (WHERE o.tenant_id IS NOT NULL), '{}')"
        " AS elsewhere FROM rm_tenants.members m LEFT JOIN rm_tenants.members o"
        " ON o.user_id = m.user_id AND o.tenant_id <> m.tenant_id WHERE m.tenant_id = %s GROUP BY m.user_id",
        (tenant_id,),
    )
    return {row["user_id"]: list(row["elsewhere"]) for row in await cur.fetchall()}


async def paying(conn: Connection, tenant_id: str) -> bool:
    """Whether the tenant has a Stripe subscription still running (erase only after it ends)."""
    if not await _existing(conn, ("billing.customers",)):
        return False
    cur = await conn.execute(
        "SELECT 1 FROM billing.customers WHERE tenant_id = %s"
        " AND status IN ('active', 'trialing', 'past_due')",
        (tenant_id,),
    )
    return await cur.fetchone() is not None


async def forget_tenant(conn: Connection, tenant_id: str, members: dict[str, list[str]]) -> Forgotten:
    """Delete the tenant's rows, and the accounts of ``members`` who belong nowhere else
    (the others land in another of their inboxes from now on). In the caller's transaction."""
    rows = 0
    for table in await _existing(conn, TENANT_TABLES):
        cur = await conn.execute(f"DELETE FROM {table} WHERE tenant_id = %s", (tenant_id,))
        rows += cur.rowcount
    leaving = [user for user, elsewhere in members.items() if not elsewhere]
    for user_id, elsewhere in members.items():
        if elsewhere:
            await conn.execute(
                "UPDATE gateway.credentials SET tenant_id = %s WHERE user_id = %s AND tenant_id = %s",
                (elsewhere[0], user_id, tenant_id),
            )
    if leaving:
        await conn.execute(
            "DELETE FROM gateway.one_time_tokens WHERE email IN"
            " (SELECT email FROM gateway.credentials WHERE user_id = ANY(%s))",
            (leaving,),
        )
        for table in await _existing(conn, USER_TABLES):
            cur = await conn.execute(f"DELETE FROM {table} WHERE user_id = ANY(%s)", (leaving,))
            rows += cur.rowcount
    return Forgotten(rows=rows, accounts=len(leaving))


async def forget_account(conn: Connection, user_id: str) -> int:
    """Delete a person's account (credentials, sessions, second factor, links); rows deleted."""
    rows = 0
    await conn.execute(
        "DELETE FROM gateway.one_time_tokens WHERE email IN"
        " (SELECT email FROM gateway.credentials WHERE user_id = %s)",
        (user_id,),
    )
    for table in await _existing(conn, USER_TABLES):
        cur = await conn.execute(f"DELETE FROM {table} WHERE user_id = %s", (user_id,))
        rows += cur.rowcount
    return rows


async def _existing(conn: Connection, tables: tuple[str, ...]) -> list[str]:
    """The tables of ``tables`` this database has (a deployment without billing has none of its)."""
    cur = await conn.execute(
        "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL", (list(tables),)
    )
    return [row["t"] for row in await cur.fetchall()]
