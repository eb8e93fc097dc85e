"""What a Stripe subscription means for an inbox's plan, as tables: status and price → plan,
the grace of a past-due subscription, which subscription decides, and MOLTBOT_STRIPE_PRICES."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.billing.stripe_billing import subscription_of
from domain import billing

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PRICES = {"pro": "price_pro", "team": "price_team"}
STATUSES = (
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid", "paused",
)  # fmt: skip


def _subscription(
    status: str = "active", price: str | None = "price_pro", **fields: object
) -> billing.Subscription:
    values: dict[str, object] = {"id": "sub_1", "customer_id": "cus_1", "status": status, "price_id": price}
    return billing.Subscription(**(values | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "price", "plan", "reason"),
    [
        ("active", "price_pro", "pro", "paid"),
        ("active", "price_team", "team", "paid"),
        ("trialing", "price_team", "team", "paid"),
        ("active", "price_someone_elses", None, "unknown_price"),  # not ours to grant: left as is
        ("active", None, None, "unknown_price"),
        ("past_due", "price_pro", "pro", "past_due"),  # kept while Stripe retries
        ("canceled", "price_pro", "free", "ended"),
        ("unpaid", "price_team", "free", "ended"),
        ("incomplete_expired", "price_pro", "free", "ended"),
        ("paused", "price_pro", "free", "ended"),
        ("canceled", "price_someone_elses", "free", "ended"),
        ("incomplete", "price_pro", None, "pending"),  # the first payment is not made yet
        ("a_status_stripe_adds_later", "price_pro", None, "pending"),
    ],
)
def test_the_plan_a_subscription_gives(status: str, price: str | None, plan: str | None, reason: str) -> None:
    decision = billing.decide(_subscription(status, price), PRICES, None, AT)
    assert (decision.plan, decision.reason) == (plan, reason)
    assert (decision.grace_until is not None) == (status == "past_due")


def test_cancel_at_period_end_keeps_the_paid_plan_until_stripe_ends_it() -> None:
    cancelling = _subscription("active", cancel_at_period_end=True, current_period_end=AT + timedelta(days=9))
    assert billing.decide(cancelling, PRICES, None, AT).plan == "pro"
    ended = _subscription("canceled", cancel_at_period_end=True, current_period_end=AT)
    assert billing.decide(ended, PRICES, None, AT).plan == "free"


def test_the_grace_of_a_past_due_subscription_starts_once() -> None:
    first = billing.decide(_subscription("past_due"), PRICES, None, AT)
    assert first.grace_until == AT + billing.GRACE_PERIOD
    recorded = billing.Standing(
        subscription_id="sub_1", status="past_due", plan="pro", grace_until=first.grace_until
    )
    later = billing.decide(_subscription("past_due"), PRICES, recorded, AT + timedelta(days=3))
    assert later.grace_until == first.grace_until  # a later failure does not extend it
    other = billing.decide(_subscription("past_due", id="sub_2"), PRICES, recorded, AT + timedelta(days=3))
    assert other.grace_until == AT + timedelta(days=3) + billing.GRACE_PERIOD
    paid_again = billing.decide(_subscription("active"), PRICES, recorded, AT + timedelta(days=4))
    assert paid_again.grace_until is None


@pytest.mark.parametrize(
    ("recorded", "incoming", "follows"),
    [
        (None, "active", True),
        (billing.Standing(), "canceled", True),  # a customer without a subscription yet
        (billing.Standing(subscription_id="sub_1", status="active"), "canceled", True),  # the same one
        (billing.Standing(subscription_id="sub_old", status="active"), "active", True),  # a newer live one
        (billing.Standing(subscription_id="sub_old", status="past_due"), "trialing", True),
        (billing.Standing(subscription_id="sub_old", status="active"), "canceled", False),  # a stale one ends
        (billing.Standing(subscription_id="sub_old", status="active"), "incomplete", False),
        (billing.Standing(subscription_id="sub_old", status="canceled"), "active", True),  # subscribed again
        (billing.Standing(subscription_id="sub_old", status="canceled"), "canceled", True),
    ],
)
def test_which_subscription_decides_the_plan(
    recorded: billing.Standing | None, incoming: str, follows: bool
) -> None:
    assert billing.follows(recorded, _subscription(incoming)) is follows


@given(
    status=st.sampled_from(STATUSES),
    price=st.sampled_from(["price_pro", "price_team", "price_other", None]),
    cancel=st.booleans(),
)
def test_a_decision_is_a_plan_of_the_catalog_or_none_and_only_live_ones_pay(
    status: str, price: str | None, cancel: bool
) -> None:
    decision = billing.decide(_subscription(status, price, cancel_at_period_end=cancel), PRICES, None, AT)
    assert decision.plan in (None, "free", "pro", "team")
    if decision.plan in ("pro", "team"):
        assert status in billing.LIVE
        assert PRICES[decision.plan] == price
    if status in billing.ENDED:
        assert decision.plan == "free"


@pytest.mark.parametrize(
    ("text", "prices"),
    [
        ("pro=price_1", {"pro": "price_1"}),
        (" pro = price_1 , team=price_2 ,", {"pro": "price_1", "team": "price_2"}),
    ],
)
def test_prices_are_read_from_the_setting(text: str, prices: dict[str, str]) -> None:
    assert billing.parse_prices(text, {"pro", "team"}) == prices


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("pro", "not plan=price_id"),
        ("pro=", "not plan=price_id"),
        ("free=price_0", "'free' is not a paid plan"),
        ("platinum=price_9", "'platinum' is not a paid plan"),
        ("pro=price_1,pro=price_2", "names 'pro' twice"),
        ("pro=price_1,team=price_1", "to two plans"),
    ],
)
def test_a_wrong_prices_setting_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="MOLTBOT_STRIPE_PRICES") as refused:
        billing.parse_prices(text, {"pro", "team"})
    assert says in str(refused.value)


def test_a_subscription_object_is_read_from_its_first_item() -> None:
    raw = {
        "id": "sub_9", "object": "subscription", "customer": {"id": "cus_9", "object": "customer"},
        "status": "trialing", "cancel_at_period_end": True, "metadata": {"tenant_id": "t_1"},
        "items": {
            "object": "list", "data": [{"price": {"id": "price_team"}, "current_period_end": 1_800_000_000}],
        },
    }  # fmt: skip
    assert subscription_of(raw) == billing.Subscription(
        id="sub_9", customer_id="cus_9", status="trialing", price_id="price_team", cancel_at_period_end=True,
        current_period_end=datetime.fromtimestamp(1_800_000_000, UTC), tenant_hint="t_1",
    )  # fmt: skip
    # Older API versions kept the period on the subscription.
    older = subscription_of({"id": "sub_8", "customer": "cus_8", "status": "active", "current_period_end": 1})
    assert (older.price_id, older.current_period_end) == (None, datetime.fromtimestamp(1, UTC))
