"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import Response, Router, get

from gateway.context import Ctx

READY_MAX_LAG = 10_000  # events a read model may trail the log by and still count as ready


@get("/healthz", include_in_schema=True)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _lags(ctx: Ctx) -> tuple[int, list[dict[str, Any]]]:
    last_seq = await ctx.store.last_seq()
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT projection, version, last_seq FROM moltbot.projection_checkpoints WHERE slot = 'live'"
            " ORDER BY projection"
        )
        rows = await cur.fetchall()
    return last_seq, rows


@get("/readyz")
async def readyz(ctx: Ctx) -> Response[dict[str, Any]]:
    """NATS and PostgreSQL reachable, and every read model within READY_MAX_LAG of the log."""
    problems: list[str] = []
    try:
        last_seq, rows = await _lags(ctx)
    except Exception as exc:
        return Response(
            {"status": "unavailable", "problems": [f"backbone unreachable: {exc!r}"]}, status_code=503
        )
    if not rows:
        problems.append("no read model has started yet")
    for row in rows:
        lag = last_seq - row["last_seq"]
        if lag > READY_MAX_LAG:
            problems.append(f"{row['projection']} is {lag} events behind")
    status = 503 if problems else 200
    return Response(
        {
            "status": "ready" if not problems else "not_ready",
            "stream_last_seq": last_seq,
            "problems": problems,
        },
        status_code=status,
    )


@get("/metrics", media_type="text/plain; version=0.0.4")
async def metrics(ctx: Ctx) -> str:
    """Prometheus text format: log position and per-read-model checkpoint and lag."""
    last_seq, rows = await _lags(ctx)
    lines = [
        "# HELP moltbot_events_last_seq Last sequence of the EVENTS stream.",
        "# TYPE moltbot_events_last_seq gauge",
        f"moltbot_events_last_seq {last_seq}",
        "# HELP moltbot_projection_checkpoint Last EVENTS sequence applied to a read model.",
        "# TYPE moltbot_projection_checkpoint gauge",
    ]
    lines += [
        f'moltbot_projection_checkpoint{{read_model="{r["projection"]}"}} {r["last_seq"]}' for r in rows
    ]
    lines += [
        "# HELP moltbot_projection_lag Events a read model trails the log by.",
        "# TYPE moltbot_projection_lag gauge",
    ]
    lines += [
        f'moltbot_projection_lag{{read_model="{r["projection"]}"}} {last_seq - r["last_seq"]}' for r in rows
    ]
    return "\n".join(lines) + "\n"


health_router = Router(path="/", route_handlers=[healthz, readyz, metrics], tags=["operations"])
