"""Follow-ups: "nudge me if they have not answered by then".

- ``POST /v1/conversations/{id}/follow-ups`` ``{"due_at", "only_if_no_reply": true, "note"?}``
  — ``reminder.scheduled``. At ``due_at`` the gateway's scheduler records ``reminder.due``
  (pushed, counted on ``/v1/me``), unless the contact wrote in the conversation since and
  ``only_if_no_reply`` held: then it is ``answered`` and nothing fires.
- ``GET /v1/follow-ups?status=proposed|waiting|answered|due|cancelled&limit=`` — the soonest
  first. ``proposed``: the agent read a promise in a message ("I'll get back to you Friday",
  ``reminder.proposed``) and waits for a person to approve it.
- ``POST /v1/follow-ups/{id}/approve`` — a proposed follow-up waits from now on
  (``reminder.scheduled`` with its id, due when proposed, or at ``due_at`` when given).
- ``DELETE /v1/follow-ups/{id}`` — call it off, dismiss its reminder or decline a proposal
  (``reminder.cancelled``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec
from litestar import Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from domain import events as ev
from domain import ids
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import Limit, MinSeq
from projections import inbox_queries
from projections.inbox_queries import FollowUp

MAX_AHEAD = timedelta(days=365)
MAX_NOTE = 500


class FollowUpBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    due_at: datetime
    only_if_no_reply: bool = True
    note: str | None = None


class ApproveBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    due_at: datetime | None = None  # None: when it was proposed for


class FollowUpAccepted(msgspec.Struct, frozen=True):
    follow_up_id: str
    status: Literal["waiting", "cancelled"]
    event_id: str
    seq: int


@post("/conversations/{conversation_id:str}/follow-ups", status_code=202)
async def schedule_follow_up(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], data: JSONBody[FollowUpBody]
) -> FollowUpAccepted:
    """Be reminded at ``due_at`` (if they have not answered by then, by default)."""
    _check_due(data.due_at)
    note = " ".join(data.note.split()) if data.note else None
    if note is not None and len(note) > MAX_NOTE:
        raise ApiError(400, "invalid_request", f"A note is at most {MAX_NOTE} characters.", field="note")
    async with ctx.tenant(who.tenant_id) as conn:
        if await inbox_queries.conversation(conn, who.tenant_id, conversation_id) is None:
            raise ApiError(404, "not_found", f"No conversation {conversation_id} in your inbox.", field="id")
    follow_up_id = ids.new_id(ids.FOLLOW_UP)
    scheduled = ev.new_event(
        ev.FollowUpScheduled, tenant_id=who.tenant_id, aggregate_id=conversation_id,
        actor=f"user:{who.user_id}",
        data=ev.FollowUpScheduledData(
            follow_up_id=follow_up_id, due_at=data.due_at, only_if_no_reply=data.only_if_no_reply, note=note
        ),
    )  # fmt: skip
    appended = await ctx.store.append(scheduled)
    return FollowUpAccepted(follow_up_id, "waiting", appended.event_id, appended.seq)


def _check_due(due_at: datetime) -> None:
    if due_at.tzinfo is None:
        raise ApiError(400, "invalid_request", "Give due_at with its time zone, e.g. Z.", field="due_at")
    now = datetime.now(UTC)
    if not now < due_at <= now + MAX_AHEAD:
        raise ApiError(400, "invalid_request", "due_at is a moment in the coming year.", field="due_at")


@post("/follow-ups/{follow_up_id:str}/approve", status_code=202)
async def approve_follow_up(
    ctx: Ctx, who: Who, follow_up_id: FromPath[str], data: JSONBody[ApproveBody | None] = None
) -> FollowUpAccepted:
    """A follow-up the agent proposed is wanted: it waits from now on, like one you set."""
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.follow_up(conn, who.tenant_id, follow_up_id)
    if found is None:
        raise ApiError(404, "not_found", f"No follow-up {follow_up_id} in your inbox.", field="id")
    if found.status != "proposed":
        raise ApiError(409, "not_proposed", f"This follow-up is {found.status}, not proposed.", field="id")
    due_at = data.due_at if data is not None and data.due_at is not None else found.due_at
    if due_at <= datetime.now(UTC):  # its day passed while it waited for you: choose another
        raise ApiError(
            400, "invalid_request", "This follow-up's time has passed: give a due_at to approve it.",
            field="due_at",
        )  # fmt: skip
    _check_due(due_at)
    scheduled = ev.new_event(
        ev.FollowUpScheduled, tenant_id=who.tenant_id, aggregate_id=found.conversation_id,
        actor=f"user:{who.user_id}",
        data=ev.FollowUpScheduledData(follow_up_id=follow_up_id, due_at=due_at, note=found.note),
    )  # fmt: skip
    appended = await ctx.store.append(scheduled)
    return FollowUpAccepted(follow_up_id, "waiting", appended.event_id, appended.seq)


@get("/follow-ups")
async def list_follow_ups(
    ctx: Ctx,
    who: Who,
    status: FromQuery[Literal["proposed", "waiting", "answered", "due", "cancelled"] | None] = None,
    limit: Limit = 50,
    min_seq: MinSeq = None,
) -> list[FollowUp]:
    """Your inbox's follow-ups, the soonest due first."""
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await inbox_queries.follow_ups(conn, who.tenant_id, status=status, limit=limit)


@delete("/follow-ups/{follow_up_id:str}", status_code=202)
async def cancel_follow_up(ctx: Ctx, who: Who, follow_up_id: FromPath[str]) -> FollowUpAccepted:
    """Call a follow-up off, or dismiss its reminder."""
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.follow_up(conn, who.tenant_id, follow_up_id)
    if found is None:
        raise ApiError(404, "not_found", f"No follow-up {follow_up_id} in your inbox.", field="id")
    if found.status not in ("proposed", "waiting", "due"):
        raise ApiError(409, "settled", f"This follow-up is {found.status} already.", field="id")
    cancelled = ev.new_event(
        ev.FollowUpCancelled, tenant_id=who.tenant_id, aggregate_id=found.conversation_id,
        actor=f"user:{who.user_id}", data=ev.FollowUpCancelledData(follow_up_id=follow_up_id),
    )  # fmt: skip
    appended = await ctx.store.append(cancelled)
    return FollowUpAccepted(follow_up_id, "cancelled", appended.event_id, appended.seq)


follow_ups_router = Router(
    path="/v1",
    route_handlers=[schedule_follow_up, approve_follow_up, list_follow_ups, cancel_follow_up],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
