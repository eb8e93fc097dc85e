"""MOLTBOT_STRIPE_*: billing is off without them, a partial setup fails at start naming the key
that is missing, the prices name paid plans of plans.yaml, and the secrets never show."""

from __future__ import annotations

import pytest

from adapters.billing.config import STRIPE_API
from moltbot.settings import Settings

STRIPE = {
    "MOLTBOT_STRIPE_SECRET_KEY": "sk_test_very_secret_key",
    "MOLTBOT_STRIPE_WEBHOOK_SECRET": "whsec_very_secret_signing",
    "MOLTBOT_STRIPE_PRICES": "pro=price_pro,team=price_team",
}


def test_billing_is_off_without_stripe_settings() -> None:
    assert Settings.load({}).billing() is None


def test_the_stripe_settings_make_billing_on_at_stripe_or_a_fake() -> None:
    config = Settings.load(STRIPE).billing()
    assert config is not None
    assert config.prices == {"pro": "price_pro", "team": "price_team"}
    assert config.api_base == STRIPE_API
    fake = Settings.load(STRIPE | {"MOLTBOT_STRIPE_API_BASE": "http://127.0.0.1:4242/"}).billing()
    assert fake is not None and fake.api_base == "http://127.0.0.1:4242"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        (
            {k: v for k, v in STRIPE.items() if k != "MOLTBOT_STRIPE_WEBHOOK_SECRET"},
            "MOLTBOT_STRIPE_WEBHOOK_SECRET",
        ),
        ({k: v for k, v in STRIPE.items() if k != "MOLTBOT_STRIPE_PRICES"}, "MOLTBOT_STRIPE_PRICES"),
        ({"MOLTBOT_STRIPE_PRICES": "pro=price_pro"}, "MOLTBOT_STRIPE_SECRET_KEY"),
        ({"MOLTBOT_STRIPE_API_BASE": "http://127.0.0.1:1"}, "MOLTBOT_STRIPE_SECRET_KEY"),
        ({"MOLTBOT_STRIPE_METER_EVENT": "ai_spend"}, "MOLTBOT_STRIPE_SECRET_KEY"),
        (STRIPE | {"MOLTBOT_STRIPE_PRICES": "free=price_free"}, "'free' is not a paid plan of plans.yaml"),
        (STRIPE | {"MOLTBOT_STRIPE_PRICES": "byok=price_byok"}, "'byok' is not a paid plan of plans.yaml"),
    ],
)
def test_an_incomplete_stripe_setup_fails_at_start_saying_what_to_set(
    environ: dict[str, str], names: str
) -> None:
    with pytest.raises(ValueError, match="MOLTBOT_STRIPE") as refused:
        Settings.load(environ)
    assert names in str(refused.value)


def test_the_stripe_secrets_never_show() -> None:
    settings = Settings.load(STRIPE)
    shown = f"{settings!r} {settings.billing()!r}"
    assert "sk_test_very_secret_key" not in shown
    assert "whsec_very_secret_signing" not in shown
    assert "stripe_secret_key=***" in shown
    assert "price_pro" in shown  # prices are not secrets


def test_the_overage_meter_and_how_often_it_is_reported() -> None:
    default = Settings.load(STRIPE)
    assert (default.billing() or pytest.fail("billing is on")).meter_event == "ai_overage_micros"
    assert default.billing_interval == 300.0
    given = Settings.load(
        STRIPE | {"MOLTBOT_STRIPE_METER_EVENT": "ai_spend", "MOLTBOT_BILLING_INTERVAL": "2.5"}
    )
    assert (given.billing() or pytest.fail("billing is on")).meter_event == "ai_spend"
    assert given.billing_interval == 2.5
    for wrong in ("0", "-1", "soon", "nan"):
        with pytest.raises(ValueError, match="MOLTBOT_BILLING_INTERVAL"):
            Settings.load(STRIPE | {"MOLTBOT_BILLING_INTERVAL": wrong})
