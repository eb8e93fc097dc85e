"""The day at a glance: ``GET /v1/digest?date=YYYY-MM-DD`` (default: today on your clock,
the time zone of ``PUT /v1/me/preferences``, UTC until set).

- ``needs_reply``: conversations waiting for a reply now that were waiting by the end of
  that day, the longest waiting first;
- ``follow_ups``: follow-ups due that day that still matter (waiting, or reminded and not
  dismissed);
- ``channels``: channels that need you (``action_required``) now;
- ``received``: how many messages people sent that day.

Sent each morning by push and e-mail: planned.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import msgspec
from litestar import Router, get
from litestar.di import Provide
from litestar.params import FromQuery

from domain import zones
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import MinSeq
from projections import connections_queries, inbox_queries, tenants_queries
from projections.inbox_queries import FollowUp, Waiting

LISTED = 50  # items of each list at most


class ChannelNeed(msgspec.Struct, frozen=True):
    connection_id: str
    channel: str
    display_name: str
    state_message: str | None
    suggested_action: str | None


class Digest(msgspec.Struct, frozen=True):
    date: date
    time_zone: str
    needs_reply: list[Waiting]
    follow_ups: list[FollowUp]
    channels: list[ChannelNeed]
    received: int


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
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = start + timedelta(days=1)
    async with ctx.tenant(who.tenant_id) as conn:
        waiting = await inbox_queries.waiting_since_before(conn, who.tenant_id, end, limit=LISTED)
        follow_ups = await inbox_queries.follow_ups_between(conn, who.tenant_id, start, end, limit=LISTED)
        received = await inbox_queries.received_between(conn, who.tenant_id, start, end)
        channels = await connections_queries.channels(conn, who.tenant_id)
    needing = [
        ChannelNeed(c.connection_id, c.channel, c.display_name, c.state_message, c.suggested_action)
        for c in channels
        if c.state == "action_required"
    ]
    return Digest(day, zone.key, waiting, follow_ups, needing, received)


digest_router = Router(
    path="/v1",
    route_handlers=[digest],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
