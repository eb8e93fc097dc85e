"""A batch made of ordered SQL statements, for low-volume read models.

Tenants, members and connections change rarely: each event becomes one or two
statements, sent in one pipeline round trip per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.postgres.database import Connection
from domain.events import Event

Statement = tuple[str, dict[str, Any] | tuple[Any, ...]]
Handler = Callable[[int, Any], list[Statement]]


class StatementBatch:
    def __init__(self, handlers: dict[str, Handler]) -> None:
        self._handlers = handlers
        self._statements: list[Statement] = []

    def add(self, seq: int, event: Event) -> None:
        self._statements.extend(self._handlers[event.type](seq, event))

    async def write(self, conn: Connection) -> None:
        async with conn.pipeline(), conn.cursor() as cur:
            for query, params in self._statements:
                await cur.execute(query, params)  # type: ignore[arg-type]
