"""Away mode for the whole inbox (``domain/away.py``).

- ``GET /v1/away`` — the latest away period (``on``: whether it is now) and, once it is over,
  what happened meanwhile; ``{"away": null}`` when the inbox was never away.
- ``PUT /v1/away`` ``{"until", "message"?, "connection_ids"?: [...], "mode"?: "answer"|"draft"}``
  — away until then (``tenant.away_set``; a newer one replaces the one that is on). Owners and
  admins.
- ``DELETE /v1/away`` — back now (``tenant.away_ended``). Owners and admins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from litestar import Router, delete, get, put
from litestar.di import Provide
from litestar.params import JSONBody

from domain import away as away_rules
from domain import events as ev
from domain import ids
from domain.away import Away
from gateway.auth import Caller
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import MinSeq
from projections import connections_queries, inbox_queries, tenants_queries
from projections.inbox_queries import WhileAway


class AwayBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    until: datetime
    message: str = away_rules.DEFAULT_MESSAGE
    connection_ids: list[str] = msgspec.field(default_factory=list)  # empty: every connection
    mode: Literal["answer", "draft"] = "answer"


class AwayState(msgspec.Struct, frozen=True):
    away: Away | None
    on: bool = False
    while_away: WhileAway | None = None  # what came in from its start until now (or its end)


class AwayAccepted(msgspec.Struct, frozen=True):
    away_id: str
    event_id: str
    seq: int


def _managers_only(who: Caller) -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", "Only the inbox's owners and admins can set it away.")


@get("/away")
async def get_away(ctx: Ctx, who: Who, min_seq: MinSeq = None) -> AwayState:
    """Whether the inbox is away, until when, and what came in meanwhile."""
    await ctx.wait_for(min_seq, ("tenants", "inbox"), who.tenant_id)
    now = datetime.now(UTC)
    async with ctx.tenant(who.tenant_id) as conn:
        latest = await tenants_queries.away(conn, who.tenant_id)
        if latest is None:
            return AwayState(None)
        end = min(latest.ended_at or latest.until, now)
        report = await inbox_queries.while_away(conn, who.tenant_id, latest.started_at, end)
    return AwayState(latest, away_rules.is_on(latest, now), report)


@put("/away", status_code=202)
async def set_away(ctx: Ctx, who: Who, data: JSONBody[AwayBody]) -> AwayAccepted:
    """Away until ``until``: one answer per conversation, notifications held until back."""
    _managers_only(who)
    message = data.message.strip()
    if (wrong := away_rules.refusal(data.until, message, datetime.now(UTC))) is not None:
        field, fix = wrong
        raise ApiError(400, "invalid_request", fix, field=field)
    chosen = list(dict.fromkeys(data.connection_ids))
    if chosen:
        async with ctx.tenant(who.tenant_id) as conn:
            known = {c.connection_id for c in await connections_queries.channels(conn, who.tenant_id)}
        if unknown := [c for c in chosen if c not in known]:
            raise ApiError(
                400, "invalid_request", f"No channel {unknown[0]} in your inbox: see GET /v1/channels.",
                field="connection_ids",
            )  # fmt: skip
    away_id = ids.new_id(ids.AWAY)
    event = ev.new_event(
        ev.AwaySet, tenant_id=who.tenant_id, aggregate_id=who.tenant_id, actor=f"user:{who.user_id}",
        data=ev.AwaySetData(
            away_id=away_id, until=data.until, message=message, connection_ids=tuple(chosen), mode=data.mode
        ),
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return AwayAccepted(away_id, appended.event_id, appended.seq)


@delete("/away", status_code=202)
async def end_away(ctx: Ctx, who: Who) -> AwayAccepted:
    """Back now."""
    _managers_only(who)
    async with ctx.tenant(who.tenant_id) as conn:
        latest = await tenants_queries.away(conn, who.tenant_id)
    if latest is None or not away_rules.is_on(latest, datetime.now(UTC)):
        raise ApiError(409, "not_away", "The inbox is not away.")
    event = ev.new_event(
        ev.AwayEnded, tenant_id=who.tenant_id, aggregate_id=who.tenant_id, actor=f"user:{who.user_id}",
        data=ev.AwayEndedData(away_id=latest.away_id, reason="returned"),
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return AwayAccepted(latest.away_id, appended.event_id, appended.seq)


away_router = Router(
    path="/v1",
    route_handlers=[get_away, set_away, end_away],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
