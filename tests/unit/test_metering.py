"""The AI overage the billing worker reports, as tables: a month's daily spends and the plan's
allowance → each day's share of the overage; which plans are metered; which days are reported
at a given moment, with Stripe's 35-day limit; the identifier and timestamp of each event."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import billing
from moltbot.settings import bundled_plans_file, load_catalog

M = 1_000_000  # a dollar in micro-dollars
ALLOWANCE = 50 * M  # Pro's


def _days(*spends: tuple[str, int]) -> dict[date, int]:
    return {date.fromisoformat(day): spent for day, spent in spends}


@pytest.mark.parametrize(
    ("spent", "allowance", "overage"),
    [
        ({}, ALLOWANCE, {}),
        (_days(("2026-03-01", 10 * M), ("2026-03-02", 39 * M)), ALLOWANCE, {}),  # under it
        (_days(("2026-03-01", 20 * M), ("2026-03-02", 30 * M)), ALLOWANCE, {}),  # exactly all of it
        (  # the day it is crossed counts only what goes beyond; every later day counts whole
            _days(("2026-03-01", 30 * M), ("2026-03-02", 30 * M), ("2026-03-05", 5 * M)),
            ALLOWANCE,
            _days(("2026-03-02", 10 * M), ("2026-03-05", 5 * M)),
        ),
        (_days(("2026-03-01", 70 * M)), ALLOWANCE, _days(("2026-03-01", 20 * M))),  # in one day
        (_days(("2026-03-01", 50 * M), ("2026-03-02", 1)), ALLOWANCE, _days(("2026-03-02", 1))),
        (  # a day without spend has no overage, whatever the month spent before it
            _days(("2026-03-01", 60 * M), ("2026-03-02", 0), ("2026-03-03", 2 * M)),
            ALLOWANCE,
            _days(("2026-03-01", 10 * M), ("2026-03-03", 2 * M)),
        ),
        (  # each calendar month starts with the whole allowance again
            _days(
                ("2026-02-27", 45 * M), ("2026-02-28", 15 * M), ("2026-03-01", 45 * M), ("2026-03-02", 15 * M)
            ),
            ALLOWANCE,
            _days(("2026-02-28", 10 * M), ("2026-03-02", 10 * M)),
        ),
        (_days(("2026-03-01", 3), ("2026-03-02", 4)), 0, _days(("2026-03-01", 3), ("2026-03-02", 4))),
    ],
)
def test_each_days_share_of_the_overage(
    spent: dict[date, int], allowance: int, overage: dict[date, int]
) -> None:
    assert billing.overage_by_day(spent, allowance) == overage


def test_a_negative_spend_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        billing.overage_by_day(_days(("2026-03-01", -1)), ALLOWANCE)


_spends = st.dictionaries(
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 4, 30)),
    st.integers(min_value=0, max_value=100 * M),
    max_size=60,
)


@given(spent=_spends, allowance=st.integers(min_value=0, max_value=120 * M))
def test_a_months_shares_add_up_to_its_overage_and_never_change_later(
    spent: dict[date, int], allowance: int
) -> None:
    overage = billing.overage_by_day(spent, allowance)
    assert all(share > 0 and spent[day] >= share for day, share in overage.items())
    for year, month in {(day.year, day.month) for day in spent}:
        total = sum(s for day, s in spent.items() if (day.year, day.month) == (year, month))
        reported = sum(s for day, s in overage.items() if (day.year, day.month) == (year, month))
        assert reported == max(0, total - allowance)
    # A closed day's share is final: the spend of later days does not change it.
    for cut in spent:
        earlier = {day: s for day, s in spent.items() if day <= cut}
        assert billing.overage_by_day(earlier, allowance) == {
            day: s for day, s in overage.items() if day <= cut
        }


@pytest.mark.parametrize(
    ("plan", "allowance"),
    [
        ("pro", 50 * M),
        ("team", 250 * M),
        ("free", None),  # costs nothing: its allowance is a hard stop, not billed beyond
        ("byok", None),  # the key's owner pays Anthropic
        ("platinum", None),  # not in the catalog
        (None, None),
    ],
)
def test_which_plans_are_metered(plan: str | None, allowance: int | None) -> None:
    catalog = load_catalog(bundled_plans_file())
    assert billing.metered_allowance(catalog, plan) == allowance


@pytest.mark.parametrize(
    ("now", "first", "last"),
    [
        # 34 days back at most (Stripe takes 35), and not before the previous month.
        ("2026-03-15T12:00:00", "2026-02-09", "2026-03-14"),
        ("2026-03-31T12:00:00", "2026-02-25", "2026-03-30"),
        ("2026-03-02T12:00:00", "2026-02-01", "2026-03-01"),
        # Just after midnight yesterday is not settled yet; ten minutes later it is.
        ("2026-03-01T00:05:00", "2026-02-01", "2026-02-27"),
        ("2026-03-01T00:10:00", "2026-02-01", "2026-02-28"),
        ("2026-01-01T06:00:00", "2025-12-01", "2025-12-31"),
    ],
)
def test_the_days_reported_at_a_moment(now: str, first: str, last: str) -> None:
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert billing.meter_window(at) == (date.fromisoformat(first), date.fromisoformat(last))


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)))
def test_every_day_reported_is_closed_and_within_stripes_35_days(now: datetime) -> None:
    first, last = billing.meter_window(now)
    assert first <= last < now.date()
    for day in (first, last):
        age = now.timestamp() - billing.end_of_day(day)
        assert billing.SETTLE.total_seconds() - 1 <= age < timedelta(days=35).total_seconds()
    previous_month = (now.date().replace(day=1) - timedelta(days=1)).replace(day=1)
    assert first >= previous_month


def test_the_events_identifier_and_timestamp() -> None:
    day = date(2026, 3, 14)
    assert billing.meter_identifier("t_01JD3V5W3Q8Z6Y1T0N4X2M7K9B", day, "cost_micros") == (
        "t_01JD3V5W3Q8Z6Y1T0N4X2M7K9B:2026-03-14:cost_micros"
    )
    assert billing.end_of_day(day) == int(datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC).timestamp())
