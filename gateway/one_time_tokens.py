"""Single-use tokens sent by mail: password resets, e-mail verifications and invitations.

Only a token's SHA-256 is stored. :func:`take` uses a token up in one statement (it must be
unused and unexpired), so two clicks on one link cannot both succeed. A new reset or
verification mail makes the earlier ones of that address void.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from adapters.postgres.database import Connection

ONE_TIME_TOKENS_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.one_time_tokens (
    token_hash text PRIMARY KEY,
    id         text NOT NULL UNIQUE,  -- what the API names it by (an invitation's id)
    purpose    text NOT NULL,          -- password_reset, verify_email, invitation
    email      text NOT NULL,
    user_id    text,                   -- the account (resets, verifications)
    tenant_id  text,                   -- the inbox (invitations)
    role       text,                   -- the role offered (invitations)
    created_by text,                   -- who invited
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX IF NOT EXISTS one_time_tokens_email ON gateway.one_time_tokens (email, purpose);
CREATE INDEX IF NOT EXISTS one_time_tokens_tenant ON gateway.one_time_tokens (tenant_id, purpose);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.one_time_tokens TO moltbot_gateway;
"""

Purpose = Literal["password_reset", "verify_email", "invitation"]
_COLUMNS = "id, purpose, email, user_id, tenant_id, role, created_by, created_at, expires_at"


class OneTimeToken(msgspec.Struct, frozen=True):
    id: str
    purpose: str
    email: str
    user_id: str | None
    tenant_id: str | None
    role: str | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(
    conn: Connection,
    purpose: Purpose,
    email: str,
    *,
    valid_s: int,
    user_id: str | None = None,
    tenant_id: str | None = None,
    role: str | None = None,
    created_by: str | None = None,
) -> tuple[str, OneTimeToken]:
    """A new token (to mail; never stored) and its row."""
    if purpose != "invitation":  # one reset or verification link at a time
        await conn.execute(
            "UPDATE gateway.one_time_tokens SET used_at = now()"
            " WHERE email = %s AND purpose = %s AND used_at IS NULL",
            (email, purpose),
        )
    token = secrets.token_urlsafe(32)
    cur = await conn.execute(
        "INSERT INTO gateway.one_time_tokens (token_hash, id, purpose, email, user_id, tenant_id, role,"
        " created_by, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
        f" RETURNING {_COLUMNS}",
        (
            _digest(token),
            uuid.uuid4().hex[:16],
            purpose,
            email,
            user_id,
            tenant_id,
            role,
            created_by,
            valid_s,
        ),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return token, msgspec.convert(row, OneTimeToken)


async def peek(conn: Connection, token: str, purpose: Purpose) -> OneTimeToken | None:
    """The token's row if it is unused and unexpired, without using it up."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM gateway.one_time_tokens WHERE token_hash = %s AND purpose = %s"
        " AND used_at IS NULL"
        " AND expires_at > now()",
        (_digest(token), purpose),
    )
    return await _one(cur)


async def take(conn: Connection, token: str, purpose: Purpose) -> OneTimeToken | None:
    """Use the token up; its row, or None when it is unknown, used or expired."""
    cur = await conn.execute(
        "UPDATE gateway.one_time_tokens SET used_at = now() WHERE token_hash = %s AND purpose = %s"
        " AND used_at IS NULL AND expires_at > now()"
        f" RETURNING {_COLUMNS}",
        (_digest(token), purpose),
    )
    return await _one(cur)


async def _one(cur: Any) -> OneTimeToken | None:
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, OneTimeToken)


async def invitations(conn: Connection, tenant_id: str) -> list[OneTimeToken]:
    """The inbox's invitations still open, newest first."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM gateway.one_time_tokens WHERE tenant_id = %s AND purpose = 'invitation'"
        " AND used_at IS NULL AND expires_at > now() ORDER BY created_at DESC LIMIT 200",
        (tenant_id,),
    )
    return [msgspec.convert(row, OneTimeToken) for row in await cur.fetchall()]


async def withdraw(conn: Connection, tenant_id: str, invitation_id: str) -> OneTimeToken | None:
    """Void an open invitation of the inbox; its row, or None when there is no such open one."""
    cur = await conn.execute(
        "UPDATE gateway.one_time_tokens SET used_at = now() WHERE id = %s AND tenant_id = %s"
        " AND purpose = 'invitation' AND used_at IS NULL"
        f" RETURNING {_COLUMNS}",
        (invitation_id, tenant_id),
    )
    return await _one(cur)
