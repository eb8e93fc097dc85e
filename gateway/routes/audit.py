"""``GET /v1/audit``: the inbox's audit log, newest first, for its owners and admins
(what is recorded: ``docs/accounts.md``; the table: ``adapters/postgres/audit.py``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Router, get
from litestar.di import Provide
from litestar.params import Parameter

from adapters.postgres import audit
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError


class AuditPage(msgspec.Struct, frozen=True):
    entries: list[audit.Entry]
    next_cursor: str | None  # pass as ?cursor= for older entries; None: no more


@get("/audit", cache=False)
async def audit_log(
    ctx: Ctx,
    who: Who,
    cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
) -> AuditPage:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", "Only the inbox's owners and admins can read its audit log.")
    before = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise ApiError(
                400, "invalid_request", "cursor is the next_cursor of an earlier page.", field="cursor"
            )
        before = int(cursor)
    async with ctx.tenant(who.tenant_id) as conn:
        entries = await audit.page(conn, who.tenant_id, before=before, limit=limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    return AuditPage(entries, str(entries[-1].entry_id) if more and entries else None)


audit_router = Router(
    path="/v1", route_handlers=[audit_log], tags=["accounts"], dependencies={"who": Provide(caller)}
)
