"""A person's preferences: ``PUT /v1/me/preferences``
``{"time_zone", "quiet_hours", "digest_hour", "digest_email"}`` — their IANA time zone, the
hours in it when no push notification reaches them, the hour of their morning digest (null,
the default: none) and whether it comes by e-mail too (true by default) — recorded as
``user.preferences_changed`` (whole: what is left out goes back to its default) and shown by
``GET /v1/me``."""

from __future__ import annotations

import msgspec
from litestar import Router, put
from litestar.di import Provide
from litestar.params import JSONBody

from domain import events as ev
from domain import notifications, zones
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import Accepted


class QuietHoursBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: int  # hour, 0-23, in time_zone
    end: int


class PreferencesBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    time_zone: str  # IANA, e.g. "Europe/Berlin"
    quiet_hours: QuietHoursBody | None = None  # null or left out: notifications at any hour
    digest_hour: int | None = None  # the morning digest at this hour (0-23) in time_zone; null: none
    digest_email: bool = True


@put("/me/preferences", status_code=202)
async def set_preferences(ctx: Ctx, who: Who, data: JSONBody[PreferencesBody]) -> Accepted:
    time_zone = data.time_zone.strip()
    if not zones.valid(time_zone):
        raise ApiError(
            400, "invalid_request",
            "time_zone must be an IANA time zone such as Europe/Berlin, America/New_York or UTC.",
            field="time_zone",
        )  # fmt: skip
    quiet = (
        ev.QuietHours(start=data.quiet_hours.start, end=data.quiet_hours.end) if data.quiet_hours else None
    )
    if quiet is not None and (wrong := notifications.quiet_hours_refusal(quiet)) is not None:
        raise ApiError(400, "invalid_request", wrong, field="quiet_hours")
    if data.digest_hour is not None and not 0 <= data.digest_hour <= 23:
        raise ApiError(
            400, "invalid_request", "digest_hour is an hour from 0 to 23 (null: no morning digest).",
            field="digest_hour",
        )  # fmt: skip
    event = ev.new_event(
        ev.UserPreferencesChanged, tenant_id=who.tenant_id, aggregate_id=who.user_id,
        actor=f"user:{who.user_id}",
        data=ev.UserPreferencesChangedData(
            time_zone=time_zone, quiet_hours=quiet, digest_hour=data.digest_hour,
            digest_email=data.digest_email,
        ),
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return Accepted(appended.event_id, appended.seq)


preferences_router = Router(
    path="/v1", route_handlers=[set_preferences], tags=["accounts"], dependencies={"who": Provide(caller)}
)
