"""What connectors look up: which connections of a kind should be live, whose they are (from
the read models, through ``domain.reads.ConnectionReads``), and their credentials from the
vault. Connectors run as the owner role: they serve every tenant, and the vault's row-level
security is for the confined role."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from adapters.postgres import audit
from adapters.vault.cipher import Keyring
from adapters.vault.store import CredentialStore
from domain.reads import ConnectionReads


class ConnectionDirectory:
    def __init__(self, pool: AsyncConnectionPool[Any], keyring: Keyring, reads: ConnectionReads) -> None:
        self.pool = pool  # opened and closed here; ``reads`` may share it
        self._keyring = keyring
        self._reads = reads

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def live(self, channel: str) -> set[str]:
        """Connections of ``channel`` that should have a session: not deleted, not waiting
        for a person to act (a revoked token stays down until it is connected again)."""
        return await self._reads.live(channel)

    async def credentials(self, connection_id: str) -> dict[str, str]:
        """The connection's secret, opened from the vault ({} when it has none)."""
        return (await self.owner_and_credentials(connection_id))[1]

    async def owner_and_credentials(self, connection_id: str) -> tuple[str | None, dict[str, str]]:
        """(tenant, secret) of a connection."""
        tenant_id = await self._reads.owner(connection_id)
        if tenant_id is None:
            return None, {}
        async with self.pool.connection() as conn:
            secret = await CredentialStore(conn, self._keyring).get(tenant_id, connection_id) or {}
            await audit.count(conn, tenant_id, "credential.read", actor="connector", target=connection_id)
        return tenant_id, secret
