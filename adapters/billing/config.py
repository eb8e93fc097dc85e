"""The deployment's Stripe settings (``MOLTBOT_STRIPE_*``), kept light: no Stripe import."""

from __future__ import annotations

from dataclasses import dataclass, field

STRIPE_API = "https://api.stripe.com"
METER_EVENT = "ai_overage_micros"  # the event name of the Stripe meter the AI overage goes to


@dataclass(frozen=True)
class StripeConfig:
    """Billing is on when a gateway is given one of these (``GatewayContext.billing``)."""

    secret_key: str = field(repr=False)  # MOLTBOT_STRIPE_SECRET_KEY
    webhook_secret: str = field(repr=False)  # MOLTBOT_STRIPE_WEBHOOK_SECRET: whsec_…
    prices: dict[str, str]  # MOLTBOT_STRIPE_PRICES: {plan: Stripe price id}
    api_base: str = STRIPE_API  # MOLTBOT_STRIPE_API_BASE: a local fake in tests
    max_network_retries: int = 2  # each retry with the same Idempotency-Key
    meter_event: str = METER_EVENT  # MOLTBOT_STRIPE_METER_EVENT: the meter of the AI overage
