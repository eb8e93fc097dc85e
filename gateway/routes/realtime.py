"""``GET /v1/events``: the caller's tenant's events over Server-Sent Events.

Replay starts at ``?since=`` or ``Last-Event-ID`` (an EVENTS stream sequence; the event
after the last one the client saw) and continues live from the same consumer, so there
is no gap and no duplicate at the seam. Each SSE ``id`` is the event's sequence: a client
that reconnects with ``Last-Event-ID`` resumes exactly where it was. The subject filter
is built from the token's tenant — no request parameter can widen it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request, Router, get
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from adapters.nats.event_store import StoredRecord
from domain import subjects
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError

HEARTBEAT_SECONDS = 15.0
_TYPE_PATTERN = set("abcdefghijklmnopqrstuvwxyz_.*")


def _type_filter(types: str | None) -> list[str] | None:
    if not types:
        return None
    patterns = [t.strip() for t in types.split(",") if t.strip()]
    for pattern in patterns:
        if not set(pattern) <= _TYPE_PATTERN:
            raise ApiError(
                400,
                "invalid_request",
                f"{pattern!r} is not an event type pattern like message.*",
                field="types",
            )
    return patterns


def _event_type(record: StoredRecord) -> str:
    return subjects.event_type_of(record.subject.rsplit(".", 1)[-1])


@get("/events")
async def events(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    who: Who,
    since: Annotated[int | None, Parameter(ge=1, description="first EVENTS sequence to send")] = None,
    types: Annotated[str | None, Parameter(description="comma-separated types, e.g. message.*")] = None,
) -> ServerSentEvent:
    last_event_id = request.headers.get("last-event-id")
    if since is None and last_event_id:
        if not last_event_id.isdigit():
            raise ApiError(400, "invalid_request", "Last-Event-ID must be a sequence number.")
        since = int(last_event_id) + 1
    if since is None:
        since = await ctx.store.last_seq() + 1  # only what happens from now on
    patterns = _type_filter(types)
    subject = subjects.tenant_filter(who.tenant_id)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        records = ctx.store.read(since=since, subject=subject, follow=True, idle_timeout=1.0).__aiter__()
        pending: asyncio.Task[StoredRecord] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(records.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
                if not done:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                record = pending.result()
                pending = None
                event_type = _event_type(record)
                if patterns and not any(fnmatch.fnmatchcase(event_type, p) for p in patterns):
                    continue
                yield ServerSentEventMessage(data=record.data.decode(), event=event_type, id=record.seq)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(Exception):
                await records.aclose()  # type: ignore[attr-defined]

    return ServerSentEvent(stream(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


realtime_router = Router(
    path="/v1",
    route_handlers=[events],
    tags=["realtime"],
    dependencies={"who": Provide(caller, sync_to_thread=False)},
)
