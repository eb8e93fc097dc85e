"""The day at a glance: ``GET /v1/digest?date=YYYY-MM-DD`` (default: today on your clock,
the time zone of ``PUT /v1/me/preferences``, UTC until set).

- ``needs_reply``: conversations waiting for a reply now that were waiting by the end of
  that day, the longest waiting first;
- ``follow_ups``: follow-ups due that day that still matter (waiting, or reminded and not
  dismissed);
- ``channels``: channels that need you (``action_required``) now;
- ``received``: how many messages people sent that day;
- ``mentions``: messages in groups that day that mentioned the agent;
- ``while_away``: on the day an away period ended (``/v1/away``), what came in meanwhile.

Each morning at your ``digest_hour`` the notifier sends it by push and e-mail
(``user.digest_due``), when there is something in it.
"""

from __future__ import annotations

from datetime import datetime

from litestar import Router, get
from litestar.di import Provide
from litestar.params import FromQuery

from domain import zones
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import MinSeq
from projections import digest_queries, tenants_queries
from projections.digest_queries import Digest


@get("/digest")
async def digest(ctx: Ctx, who: Who, date: FromQuery[str | None] = None, min_seq: MinSeq = None) -> Digest:
    """What needs you on a day: replies, follow-ups, channels, and how much came in."""
    await ctx.wait_for(min_seq, ("inbox", "connections", "tenants"), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        chosen = await tenants_queries.preferences(conn, who.user_id)
    zone = zones.zone(chosen.time_zone)
    try:
        day = datetime.now(zone).date() if date is None else datetime.strptime(date, "%Y-%m-%d").date()
    except ValueError:
        raise ApiError(400, "invalid_request", "date is a day like 2026-11-26.", field="date") from None
    async with ctx.tenant(who.tenant_id) as conn:
        return await digest_queries.digest(conn, who.tenant_id, zone, day)


digest_router = Router(
    path="/v1",
    route_handlers=[digest],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
