"""A person's clock: IANA time zones and hour ranges that may span midnight (pure; the zone
database comes from the system, or the ``tzdata`` package where the system has none)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
UTC = ZoneInfo("UTC")


def valid(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this system knows ("Europe/Berlin", "UTC")."""
    if len(name) > 64 or not _NAME.fullmatch(name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def zone(name: str | None) -> ZoneInfo:
    """The zone ``name`` names; UTC when there is none or it is unknown."""
    return ZoneInfo(name) if name and valid(name) else UTC


def local_hour(at: datetime, name: str | None) -> int:
    """The hour ``at`` shows on a clock in ``name`` (UTC when unknown)."""
    return at.astimezone(zone(name)).hour


def in_hours(hour: int, start: int, end: int) -> bool:
    """Whether ``hour`` is in [start, end), the range spanning midnight when start > end
    (22 → 7); an empty range (start == end) holds no hour."""
    if start == end:
        return False
    return start <= hour < end if start < end else hour >= start or hour < end
