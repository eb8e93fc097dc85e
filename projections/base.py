"""What a read model declares, and how the runner drives it.

A projection names itself and its version, owns a set of tables (DDL written without a
schema: the runner sets ``search_path`` to the schema being built), and folds a batch
of events into them with bulk writes. It never reads the clock or the network: the same
events always give the same rows, which is what makes rebuild and verify possible.
"""

from __future__ import annotations

from typing import Protocol

from adapters.postgres.database import Connection
from domain.events import Event


class Rejected(Exception):
    """An event this read model cannot apply; it goes to the dead-letter stream."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Batch(Protocol):
    def add(self, seq: int, event: Event) -> None:
        """Take one event (in log order); raise :class:`Rejected` to dead-letter it."""

    async def write(self, conn: Connection) -> None:
        """Write everything added, inside the runner's transaction."""


class Projection(Protocol):
    name: str
    version: int
    tables: tuple[str, ...]
    handles: frozenset[str]  # the event types it folds; others are skipped

    def schema_sql(self) -> str:
        """CREATE TABLE statements (unqualified names)."""

    def index_sql(self) -> str:
        """Secondary indexes, created after a bulk rebuild rather than maintained during it."""

    def new_batch(self) -> Batch: ...


def consumer_name(projection: Projection) -> str:
    """The durable consumer of a projection: ``proj-<name>-v<version>``."""
    return f"proj-{projection.name}-v{projection.version}"


def live_schema(projection: Projection) -> str:
    return f"rm_{projection.name}"
