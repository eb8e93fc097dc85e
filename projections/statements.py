"""A batch made of ordered SQL statements, for low-volume read models.

Tenants, members, connections and agents change rarely: each event becomes one or two
statements, sent in one pipeline round trip per batch. Most events need no more than
:func:`statement`: one query whose parameters are named after the event's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from adapters.postgres.database import Connection
from domain.events import Event
from projections.base import Batch

Statement = tuple[str, dict[str, Any] | tuple[Any, ...]]
Handler = Callable[[int, Any], list[Statement]]


def event_fields(event: Event) -> dict[str, Any]:
    """An event as named query parameters: each field of its ``data`` by its own name, and
    ``aggregate_id``, ``tenant_id`` and ``occurred_at`` from the envelope."""
    data = msgspec.structs.asdict(event)["data"]
    return msgspec.structs.asdict(data) | {
        "aggregate_id": event.aggregate_id,
        "tenant_id": event.tenant_id,
        "occurred_at": event.occurred_at,
    }


def statement(query: str) -> Handler:
    """The handler of an event that becomes ``query``, run with :func:`event_fields`."""

    def handle(seq: int, event: Event) -> list[Statement]:
        return [(query, event_fields(event))]

    return handle


def erase_tenant(tables: tuple[str, ...]) -> Handler:
    """The handler of ``tenant.erased``: every row of the tenant goes, from every table."""

    def handle(seq: int, event: Event) -> list[Statement]:
        erased = {"tenant_id": event.tenant_id}
        return [(f"DELETE FROM {table} WHERE tenant_id = %(tenant_id)s", erased) for table in tables]

    return handle


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


class StatementProjection:
    """A read model folded by :class:`StatementBatch`: a subclass names itself and declares
    its tables (``schema``, ``indexes``) and one handler per event type it folds."""

    name: str
    version: int
    tables: tuple[str, ...]
    schema: ClassVar[str]
    indexes: ClassVar[str]
    handlers: ClassVar[dict[str, Handler]]
    handles: frozenset[str]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        # Every read model forgets an erased tenant: all its rows, from all its tables.
        cls.handlers = {**cls.handlers, "tenant.erased": erase_tenant(cls.tables)}
        cls.handles = frozenset(cls.handlers)

    def schema_sql(self) -> str:
        return self.schema

    def index_sql(self) -> str:
        return self.indexes

    def new_batch(self) -> Batch:
        return StatementBatch(self.handlers)
