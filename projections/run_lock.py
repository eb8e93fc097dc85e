"""Who may fold a read model right now: one single worker, or partition workers with
disjoint buckets — never both, never two of either on the same events.

The claim is a PostgreSQL session advisory lock on the worker's own connection, so it
ends with the connection: a worker that is stopped, crashes or loses PostgreSQL frees it
at once (one cut off by the network within ~25 s, by TCP keepalives), and a second
worker started beside a running one waits (logging who holds the claim) and takes over
the moment the first is gone — a hot standby.

* A single worker holds the read model's run lock exclusively.
* A partition worker holds it shared, plus an exclusive lock per bucket it owns, so
  workers of different partition counts whose buckets overlap wait for each other too.

``moltbot projections status`` reads the same locks to say what is running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import structlog

from adapters.postgres.database import Connection
from projections.base import Projection

log = structlog.get_logger()

# First keys of the two-key advisory locks ("mol" + 1, + 2); the second is hashtext(...).
RUN_LOCK = 0x6D6F6C01
BUCKET_LOCK = 0x6D6F6C02

RETRY_SECONDS = 1.0


class Running(msgspec.Struct, frozen=True):
    """Workers folding a read model now: ``single`` (0 or 1) and ``partitioned`` processes."""

    single: int
    partitioned: int

    def describe(self) -> str:
        if self.single:
            return "single"
        if self.partitioned:
            return f"{self.partitioned} partition worker{'s' if self.partitioned > 1 else ''}"
        return "-"


async def wait_for_turn(
    conn: Connection, projection: Projection, buckets: Sequence[int] | None = None
) -> None:
    """Block until this connection holds the claim: the single worker's with ``buckets``
    None, else a partition worker's for those buckets."""
    # A worker cut off by the network (not stopped) keeps its session, and so the claim,
    # until the server notices: make that ~25 s rather than the system's 2 hours.
    await conn.execute(
        "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
    )
    waiting_since: float | None = None
    while not await _try_claim(conn, projection, buckets):
        if waiting_since is None:
            waiting_since = asyncio.get_running_loop().time()
            log.warning(
                "projection_worker_waiting",
                projection=projection.name,
                buckets=list(buckets) if buckets is not None else None,
                held_by=await _holders(conn, projection),
                hint="another worker is folding this read model; this one takes over when it stops",
            )
        await asyncio.sleep(RETRY_SECONDS)
    if waiting_since is not None:
        log.info(
            "projection_worker_took_over",
            projection=projection.name,
            waited_s=round(asyncio.get_running_loop().time() - waiting_since, 2),
        )


# The granted run locks of one read model in this database (params: RUN_LOCK, its name).
_RUN_LOCKS_HELD = (
    "SELECT pid, mode FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = %s::int::oid AND objid = hashtext(%s)::oid"
)


async def running(conn: Connection, projection: Projection) -> Running:
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE mode = 'ExclusiveLock') AS single,"
        f" count(*) FILTER (WHERE mode = 'ShareLock') AS partitioned FROM ({_RUN_LOCKS_HELD}) AS l",
        (RUN_LOCK, projection.name),
    )
    row = await cur.fetchone()
    assert row is not None
    return Running(single=int(row["single"]), partitioned=int(row["partitioned"]))  # type: ignore[call-overload]


async def _try_claim(conn: Connection, projection: Projection, buckets: Sequence[int] | None) -> bool:
    if buckets is None:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS run, true AS buckets",
            (RUN_LOCK, projection.name),
        )
    else:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock_shared(%s, hashtext(%s)) AS run,"
            " coalesce(bool_and(pg_try_advisory_lock(%s, hashtext(%s || ':' || b))), true) AS buckets"
            " FROM unnest(%s::int[]) AS b",
            (RUN_LOCK, projection.name, BUCKET_LOCK, projection.name, list(buckets)),
        )
    row = await cur.fetchone()
    assert row is not None
    if row["run"] and row["buckets"]:
        return True
    await conn.execute("SELECT pg_advisory_unlock_all()")  # whatever part of the claim it got
    return False


async def _holders(conn: Connection, projection: Projection) -> list[str]:
    """The application names of the sessions holding the read model's run lock."""
    cur = await conn.execute(
        f"SELECT DISTINCT a.application_name FROM ({_RUN_LOCKS_HELD}) AS l"
        " JOIN pg_stat_activity a USING (pid) ORDER BY 1",
        (RUN_LOCK, projection.name),
    )
    return [str(row["application_name"]) for row in await cur.fetchall()]
