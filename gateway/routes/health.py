"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

import structlog
from litestar import Request, Response, Router, get

from gateway.context import Ctx, GatewayContext
from gateway.errors import ApiError

log = structlog.get_logger()

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


def _operator_only(request: Request[Any, Any, Any], ctx: GatewayContext) -> None:
    """/readyz and /metrics are for operators: the ops token when one is set, else loopback
    clients only (a request relayed by a proxy is not one)."""
    if ctx.ops_token is not None:
        header = request.headers.get("authorization", "")
        if hmac.compare_digest(header.encode(), f"Bearer {ctx.ops_token}".encode()):
            return
        raise ApiError(401, "unauthorized", "Send the operations token: Authorization: Bearer <token>.")
    peer = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        local = False
    if not local or "x-forwarded-for" in request.headers:
        raise ApiError(
            403, "forbidden", "Operations endpoints answer this machine only (or set MOLTBOT_OPS_TOKEN)."
        )


@get("/readyz")
async def readyz(request: Request[Any, Any, Any], ctx: Ctx) -> Response[dict[str, Any]]:
    """NATS and PostgreSQL reachable, and every read model within READY_MAX_LAG of the log."""
    _operator_only(request, ctx)
    problems: list[str] = []
    try:
        last_seq, rows = await _lags(ctx)
    except Exception as exc:
        log.warning("readiness_check_failed", error=repr(exc))  # the details stay in our logs
        return Response(
            {"status": "unavailable", "problems": ["NATS or PostgreSQL is unreachable"]}, status_code=503
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
async def metrics(request: Request[Any, Any, Any], ctx: Ctx) -> str:
    """Prometheus text format: log position, per-read-model checkpoint and lag, and the
    requests this replica refused by rate limit or stream cap."""
    _operator_only(request, ctx)
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
    lines += [
        "# HELP moltbot_rate_limited_total Requests and streams this gateway refused, by limit.",
        "# TYPE moltbot_rate_limited_total counter",
    ]
    refusals = ctx.limiter.refusals
    lines += [f'moltbot_rate_limited_total{{limit="{name}"}} {refusals[name]}' for name in sorted(refusals)]
    return "\n".join(lines) + "\n"


health_router = Router(path="/", route_handlers=[healthz, readyz, metrics], tags=["operations"])
