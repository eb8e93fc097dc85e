"""Billing: Stripe subscriptions (``stripe_billing``: the Stripe API; ``subscriptions``: the
product's tables and what each Stripe event changes) and the AI overage reported to Stripe's
meter (``metering``: the billing worker). Nothing outside this package speaks Stripe."""
