"""Billing's errors; ``str()`` is written for a person. The gateway answers each once
(gateway/errors.py)."""

from __future__ import annotations


class BillingError(Exception):
    """Stripe refused a request the product made (a wrong key, a price that does not exist)."""


class BillingUnavailable(BillingError):
    """Stripe could not be asked (network, rate limit, outage); try again shortly."""


class BadStripeSignature(BillingError):
    """A webhook delivery whose Stripe-Signature does not match its body: nothing is stored."""


class BadStripeEvent(BillingError):
    """A correctly signed webhook body that is not a Stripe event."""
