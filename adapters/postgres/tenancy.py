"""The one way into a tenant's rows, and the one wait for the read models.

The gateway and the agent read as the confined role (``SET ROLE moltbot_gateway``) in a
transaction whose ``moltbot.tenant_id`` setting row-level security holds every query to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from adapters.postgres.applied import RECHECK, AppliedSignal
from adapters.postgres.database import Connection


def pool(database_url: str, *, max_size: int, confined: bool = True) -> AsyncConnectionPool[Any]:
    """A pool (opened by the caller) of autocommit connections with rows as dicts; ``confined``:
    each connection acts as the confined role, so only its tenant's rows are visible."""

    async def as_confined_role(conn: Connection) -> None:
        await conn.execute("SET ROLE moltbot_gateway")  # database.CONFINED_ROLE

    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        open=False,
        configure=as_confined_role if confined else None,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
    )


@contextlib.asynccontextmanager
async def tenant_transaction(
    connections: AsyncConnectionPool[Any], tenant_id: str
) -> AsyncIterator[Connection]:
    """A transaction that row-level security confines to ``tenant_id``."""
    async with connections.connection() as conn, conn.transaction():
        await conn.execute("SELECT set_config('moltbot.tenant_id', %s, true)", (tenant_id,))
        yield conn


@contextlib.asynccontextmanager
async def user_transaction(connections: AsyncConnectionPool[Any], user_id: str) -> AsyncIterator[Connection]:
    """A transaction that sees the inboxes ``user_id`` is a member of (and nothing of their
    content): for listing and switching inboxes."""
    async with connections.connection() as conn, conn.transaction():
        await conn.execute("SELECT set_config('moltbot.user_id', %s, true)", (user_id,))
        yield conn


async def _live_checkpoints(
    connections: AsyncConnectionPool[Any], read_models: Collection[str]
) -> dict[str, int]:
    """The live checkpoint of each of ``read_models`` that has one, a pooled connection held
    only for the look."""
    async with connections.connection() as conn:
        cur = await conn.execute(
            "SELECT projection, last_seq FROM moltbot.projection_checkpoints"
            " WHERE slot = 'live' AND projection = ANY(%s)",
            (sorted(read_models),),
        )
        return {row["projection"]: int(row["last_seq"]) for row in await cur.fetchall()}


async def applied_seq(connections: AsyncConnectionPool[Any], read_models: tuple[str, ...]) -> int:
    """The lowest live checkpoint among ``read_models`` (0 while one has none)."""
    names = set(read_models)
    found = await _live_checkpoints(connections, names)
    return min(found.values(), default=0) if len(found) == len(names) else 0


async def _have_applied(connections: AsyncConnectionPool[Any], needed: Mapping[str, int]) -> bool:
    """Whether each read model has applied the seq it needs (read model → seq)."""
    found = await _live_checkpoints(connections, needed.keys())
    return all(found.get(name, 0) >= seq for name, seq in needed.items())


async def wait_for_seq(
    connections: AsyncConnectionPool[Any],
    seq: int,
    read_models: tuple[str, ...],
    *,
    within: float,
    applied: AppliedSignal | None = None,
    unchanged: Collection[str] = (),
) -> bool:
    """Whether every read model in ``read_models`` has applied ``seq``, looking again for up to
    ``within`` seconds (no connection held between looks): each time a read model commits a
    batch (``applied``) unless its notification says one is still behind, else with a
    growing pause.

    A read model in ``unchanged`` does not fold the event at ``seq`` (the caller knows its
    type), so it is as it will be once it has applied the event before: stream sequences
    follow one another, and a gap only makes it wait for ``seq`` itself."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    needed = {name: seq - 1 if name in unchanged else seq for name in read_models}
    pause = 0.01
    look = applied is None or applied.may_have_applied(needed)
    while True:
        moved = applied.current() if applied is not None else None
        if look and await _have_applied(connections, needed):
            return True
        left = deadline - loop.time()
        if left <= 0:
            return not look and await _have_applied(connections, needed)
        if moved is None:
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
            continue
        try:
            async with asyncio.timeout(min(RECHECK, left)):
                await moved.wait()
        except TimeoutError:
            look = True  # no signal for a while: the checkpoints tell
        else:
            look = applied is None or applied.may_have_applied(needed)
