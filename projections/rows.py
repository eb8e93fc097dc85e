"""Reading query results into Structs, for the read models' queries (``*_queries.py``)."""

from __future__ import annotations

from typing import LiteralString, TypeVar

import msgspec
from psycopg.abc import Params

from adapters.postgres.database import Connection

T = TypeVar("T")


async def one_row(conn: Connection, into: type[T], query: LiteralString, params: Params) -> T | None:
    """The query's first row as ``into``, or None when it found none."""
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return None if row is None else msgspec.convert(row, into)
