"""Fixed-window hit counters in PostgreSQL, shared by every gateway replica.

One atomic upsert per hit (``INSERT … ON CONFLICT DO UPDATE … RETURNING``): concurrent
replicas never lose a hit, and the answer says how many hits the window holds and when
it ends. The table is UNLOGGED (a crash forgets the counts, which is harmless) and old
windows are swept now and then by :meth:`RateCounter.sweep`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

RATE_LIMITS_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE UNLOGGED TABLE IF NOT EXISTS gateway.rate_limits (
    bucket       text        NOT NULL,  -- e.g. login:ip:203.0.113.9
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.rate_limits TO moltbot_gateway;
"""

_HIT = """
INSERT INTO gateway.rate_limits AS r (bucket, window_start, hits)
VALUES (%(bucket)s, to_timestamp(floor(extract(epoch FROM now()) / %(window)s) * %(window)s), 1)
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + 1
RETURNING hits,
    ceil(extract(epoch FROM (r.window_start + make_interval(secs => %(window)s) - now())))::int AS retry_after
"""


class Hit(msgspec.Struct, frozen=True):
    hits: int  # hits in the current window, this one included
    retry_after: int  # seconds until the window ends


class RateCounter:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._hits_since_sweep = 0

    async def hit(self, bucket: str, window_s: int) -> Hit:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_HIT, {"bucket": bucket, "window": window_s})
            row = await cur.fetchone()
        self._hits_since_sweep += 1
        if self._hits_since_sweep >= 10_000:
            self._hits_since_sweep = 0
            await self.sweep()
        assert row is not None
        return Hit(int(row["hits"]), max(1, int(row["retry_after"])))

    async def sweep(self, older_than_s: int = 3600) -> None:
        """Forget windows that ended long ago."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM gateway.rate_limits WHERE window_start < now() - make_interval(secs => %s)",
                (older_than_s,),
            )
