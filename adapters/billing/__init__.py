"""Billing: Stripe subscriptions (``stripe_billing``: the Stripe API; ``subscriptions``: the
product's tables and what each Stripe event changes). Nothing outside this package speaks Stripe."""
