"""Sign-in sessions and their refresh tokens (the gateway's own tables).

A sign-in starts a *session* (``gateway.sessions``: device, address, last use). Its refresh
tokens rotate: each works once, and each refresh answers a new pair of the same session
(``gateway.refresh_tokens`` keeps only their SHA-256). A used token presented again means
two parties hold it, so the session ends. Access tokens carry the session's id (``sid``), and
every request checks that its session has not ended (:func:`standing`), so ending a session
— log-out, "sign out this device", a password reset, reuse — ends its access tokens at once.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from adapters.postgres.database import Connection
from gateway.auth import Caller, TokenPair, Tokens, token_digest

SESSIONS_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.sessions (
    session_id   text PRIMARY KEY,
    user_id      text NOT NULL,
    device       text NOT NULL,   -- from the User-Agent at sign-in, e.g. "Firefox on Linux"
    ip           text NOT NULL,   -- the address of the sign-in
    last_ip      text NOT NULL,   -- the address of the last refresh
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text            -- logged_out, revoked, password_reset, token_reused, ...
);
CREATE INDEX IF NOT EXISTS sessions_user ON gateway.sessions (user_id, last_used_at DESC);
CREATE TABLE IF NOT EXISTS gateway.refresh_tokens (
    token_hash text PRIMARY KEY,  -- SHA-256 of the token; the token itself is never stored
    family_id  text NOT NULL,     -- the session it belongs to
    user_id    text NOT NULL,
    tenant_id  text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz        -- exchanged for a new pair: presenting it again is reuse
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON gateway.refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON gateway.refresh_tokens (user_id, expires_at);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.sessions, gateway.refresh_tokens TO moltbot_gateway;
"""

EndReason = Literal["logged_out", "revoked", "password_reset", "password_changed", "token_reused", "removed"]


class SessionView(msgspec.Struct, frozen=True):
    """A sign-in as ``GET /v1/me/sessions`` shows it."""

    id: str
    device: str
    ip: str
    last_ip: str
    created_at: datetime
    last_used_at: datetime
    current: bool


class Presented(msgspec.Struct, frozen=True):
    """A presented refresh token's row with its session's state."""

    session_id: str
    used: bool
    ended: bool


def device_name(user_agent: str | None) -> str:
    """A short, human name of the client from its User-Agent ("Firefox on Linux", "moltbot CLI")."""
    agent = user_agent or ""
    if not agent:
        return "Unknown device"
    if agent.startswith("moltbot"):
        return "moltbot CLI"
    if agent.startswith("python-httpx"):
        return "API client (httpx)"
    browser = next(
        (name for pattern, name in _BROWSERS if re.search(pattern, agent)),
        agent.split("/")[0][:40] or "Browser",
    )
    system = next((name for pattern, name in _SYSTEMS if re.search(pattern, agent)), "")
    return f"{browser} on {system}" if system else browser


_BROWSERS = (
    (r"Edg/", "Edge"),
    (r"Firefox/", "Firefox"),
    (r"HeadlessChrome/|Chrome/|Chromium/", "Chrome"),
    (r"Safari/", "Safari"),
    (r"curl/", "curl"),
)
_SYSTEMS = (
    (r"iPhone|iPad", "iOS"),
    (r"Android", "Android"),
    (r"Mac OS X|Macintosh", "macOS"),
    (r"Windows", "Windows"),
    (r"Linux", "Linux"),
)


async def start(
    conn: Connection, tokens: Tokens, who: Caller, *, device: str, ip: str
) -> tuple[Caller, TokenPair]:
    """A new session for ``who`` and its first token pair (in the caller's transaction)."""
    session_id = uuid.uuid4().hex
    await conn.execute(
        "INSERT INTO gateway.sessions (session_id, user_id, device, ip, last_ip, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))",
        (session_id, who.user_id, device[:80], ip, ip, tokens.refresh_ttl),
    )
    caller = msgspec.structs.replace(who, session_id=session_id)
    return caller, await issue(conn, tokens, caller)


async def issue(conn: Connection, tokens: Tokens, who: Caller) -> TokenPair:
    """A new token pair of ``who``'s session, its refresh token recorded."""
    if who.session_id is None:
        raise ValueError("a token pair belongs to a session")
    pair = tokens.issue(who)
    # Expired tokens are refused by their signature's exp already: forget the user's old ones.
    await conn.execute(
        "DELETE FROM gateway.refresh_tokens WHERE user_id = %s AND expires_at < now()", (who.user_id,)
    )
    await conn.execute(
        "INSERT INTO gateway.refresh_tokens (token_hash, family_id, user_id, tenant_id, expires_at)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
        (token_digest(pair.refresh_token), who.session_id, who.user_id, who.tenant_id, tokens.refresh_ttl),
    )
    return pair


async def presented(conn: Connection, refresh_token: str) -> Presented | None:
    """The presented refresh token's state, locked for the exchange; None when unknown."""
    cur = await conn.execute(
        "SELECT t.family_id, t.used_at IS NOT NULL AS used, s.ended_at IS NOT NULL AS ended"
        " FROM gateway.refresh_tokens t JOIN gateway.sessions s ON s.session_id = t.family_id"
        " WHERE t.token_hash = %s FOR UPDATE OF t",
        (token_digest(refresh_token),),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        return None
    return Presented(session_id=row["family_id"], used=row["used"], ended=row["ended"])


async def mark_used(conn: Connection, refresh_token: str, *, ip: str) -> None:
    """The token has been exchanged; its session was used just now from ``ip``."""
    await conn.execute(
        "WITH used AS (UPDATE gateway.refresh_tokens SET used_at = now() WHERE token_hash = %s"
        " RETURNING family_id) UPDATE gateway.sessions SET last_used_at = now(), last_ip = %s"
        " WHERE session_id = (SELECT family_id FROM used)",
        (token_digest(refresh_token), ip),
    )


async def end(conn: Connection, session_id: str, reason: EndReason, *, user_id: str | None = None) -> bool:
    """End one session (of ``user_id`` when given); whether it was still going."""
    cur = await conn.execute(
        "UPDATE gateway.sessions SET ended_at = now(), end_reason = %s"
        " WHERE session_id = %s AND ended_at IS NULL AND (%s::text IS NULL OR user_id = %s)",
        (reason, session_id, user_id, user_id),
    )
    return cur.rowcount > 0


async def end_by_token(conn: Connection, refresh_token: str, reason: EndReason) -> None:
    """End the session a refresh token belongs to."""
    await conn.execute(
        "UPDATE gateway.sessions SET ended_at = now(), end_reason = %s WHERE ended_at IS NULL"
        " AND session_id = (SELECT family_id FROM gateway.refresh_tokens WHERE token_hash = %s)",
        (reason, token_digest(refresh_token)),
    )


async def end_all(conn: Connection, user_id: str, reason: EndReason, *, keep: str | None = None) -> int:
    """End every session of the user (but ``keep``); how many were going."""
    cur = await conn.execute(
        "UPDATE gateway.sessions SET ended_at = now(), end_reason = %s"
        " WHERE user_id = %s AND ended_at IS NULL AND session_id IS DISTINCT FROM %s",
        (reason, user_id, keep),
    )
    return cur.rowcount


async def listing(conn: Connection, user_id: str, current: str | None) -> list[SessionView]:
    """The user's sessions still going, most recently used first."""
    cur = await conn.execute(
        "SELECT session_id AS id, device, ip, last_ip, created_at, last_used_at, session_id = %s AS current"
        " FROM gateway.sessions WHERE user_id = %s AND ended_at IS NULL AND expires_at > now()"
        " ORDER BY last_used_at DESC LIMIT 100",
        (current or "", user_id),
    )
    return [msgspec.convert(row, SessionView) for row in await cur.fetchall()]


class Standing(msgspec.Struct, frozen=True):
    role: str | None  # in the members read model now; None: not a member (as far as it has read)
    going: bool  # the session has not ended (always, for tokens without one)
    members_seq: int  # how far the members read model has read the log


async def standing(conn: Connection, who: Caller, *, members: bool = True) -> Standing:
    """The caller's standing now — one query, in a transaction of the caller's tenant;
    ``members=False`` before the members read model exists (nothing read yet)."""
    if not members:
        cur = await conn.execute(
            "SELECT %s::text IS NULL OR EXISTS (SELECT 1 FROM gateway.sessions WHERE session_id = %s"
            " AND ended_at IS NULL) AS going",
            (who.session_id, who.session_id),
        )
        found = await cur.fetchone()
        return Standing(None, bool(found and found["going"]), 0)
    cur = await conn.execute(
        "SELECT (SELECT role FROM rm_tenants.members WHERE tenant_id = %s AND user_id = %s) AS role,"
        " (%s::text IS NULL OR EXISTS (SELECT 1 FROM gateway.sessions WHERE session_id = %s"
        " AND ended_at IS NULL)) AS going, coalesce((SELECT last_seq FROM moltbot.projection_checkpoints"
        " WHERE projection = 'tenants' AND slot = 'live'), 0) AS members_seq",
        (who.tenant_id, who.user_id, who.session_id, who.session_id),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    assert row is not None  # a SELECT without FROM answers one row
    return Standing(row["role"], bool(row["going"]), int(row["members_seq"]))
