"""PostgreSQL connections for the read models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

Connection = psycopg.AsyncConnection[Any]


async def connect(url: str, *, application_name: str = "moltbot") -> Connection:
    """A connection without server-side prepared statements.

    Read-model schemas are renamed under running workers when a rebuild swaps in, so
    every statement resolves its table names afresh instead of reusing a cached plan.
    """
    return await psycopg.AsyncConnection.connect(
        url,
        application_name=application_name,
        prepare_threshold=None,
        row_factory=dict_row,
        autocommit=True,  # transactions are explicit: `async with conn.transaction()`
    )


@asynccontextmanager
async def connection(url: str, *, application_name: str = "moltbot") -> AsyncIterator[Connection]:
    conn = await connect(url, application_name=application_name)
    try:
        yield conn
    finally:
        await conn.close()
