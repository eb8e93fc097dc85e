"""What connectors read about connections (``domain.reads.ConnectionReads``), across every
tenant: connectors run as the owner role, they serve every tenant."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from projections import connections_queries


class ConnectionReadModel:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def live(self, channel: str) -> set[str]:
        async with self._pool.connection() as conn:
            return await connections_queries.live(conn, channel)

    async def owner(self, connection_id: str) -> str | None:
        async with self._pool.connection() as conn:
            return await connections_queries.owner(conn, connection_id)
