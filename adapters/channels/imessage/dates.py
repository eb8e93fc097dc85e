"""chat.db dates: integers since 2001-01-01 UTC (Apple's epoch), in nanoseconds on macOS
10.13 and later and in seconds before; 0 means "never" (``date_edited``, ``date_read``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
_NANOSECONDS_ABOVE = 100_000_000_000  # no date in seconds gets here before the year 5000


def units_per_second(sample: int) -> int:
    """Whether a database's dates are nanoseconds (10**9) or seconds (1), judged from one."""
    return 1_000_000_000 if sample > _NANOSECONDS_ABOVE else 1


def apple_datetime(value: int | None) -> datetime | None:
    """A chat.db date as an aware UTC datetime (microsecond precision); None for 0/NULL."""
    if not value:
        return None
    if value > _NANOSECONDS_ABOVE:
        return APPLE_EPOCH + timedelta(microseconds=value // 1000)
    return APPLE_EPOCH + timedelta(seconds=value)


def to_apple(moment: datetime, per_second: int = 1_000_000_000) -> int:
    """An aware datetime as a chat.db date in the given unit."""
    delta = moment - APPLE_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * per_second // 1_000_000
