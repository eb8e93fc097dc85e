"""What connectors look up in PostgreSQL: which connections of a kind should be live, whose
they are, and their credentials from the vault. Connectors run as the owner role: they
serve every tenant, and the vault's row-level security is for the confined role."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from adapters.vault.cipher import Keyring
from adapters.vault.store import CredentialStore


class ConnectionDirectory:
    def __init__(self, database_url: str, keyring: Keyring) -> None:
        self._keyring = keyring
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
        )

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def live(self, channel: str) -> set[str]:
        """Connections of ``channel`` that should have a session: not deleted, not waiting
        for a person to act (a revoked token stays down until it is connected again)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT connection_id FROM rm_connections.connections"
                " WHERE channel = %s AND deleted_at IS NULL AND state <> 'action_required'",
                (channel,),
            )
            return {row["connection_id"] for row in await cur.fetchall()}

    async def credentials(self, connection_id: str) -> dict[str, str]:
        """The connection's secret, opened from the vault ({} when it has none)."""
        return (await self.owner_and_credentials(connection_id))[1]

    async def owner_and_credentials(self, connection_id: str) -> tuple[str | None, dict[str, str]]:
        """(tenant, secret) of a connection, in one connection from the pool."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tenant_id FROM rm_connections.connections WHERE connection_id = %s", (connection_id,)
            )
            row = await cur.fetchone()
            if row is None:
                return None, {}
            tenant_id = str(row["tenant_id"])
            return tenant_id, await CredentialStore(conn, self._keyring).get(tenant_id, connection_id) or {}
