"""Password accounts (``gateway.credentials``): e-mail, password hash, verification.

The gateway's own table, never the event log, so an export of the log carries no secrets.
``tenant_id`` is the account's home inbox, where a sign-in lands first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from adapters.postgres.database import Connection

CREDENTIALS_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.credentials (
    email         text PRIMARY KEY,  -- lower-cased
    user_id       text NOT NULL UNIQUE,
    tenant_id     text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE gateway.credentials
    ADD COLUMN IF NOT EXISTS email_verified_at timestamptz,
    ADD COLUMN IF NOT EXISTS password_changed_at timestamptz;
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT ON gateway.credentials TO moltbot_gateway;
GRANT UPDATE (password_hash, email_verified_at, password_changed_at, tenant_id)
    ON gateway.credentials TO moltbot_gateway;
"""

_COLUMNS = "email, user_id, tenant_id, password_hash, email_verified_at"


class Credentials(msgspec.Struct, frozen=True):
    email: str
    user_id: str
    tenant_id: str  # the home inbox
    password_hash: str
    email_verified_at: datetime | None

    @property
    def verified(self) -> bool:
        return self.email_verified_at is not None


async def by_email(conn: Connection, email: str) -> Credentials | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM gateway.credentials WHERE email = %s", (email,))
    row: dict[str, Any] | None = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Credentials)


async def by_user(conn: Connection, user_id: str) -> Credentials | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM gateway.credentials WHERE user_id = %s", (user_id,))
    row: dict[str, Any] | None = await cur.fetchone()
    return None if row is None else msgspec.convert(row, Credentials)


async def create(
    conn: Connection, *, email: str, user_id: str, tenant_id: str, password_hash: str, verified: bool = False
) -> bool:
    """Add an account; False when the e-mail is taken."""
    cur = await conn.execute(
        "INSERT INTO gateway.credentials (email, user_id, tenant_id, password_hash, email_verified_at)"
        " VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END) ON CONFLICT (email) DO NOTHING"
        " RETURNING user_id",
        (email, user_id, tenant_id, password_hash, verified),
    )
    return await cur.fetchone() is not None


async def set_password(conn: Connection, user_id: str, password_hash: str, *, changed: bool = True) -> None:
    """Store a new hash; ``changed=False`` for a rehash of the same password."""
    await conn.execute(
        "UPDATE gateway.credentials SET password_hash = %s,"
        " password_changed_at = CASE WHEN %s THEN now() ELSE password_changed_at END WHERE user_id = %s",
        (password_hash, changed, user_id),
    )


async def mark_verified(conn: Connection, user_id: str) -> None:
    await conn.execute(
        "UPDATE gateway.credentials SET email_verified_at = coalesce(email_verified_at, now())"
        " WHERE user_id = %s",
        (user_id,),
    )


async def set_home(conn: Connection, user_id: str, tenant_id: str) -> None:
    """Where the next sign-in lands: the inbox switched to last."""
    await conn.execute(
        "UPDATE gateway.credentials SET tenant_id = %s WHERE user_id = %s", (tenant_id, user_id)
    )
