"""Writing the audit log from a request: who (the caller), from where (address and user
agent), what. The table and its reads: ``adapters/postgres/audit.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.postgres import audit
from gateway.limits import client_ip

if TYPE_CHECKING:
    from litestar import Request

    from adapters.postgres.database import Connection
    from gateway.context import GatewayContext


def where(ctx: GatewayContext, request: Request[Any, Any, Any]) -> audit.Where:
    return audit.Where(
        ip=client_ip(request, ctx.trusted_proxies), user_agent=request.headers.get("user-agent") or None
    )


async def note(
    ctx: GatewayContext,
    request: Request[Any, Any, Any],
    tenant_id: str,
    action: str,
    *,
    actor: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    conn: Connection | None = None,
) -> None:
    """Record ``action`` in ``tenant_id``'s audit log: in ``conn``'s transaction (one of that
    tenant) when given, so it commits with the action, else in its own."""
    if conn is not None:
        await audit.record(
            conn, tenant_id, action, actor=actor, where=where(ctx, request), target=target, detail=detail
        )
        return
    async with ctx.tenant(tenant_id) as own:
        await audit.record(
            own, tenant_id, action, actor=actor, where=where(ctx, request), target=target, detail=detail
        )
