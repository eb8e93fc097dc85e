"""The Stripe API as the product uses it: customers, Checkout and Customer Portal sessions,
reading a subscription back, checking a webhook's signature, and meter events (the AI overage).

One ``stripe.StripeClient`` (async methods, over httpx) pointed at ``StripeConfig.api_base``
(Stripe, or a local fake in tests). Every write carries an ``Idempotency-Key`` derived from the
product's own ids, and a retry (``max_network_retries``) repeats it, so Stripe does it once.
Stripe objects end here: callers get :class:`domain.billing.Subscription`, :class:`StripeEvent`
and plain strings. The ``stripe`` package is imported when billing is switched on, not with
this module (the gateway's context names this class, and every role imports that).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import msgspec

from adapters.billing.config import StripeConfig
from adapters.billing.errors import BadStripeEvent, BadStripeSignature, BillingError, BillingUnavailable
from domain.billing import Subscription

T = TypeVar("T")
SIGNATURE_TOLERANCE = 300  # seconds: an older signed delivery is refused (a replayed capture)
# How Stripe refuses a meter event whose identifier it has already (within at least 24 hours).
_IDENTIFIER_TAKEN = "already exists with identifier"
MeterOutcome = Literal["accepted", "already_reported"]


class StripeEvent(msgspec.Struct, frozen=True):
    """A verified Stripe event: its id (the unit of "handled once"), type, time and object."""

    id: str
    type: str
    created: int
    object: dict[str, Any]


class CheckoutSession(msgspec.Struct, frozen=True):
    id: str
    url: str


class StripeBilling:
    """The deployment's Stripe account (``GatewayContext.billing``: billing is on)."""

    def __init__(self, config: StripeConfig) -> None:
        import stripe  # only a gateway with billing on loads it

        self.config = config
        self._http = stripe.HTTPXClient(timeout=20)
        base = config.api_base.rstrip("/")
        self._client = stripe.StripeClient(
            config.secret_key,
            base_addresses={"api": base, "meter_events": base},
            max_network_retries=config.max_network_retries,
            http_client=self._http,
        )

    @property
    def prices(self) -> dict[str, str]:
        """{plan: Stripe price id}: the plans a person can buy here."""
        return self.config.prices

    async def aclose(self) -> None:
        await self._http.close_async()

    async def create_customer(self, tenant_id: str, *, email: str | None, name: str | None) -> str:
        """A Stripe customer for the inbox (once: the key is the tenant's), its id."""
        params: dict[str, Any] = {"metadata": {"tenant_id": tenant_id}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        customer = await _asked(
            self._client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"moltbot-customer-{tenant_id}"},
            )
        )
        return str(customer.id)

    async def checkout(
        self,
        *,
        tenant_id: str,
        customer_id: str,
        plan: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        """A Checkout Session that subscribes ``customer_id`` to ``plan``'s price."""
        params: dict[str, Any] = {
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": tenant_id,
            "line_items": [{"price": self.prices[plan], "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"tenant_id": tenant_id, "plan": plan},
            "subscription_data": {"metadata": {"tenant_id": tenant_id}},
        }
        session = await _asked(
            self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        if not session.url:
            raise BillingError("Stripe made a Checkout Session without a URL.")
        return CheckoutSession(str(session.id), str(session.url))

    async def portal(self, *, customer_id: str, return_url: str, idempotency_key: str) -> str:
        """The URL of a Customer Portal session for ``customer_id``."""
        session = await _asked(
            self._client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": return_url},
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(session.url)

    async def subscription(self, subscription_id: str) -> Subscription | None:
        """The subscription as Stripe has it now; None when Stripe has no such subscription."""
        try:
            found = await _asked(self._client.v1.subscriptions.retrieve_async(subscription_id))
        except _Missing:
            return None
        return subscription_of(found.to_dict())

    async def meter_event(
        self, *, event_name: str, identifier: str, customer_id: str, value: int, timestamp: int
    ) -> MeterOutcome:
        """Report ``value`` on the meter ``event_name`` for ``customer_id`` at ``timestamp``, once:
        ``identifier`` is also the Idempotency-Key, so a resend gets Stripe's first answer again
        (``accepted``). Stripe refusing the identifier as taken, or the key as used with other
        parameters, means it has this event already: ``already_reported``."""
        params: dict[str, Any] = {
            "event_name": event_name,
            "identifier": identifier,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "timestamp": timestamp,
        }
        try:
            await _asked(
                self._client.v1.billing.meter_events.create_async(
                    params=params,  # type: ignore[arg-type]
                    options={"idempotency_key": identifier},
                )
            )
        except _Duplicate:
            return "already_reported"
        return "accepted"

    def verify(self, body: bytes, signature: str | None) -> StripeEvent:
        """The event ``body`` holds, if ``signature`` (Stripe-Signature) is Stripe's for it."""
        import stripe

        try:
            event = self._client.construct_event(
                body, signature, self.config.webhook_secret, tolerance=SIGNATURE_TOLERANCE
            )
        except stripe.SignatureVerificationError:
            raise BadStripeSignature(
                "The Stripe-Signature header does not match this body for the webhook secret set here"
                " (MOLTBOT_STRIPE_WEBHOOK_SECRET), or it is older than 5 minutes: nothing was stored."
            ) from None
        except ValueError as exc:
            raise BadStripeEvent(f"The body is not a Stripe event: {exc}") from None
        raw = event.to_dict()
        try:
            return StripeEvent(
                id=str(raw["id"]),
                type=str(raw["type"]),
                created=int(raw.get("created") or 0),
                object=dict(raw["data"]["object"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadStripeEvent(f"The body is not a Stripe event (no {exc}).") from None


def subscription_of(raw: dict[str, Any]) -> Subscription:
    """A subscription object (a dict) as the domain reads it: the first item's price and period."""
    items = (raw.get("items") or {}).get("data") or []
    first: dict[str, Any] = items[0] if items else {}
    # The current API keeps the period on each item; older versions on the subscription.
    period_end = first.get("current_period_end") or raw.get("current_period_end")
    metadata = raw.get("metadata") or {}
    return Subscription(
        id=str(raw["id"]),
        customer_id=_id(raw.get("customer")) or "",
        status=str(raw.get("status") or ""),
        price_id=_id(first.get("price")),
        cancel_at_period_end=bool(raw.get("cancel_at_period_end")),
        current_period_end=datetime.fromtimestamp(int(period_end), UTC) if period_end else None,
        tenant_hint=str(metadata["tenant_id"]) if metadata.get("tenant_id") else None,
    )


def _id(value: Any) -> str | None:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


class _Missing(BillingError):
    """Stripe answered 404 (resource_missing)."""


class _Duplicate(BillingError):
    """Stripe has it already: a meter event's identifier, or an Idempotency-Key used with other
    parameters."""


async def _asked(call: Awaitable[T]) -> T:
    """The call's answer; Stripe's errors as the product's (a 404 as :class:`_Missing`, what
    Stripe has already as :class:`_Duplicate`)."""
    import stripe

    try:
        return await call
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise BillingUnavailable(f"Stripe could not be reached: {exc.user_message or exc}") from None
    except stripe.APIError as exc:
        raise BillingUnavailable(f"Stripe had an error: {exc.user_message or exc}") from None
    except stripe.IdempotencyError as exc:
        raise _Duplicate(f"Stripe refused the request: {exc.user_message or exc}") from None
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise _Missing(str(exc)) from None
        if _IDENTIFIER_TAKEN in str(exc.user_message or exc):
            raise _Duplicate(f"Stripe refused the request: {exc.user_message or exc}") from None
        raise BillingError(f"Stripe refused the request: {exc.user_message or exc}") from None
    except stripe.AuthenticationError:
        raise BillingError("Stripe refused MOLTBOT_STRIPE_SECRET_KEY.") from None
    except stripe.StripeError as exc:
        raise BillingError(f"Stripe refused the request: {exc.user_message or exc}") from None
