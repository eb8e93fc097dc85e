"""The plan catalog as shipped (plans.yaml) and the limits it decides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain import plans as p

CATALOG = p.parse_catalog((Path(__file__).resolve().parents[2] / "plans.yaml").read_text())


def test_the_shipped_plans_have_the_shape_people_are_promised() -> None:
    free, pro, team = (CATALOG.limits(plan) for plan in ("free", "pro", "team"))
    assert CATALOG.upgrade_order == ("free", "pro", "team")
    assert free.bridge_channels == 0 and free.cloud_channels in (1, 2) and free.history_days == 30
    assert free.models is not None and "claude-haiku-4-5" in free.models
    for paid in (pro, team):
        assert paid.bridge_channels and paid.bridge_channels > 0
        assert paid.history_days and free.history_days and paid.history_days > free.history_days
        assert paid.ai_allowance_micros and free.ai_allowance_micros
        assert paid.ai_allowance_micros > free.ai_allowance_micros
        assert paid.models is None  # any model of the catalog
    assert CATALOG.spec("pro").monthly_price_cents < CATALOG.spec("team").monthly_price_cents
    assert not CATALOG.spec("byok").listed and CATALOG.limits("byok").ai_allowance_micros is None


def test_an_unknown_plan_is_held_to_the_free_plans_limits() -> None:
    assert CATALOG.limits("platinum") == CATALOG.limits("free")
    assert CATALOG.limits(None) == CATALOG.limits("free")


@pytest.mark.parametrize(
    ("plan", "limit", "used", "refused", "upgrade", "words"),
    [
        ("free", "cloud_channels", 1, False, None, ""),
        (
            "free",
            "cloud_channels",
            2,
            True,
            "pro",
            "The Free plan allows 2 channels, and you have 2. Pro allows 10",
        ),
        ("free", "bridge_channels", 0, True, "pro", "The Free plan has no channels on your own devices."),
        ("free", "agents", 1, True, "pro", "allows 1 agent, and you have 1"),
        ("pro", "seats", 3, True, "team", "Team allows 25 people"),
        ("team", "cloud_channels", 50, True, None, "allows 50 channels"),
    ],
)
def test_one_more_fits_or_says_why_and_what_would_allow_it(
    plan: str, limit: p.LimitName, used: int, refused: bool, upgrade: str | None, words: str
) -> None:
    over = p.check_count(CATALOG, plan, limit, used)
    assert (over is not None) == refused
    if over is not None:
        assert (over.limit, over.used, over.plan, over.upgrade) == (limit, used, plan, upgrade)
        assert words in over.detail


def test_models_are_held_to_the_plan() -> None:
    assert (
        p.check_model(CATALOG, "free", "claude-haiku-4-5-20251001") is None
    )  # a dated id of an allowed family
    over = p.check_model(CATALOG, "free", "claude-opus-4-1")
    assert over is not None and over.upgrade == "pro" and "claude-haiku-4-5" in over.detail
    assert p.check_model(CATALOG, "pro", "claude-opus-4-1") is None


def test_the_allowance_and_the_daily_ceiling_both_stop_runs() -> None:
    assert p.ai_allowance_left(CATALOG, p.Spend("free", 1_999_999, 0))
    assert not p.ai_allowance_left(CATALOG, p.Spend("free", 2_000_000, 0))
    assert not p.ai_allowance_left(CATALOG, p.Spend("free", 1_000, 1_000_000))  # a runaway day
    assert p.ai_allowance_left(CATALOG, p.Spend("byok", 10**12, 10**12))  # their own key: not metered here


def test_an_agent_answers_with_a_model_its_plan_allows() -> None:
    free = CATALOG.limits("free")
    assert p.model_for_plan(free, "claude-sonnet-4-6") == "claude-haiku-4-5"
    assert p.model_for_plan(free, "offline-1") == "offline-1"
    assert p.model_for_plan(CATALOG.limits("pro"), "claude-opus-4-1") == "claude-opus-4-1"


FREE = "free: {name: Free, monthly_price_cents: 0, summary: x, limits: {}}"


def test_a_catalog_without_the_free_plan_or_with_unknown_upgrades_is_refused() -> None:
    with pytest.raises(ValueError, match="free"):
        p.parse_catalog(
            "plans: {pro: {name: Pro, monthly_price_cents: 1, summary: x, limits: {}}}\nupgrade_order: []"
        )
    with pytest.raises(ValueError, match="gold"):
        p.parse_catalog(f"plans: {{{FREE}}}\nupgrade_order: [free, gold]")
    with pytest.raises(ValueError, match=r"plans\.yaml.*seat"):
        p.parse_catalog(
            f"plans: {{{FREE.replace('limits: {}', 'limits: {seat: 1}')}}}\nupgrade_order: [free]"
        )


def test_the_owner_is_told_until_when_the_agent_is_paused() -> None:
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert p.ai_paused_until(CATALOG, p.Spend("free", 1_000, 1_000), now) is None
    assert p.ai_paused_until(CATALOG, p.Spend("free", 2_000_000, 0), now) == "2026-12-01T00:00:00+00:00"
    assert (
        p.ai_paused_until(CATALOG, p.Spend("free", 1_500_000, 1_000_000), now) == "2026-11-26T00:00:00+00:00"
    )
    december = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert p.ai_paused_until(CATALOG, p.Spend("free", 2_000_000, 0), december) == "2027-01-01T00:00:00+00:00"
    assert p.ai_paused_until(CATALOG, p.Spend("byok", 10**12, 10**12), now) is None
