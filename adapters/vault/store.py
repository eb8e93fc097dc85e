"""Channel credentials (bot tokens, OAuth tokens), encrypted, in PostgreSQL ``vault.credentials``.

Secrets live here and nowhere else: never in the event log (an export carries none),
never in a log line (only connection and key ids are logged). Each row is sealed with
the owner ``<tenant_id>:<connection_id>`` as associated data, so a row copied onto
another connection does not decrypt. Rotation re-seals rows one short transaction at a
time, so a connector reading a credential waits at most for one row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
import structlog

from adapters.postgres.database import Connection
from adapters.vault.cipher import Keyring, Sealed, VaultError

log = structlog.get_logger()

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS vault;
CREATE TABLE IF NOT EXISTS vault.credentials (
    connection_id text PRIMARY KEY,
    tenant_id     text NOT NULL,
    kind          text NOT NULL,  -- what the secret is, e.g. 'telegram_bot', 'slack_oauth'
    key_id        text NOT NULL,  -- the vault key it is sealed under
    nonce         bytea NOT NULL,
    ciphertext    bytea NOT NULL,  -- AES-256-GCM, tag included
    updated_at    timestamptz NOT NULL DEFAULT now()
);
"""

Progress = Callable[[int, int], None]  # (rows handled, rows to handle)
Outcome = Literal["rotated", "current", "gone", "failed"]


class RotationReport(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str  # the current key, which every rotated row is now sealed under
    rotated: int
    already_current: int
    failed: list[str]  # connection ids whose ciphertext could not be opened


async def ensure_schema(conn: Connection) -> None:
    """Create ``vault.credentials`` if missing; safe when several processes start at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.vault.schema'))")
        await conn.execute(SCHEMA_SQL)


# The gateway and the agent read and write a tenant's secrets under the confined role,
# where row-level security keeps each transaction to its tenant (``moltbot.tenant_id``);
# connectors and rotation run as the owner and see every row.
CONFINED_SQL = """
GRANT USAGE ON SCHEMA vault TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON vault.credentials TO moltbot_gateway;
ALTER TABLE vault.credentials ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_only ON vault.credentials;
CREATE POLICY tenant_only ON vault.credentials TO moltbot_gateway
    USING (tenant_id = current_setting('moltbot.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('moltbot.tenant_id', true));
"""


async def ensure_confined_access(conn: Connection) -> None:
    """The schema, plus the confined role's tenant-scoped access (the role must exist)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.vault.schema'))")
        await conn.execute(SCHEMA_SQL)
        await conn.execute(CONFINED_SQL)


def associated_data(tenant_id: str, connection_id: str) -> bytes:
    """The owner a ciphertext is bound to."""
    if ":" in tenant_id:
        raise ValueError("a tenant id cannot contain ':'")  # it would make the owner ambiguous
    return f"{tenant_id}:{connection_id}".encode()


class CredentialStore:
    """Encrypted secrets per connection, on one autocommit connection (see ``database.connect``)."""

    def __init__(self, conn: Connection, keyring: Keyring) -> None:
        self._conn = conn
        self._keyring = keyring

    async def put(self, tenant_id: str, connection_id: str, kind: str, secret: dict[str, str]) -> None:
        """Store (or replace) a connection's secret, sealed under the current key."""
        sealed = self._keyring.encrypt(
            msgspec.json.encode(secret), associated=associated_data(tenant_id, connection_id)
        )
        await self._conn.execute(
            """
            INSERT INTO vault.credentials (connection_id, tenant_id, kind, key_id, nonce, ciphertext)
            VALUES (%(connection_id)s, %(tenant_id)s, %(kind)s, %(key_id)s, %(nonce)s, %(ciphertext)s)
            ON CONFLICT (connection_id) DO UPDATE SET
                tenant_id = excluded.tenant_id, kind = excluded.kind, key_id = excluded.key_id,
                nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = now()
            """,
            {
                "connection_id": connection_id,
                "tenant_id": tenant_id,
                "kind": kind,
                "key_id": sealed.key_id,
                "nonce": sealed.nonce,
                "ciphertext": sealed.ciphertext,
            },
        )
        log.info(
            "credential_stored",
            tenant_id=tenant_id,
            connection_id=connection_id,
            kind=kind,
            key_id=sealed.key_id,
        )

    async def get(self, tenant_id: str, connection_id: str) -> dict[str, str] | None:
        """The connection's secret, or ``None`` if it has none (or it belongs to another tenant).

        Raises :class:`VaultError` when the row cannot be opened (unknown key, tampered).
        """
        cur = await self._conn.execute(
            "SELECT key_id, nonce, ciphertext FROM vault.credentials"
            " WHERE connection_id = %(connection_id)s AND tenant_id = %(tenant_id)s",
            {"connection_id": connection_id, "tenant_id": tenant_id},
        )
        row = await cur.fetchone()
        if row is None:
            return None
        plaintext = self._keyring.decrypt(_sealed(row), associated=associated_data(tenant_id, connection_id))
        return msgspec.json.decode(plaintext, type=dict[str, str])

    async def delete(self, connection_id: str) -> bool:
        """Forget a connection's secret; ``True`` if there was one."""
        cur = await self._conn.execute(
            "DELETE FROM vault.credentials WHERE connection_id = %(connection_id)s",
            {"connection_id": connection_id},
        )
        deleted = cur.rowcount > 0
        if deleted:
            log.info("credential_deleted", connection_id=connection_id)
        return deleted

    async def rotate(self, *, batch: int = 100, progress: Progress | None = None) -> RotationReport:
        """Re-seal every row not under the current key, one row per transaction.

        Rows are visited in connection id order, so a row that fails (its key is gone, or
        it was tampered with) is reported once and never retried in the same run.
        """
        current = self._keyring.current_id
        already_current, to_rotate = await self._counts(current)
        rotated, handled, after = 0, 0, ""
        failed: list[str] = []
        while True:
            connection_ids = await self._stale_ids(current, after=after, limit=batch)
            if not connection_ids:
                break
            for connection_id in connection_ids:
                outcome = await self._rotate_one(connection_id)
                rotated += outcome == "rotated"
                already_current += outcome == "current"
                if outcome == "failed":
                    failed.append(connection_id)
                handled += 1
                if progress:
                    progress(handled, max(to_rotate, handled))
            after = connection_ids[-1]
        log.info(
            "credentials_rotated",
            key_id=current,
            rotated=rotated,
            already_current=already_current,
            failed=len(failed),
        )
        return RotationReport(key_id=current, rotated=rotated, already_current=already_current, failed=failed)

    async def _counts(self, current: str) -> tuple[int, int]:
        cur = await self._conn.execute(
            "SELECT count(*) FILTER (WHERE key_id = %(current)s) AS current,"
            " count(*) FILTER (WHERE key_id <> %(current)s) AS stale FROM vault.credentials",
            {"current": current},
        )
        row = await cur.fetchone()
        assert row is not None  # an aggregate always returns one row
        return int(row["current"]), int(row["stale"])

    async def _stale_ids(self, current: str, *, after: str, limit: int) -> list[str]:
        cur = await self._conn.execute(
            "SELECT connection_id FROM vault.credentials"
            " WHERE key_id <> %(current)s AND connection_id > %(after)s"
            " ORDER BY connection_id LIMIT %(limit)s",
            {"current": current, "after": after, "limit": limit},
        )
        return [row["connection_id"] for row in await cur.fetchall()]

    async def _rotate_one(self, connection_id: str) -> Outcome:
        """``rotated``, ``current`` (re-sealed meanwhile), ``gone`` (deleted meanwhile) or ``failed``."""
        async with self._conn.transaction():
            cur = await self._conn.execute(
                "SELECT tenant_id, key_id, nonce, ciphertext FROM vault.credentials"
                " WHERE connection_id = %(connection_id)s FOR UPDATE",
                {"connection_id": connection_id},
            )
            row = await cur.fetchone()
            if row is None:
                return "gone"
            if row["key_id"] == self._keyring.current_id:
                return "current"
            associated = associated_data(row["tenant_id"], connection_id)
            try:
                plaintext = self._keyring.decrypt(_sealed(row), associated=associated)
            except VaultError as exc:
                log.warning(
                    "credential_rotation_failed",
                    connection_id=connection_id,
                    key_id=row["key_id"],
                    error=str(exc),
                )
                return "failed"
            sealed = self._keyring.encrypt(plaintext, associated=associated)
            await self._conn.execute(
                "UPDATE vault.credentials SET key_id = %(key_id)s, nonce = %(nonce)s,"
                " ciphertext = %(ciphertext)s, updated_at = now() WHERE connection_id = %(connection_id)s",
                {
                    "key_id": sealed.key_id,
                    "nonce": sealed.nonce,
                    "ciphertext": sealed.ciphertext,
                    "connection_id": connection_id,
                },
            )
        log.info(
            "credential_rotated", connection_id=connection_id, from_key_id=row["key_id"], key_id=sealed.key_id
        )
        return "rotated"


def _sealed(row: dict[str, Any]) -> Sealed:
    return Sealed(key_id=row["key_id"], nonce=bytes(row["nonce"]), ciphertext=bytes(row["ciphertext"]))
