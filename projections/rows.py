"""Reading query results into Structs, for the read models' queries (``*_queries.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, LiteralString, TypeVar

import msgspec
from psycopg.abc import Params

from adapters.postgres.database import Connection

T = TypeVar("T")


async def one_row(conn: Connection, into: type[T], query: LiteralString, params: Params) -> T | None:
    """The query's first row as ``into``, or None when it found none."""
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, into)


async def streamed(
    conn: Connection, query: LiteralString, params: Params | None = None, *, batch: int = 2000
) -> AsyncIterator[dict[str, Any]]:
    """Every row of ``query``, fetched ``batch`` at a time through a server-side cursor (in the
    caller's transaction), so a large read holds one batch in memory at once."""
    async with conn.cursor(name=f"streamed_{id(query):x}") as cur:
        cur.itersize = batch
        await cur.execute(query, params)
        async for row in cur:
            yield row
