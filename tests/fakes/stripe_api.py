"""A fake of the part of Stripe's API the product uses, served on 127.0.0.1.

The real ``stripe`` client talks to it (``StripeClient(base_addresses=...)``), so tests exercise
its form encoding, Idempotency-Key headers, retries and error classes, not a mock of them.
It speaks Stripe's wire format: form bodies with brackets (``line_items[0][price]=…``), JSON
objects with ``object`` names, errors as ``{"error": {"type", "code", "message", "param"}}``, and
a request repeated with the same ``Idempotency-Key`` gets the first successful answer again
(the same key with other parameters is an ``idempotency_error``).

Served: ``POST /v1/customers``, ``POST /v1/checkout/sessions``, ``POST /v1/billing_portal/sessions``,
``GET /v1/subscriptions/{id}``, ``POST /v1/billing/meter_events`` (one per ``identifier``: as
Stripe does, a repeated identifier under another Idempotency-Key is refused with ``400 An event
already exists with identifier …``, and a timestamp older than 35 days or over 5 minutes ahead
is refused; ``meter_event_delay`` holds each answer back after the event is kept, as a slow
network would, so a client can die between Stripe keeping an event and hearing so).

Test controls play Stripe's side of a subscription and post signed events (the
``Stripe-Signature`` of ``stripe.WebhookSignature``) to ``webhook_url``:
:meth:`FakeStripe.complete_checkout` (the person paid: the subscription, then
``checkout.session.completed``, ``customer.subscription.created`` and ``invoice.paid``),
:meth:`~FakeStripe.cancel_at_period_end`, :meth:`~FakeStripe.end_period` (the subscription is
deleted), :meth:`~FakeStripe.fail_payment` (past due), :meth:`~FakeStripe.resend` (a repeated
delivery) and :meth:`~FakeStripe.deliver` (any event). ``requests`` and ``deliveries`` record
what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import stripe

from tests.fakes.serving import serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Json = dict[str, Any]

API_VERSION = "2026-10-28.endive"
PERIOD = 30 * 24 * 3600  # seconds in the fake's billing period
METER_EVENT_PAST = 35 * 24 * 3600  # a meter event's timestamp may be this old at most
METER_EVENT_FUTURE = 5 * 60  # and this far ahead
_KEY = re.compile(r"[^\[\]]+")
_SUBSCRIPTION_PATH = re.compile(r"^/v1/subscriptions/(?P<id>[A-Za-z0-9_]+)$")


class StripeApiError(Exception):
    def __init__(
        self, status: int, error_type: str, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"type": error_type, "message": message}
        if code:
            self.body["code"] = code
        if param:
            self.body["param"] = param


@dataclass
class Request:
    method: str
    path: str
    params: Json
    headers: dict[str, str]


@dataclass
class Delivery:
    event: Json
    status: int
    body: Json | str


def parse_form(body: str) -> Json:
    """A form body as Stripe reads it: ``a[b][0][c]=v`` → ``{"a": {"b": [{"c": "v"}]}}``."""
    tree: Json = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _KEY.findall(key)
        if not parts:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    parsed: Json = _lists(tree)
    return parsed


def _lists(value: Any) -> Any:
    """Maps whose keys are all indexes, as lists (Stripe sends arrays as ``[0]``, ``[1]``…)."""
    if not isinstance(value, dict):
        return value
    converted = {key: _lists(item) for key, item in value.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


class FakeStripe:
    """One Stripe account in test mode: its objects, what was asked, and its webhook endpoint."""

    def __init__(self, secret_key: str, webhook_secret: str, prices: Sequence[str]) -> None:
        self.base_url = ""
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None  # where events are posted (the app's /v1/webhooks/stripe)
        self.prices = set(prices)
        self.customers: dict[str, Json] = {}
        self.sessions: dict[str, Json] = {}
        self.portal_sessions: dict[str, Json] = {}
        self.subscriptions: dict[str, Json] = {}
        self.meter_events: dict[str, Json] = {}
        self.meter_event_delay = 0.0  # seconds each meter event's answer waits after it is kept
        self.events: dict[str, Json] = {}
        self.requests: list[Request] = []
        self.deliveries: list[Delivery] = []
        self._answers: dict[str, tuple[str, Json, int, Json]] = {}  # Idempotency-Key → first answer
        # What each open session will make (its price, the subscription's metadata): Stripe
        # does not show these on the session object.
        self._pending: dict[str, tuple[str, Json]] = {}
        self._numbers = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_test{next(self._numbers):08d}"

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = (await _read_body(receive)).decode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        params = parse_form(body or scope.get("query_string", b"").decode())
        self.requests.append(Request(method, path, params, headers))
        if method == "GET" and path.startswith("/pay/"):  # where Checkout sends the browser
            await _page(send, f"Stripe Checkout (fake): {path.removeprefix('/pay/')}")
            return
        key = headers.get("idempotency-key") if method == "POST" else None
        try:
            if headers.get("authorization") != f"Bearer {self.secret_key}":
                raise StripeApiError(401, "invalid_request_error", "Invalid API Key provided.")
            if key is not None and key in self._answers:
                status, answer = self._replay(key, f"{method} {path}", params)
            else:
                status, answer = 200, self._route(method, path, params)
        except StripeApiError as exc:
            status, answer = exc.status, {"error": exc.body}
        if key is not None and key not in self._answers and status < 400:  # Stripe keeps what ran
            self._answers[key] = (f"{method} {path}", params, status, answer)
        if path == "/v1/billing/meter_events" and self.meter_event_delay:
            await asyncio.sleep(self.meter_event_delay)
        await _json(send, status, answer, key)

    def _replay(self, key: str, route: str, params: Json) -> tuple[int, Json]:
        first_route, first_params, status, answer = self._answers[key]
        if (first_route, first_params) != (route, params):
            raise StripeApiError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were"
                f" first used with. Try using a key other than '{key}' if you meant to execute a"
                " different request.",
            )
        return status, answer

    def _route(self, method: str, path: str, params: Json) -> Json:
        if method == "POST" and path == "/v1/customers":
            return self._create_customer(params)
        if method == "POST" and path == "/v1/checkout/sessions":
            return self._create_session(params)
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return self._create_portal(params)
        if method == "POST" and path == "/v1/billing/meter_events":
            return self._meter_event(params)
        found = _SUBSCRIPTION_PATH.match(path)
        if method == "GET" and found:
            subscription = self.subscriptions.get(found["id"])
            if subscription is None:
                raise StripeApiError(
                    404, "invalid_request_error", f"No such subscription: '{found['id']}'",
                    code="resource_missing", param="id",
                )  # fmt: skip
            return subscription
        raise StripeApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    def _create_customer(self, params: Json) -> Json:
        customer = {
            "id": self._id("cus"), "object": "customer", "created": int(time.time()), "livemode": False,
            "email": params.get("email"), "name": params.get("name"), "metadata": params.get("metadata", {}),
        }  # fmt: skip
        self.customers[customer["id"]] = customer
        return customer

    def _customer(self, params: Json) -> str:
        customer_id = params.get("customer")
        if customer_id not in self.customers:
            raise StripeApiError(
                400, "invalid_request_error", f"No such customer: '{customer_id}'", code="resource_missing",
                param="customer",
            )  # fmt: skip
        return str(customer_id)

    def _create_session(self, params: Json) -> Json:
        customer_id = self._customer(params)
        items = params.get("line_items") or []
        for index, item in enumerate(items):
            if item.get("price") not in self.prices:
                raise StripeApiError(
                    400, "invalid_request_error", f"No such price: '{item.get('price')}'",
                    code="resource_missing", param=f"line_items[{index}][price]",
                )  # fmt: skip
        if params.get("mode") != "subscription" or not items:
            raise StripeApiError(400, "invalid_request_error", "fake_stripe sells subscriptions only.")
        session_id = self._id("cs")
        session = {
            "id": session_id, "object": "checkout.session", "url": f"{self.base_url}/pay/{session_id}",
            "mode": "subscription", "customer": customer_id, "status": "open", "payment_status": "unpaid",
            "client_reference_id": params.get("client_reference_id"), "subscription": None,
            "metadata": params.get("metadata", {}), "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"), "livemode": False, "created": int(time.time()),
        }  # fmt: skip
        self.sessions[session_id] = session
        self._pending[session_id] = (
            items[0]["price"],
            (params.get("subscription_data") or {}).get("metadata", {}),
        )
        return session

    def _create_portal(self, params: Json) -> Json:
        customer_id = self._customer(params)
        portal_id = self._id("bps")
        portal = {
            "id": portal_id, "object": "billing_portal.session", "url": f"{self.base_url}/portal/{portal_id}",
            "customer": customer_id, "return_url": params.get("return_url"), "livemode": False,
            "created": int(time.time()),
        }  # fmt: skip
        self.portal_sessions[portal_id] = portal
        return portal

    def _meter_event(self, params: Json) -> Json:
        identifier = params.get("identifier") or self._id("mev")
        if identifier in self.meter_events:
            raise StripeApiError(
                400, "invalid_request_error", f"An event already exists with identifier {identifier}."
            )
        now = int(time.time())
        timestamp = int(params.get("timestamp") or now)
        if not now - METER_EVENT_PAST <= timestamp <= now + METER_EVENT_FUTURE:
            raise StripeApiError(
                400, "invalid_request_error", "Timestamp must be within the past 35 calendar days or up to"
                " 5 minutes in the future.", code="parameter_invalid_integer", param="timestamp",
            )  # fmt: skip
        self.meter_events[identifier] = {
            "object": "billing.meter_event", "event_name": params.get("event_name"),
            "identifier": identifier, "payload": params.get("payload", {}), "timestamp": timestamp,
            "livemode": False, "created": now,
        }  # fmt: skip
        return self.meter_events[identifier]

    # --- Stripe's side of a subscription (test controls) ------------------------------------

    async def complete_checkout(self, session_id: str, *, order: Sequence[str] | None = None) -> str:
        """The person paid on the Checkout page: the subscription starts (active), the session
        completes, and the three events are posted (in ``order`` if given); its id."""
        session = self.sessions[session_id]
        price_id, metadata = self._pending[session_id]
        now = int(time.time())
        subscription_id = self._id("sub")
        self.subscriptions[subscription_id] = {
            "id": subscription_id, "object": "subscription", "customer": session["customer"],
            "status": "active", "cancel_at_period_end": False, "canceled_at": None, "ended_at": None,
            "created": now, "start_date": now, "livemode": False, "metadata": dict(metadata),
            "items": {
                "object": "list", "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription_id}",
                "data": [{
                    "id": self._id("si"), "object": "subscription_item", "quantity": 1,
                    "subscription": subscription_id, "current_period_start": now,
                    "current_period_end": now + PERIOD,
                    "price": {"id": price_id, "object": "price", "recurring": {"interval": "month"}},
                }],
            },
        }  # fmt: skip
        session.update(status="complete", payment_status="paid", subscription=subscription_id)
        events = {
            "checkout.session.completed": self.event("checkout.session.completed", dict(session)),
            "customer.subscription.created": self.event(
                "customer.subscription.created", self.snapshot(subscription_id)
            ),
            "invoice.paid": self.event("invoice.paid", self._invoice(subscription_id, "paid")),
        }
        for event_type in order or list(events):
            await self.deliver(events[event_type])
        return subscription_id

    async def cancel_at_period_end(self, subscription_id: str) -> None:
        """The person cancelled in the portal: paid until the period ends."""
        subscription = self.subscriptions[subscription_id]
        subscription.update(cancel_at_period_end=True, canceled_at=int(time.time()))
        previous = {"cancel_at_period_end": False, "canceled_at": None}
        await self.deliver(
            self.event("customer.subscription.updated", self.snapshot(subscription_id), previous)
        )

    async def end_period(self, subscription_id: str) -> None:
        """Stripe ends the subscription (the period of a cancelled one ended, or retries ran out)."""
        subscription = self.subscriptions[subscription_id]
        subscription.update(status="canceled", ended_at=int(time.time()))
        await self.deliver(self.event("customer.subscription.deleted", self.snapshot(subscription_id)))

    async def fail_payment(self, subscription_id: str) -> None:
        """The renewal's payment failed: past due while Stripe retries."""
        self.subscriptions[subscription_id]["status"] = "past_due"
        await self.deliver(self.event("invoice.payment_failed", self._invoice(subscription_id, "open")))
        await self.deliver(
            self.event("customer.subscription.updated", self.snapshot(subscription_id), {"status": "active"})
        )

    async def resend(self, event_id: str) -> Delivery:
        """Stripe delivering an event again (same id, signed anew)."""
        return await self.deliver(self.events[event_id])

    def signature(self, payload: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
        """The Stripe-Signature header of ``payload`` (another ``secret`` to forge one)."""
        header: str = stripe.WebhookSignature.generate_signature_header(
            payload, secret or self.webhook_secret, timestamp=timestamp
        )
        return header

    async def deliver(self, event: Json) -> Delivery:
        """Post ``event`` to ``webhook_url``, signed; what the endpoint answered."""
        assert self.webhook_url, "set FakeStripe.webhook_url to the app's /v1/webhooks/stripe"
        payload = json.dumps(event)
        headers = {"Stripe-Signature": self.signature(payload), "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(self.webhook_url, content=payload, headers=headers)
        try:
            body: Json | str = response.json()
        except ValueError:
            body = response.text
        delivery = Delivery(event, response.status_code, body)
        self.deliveries.append(delivery)
        return delivery

    def event(self, event_type: str, obj: Json, previous: Json | None = None) -> Json:
        """A new event of this account about ``obj`` (delivered with :meth:`deliver`)."""
        data: Json = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        event_id = self._id("evt")
        event: Json = {
            "id": event_id, "object": "event", "api_version": API_VERSION, "created": int(time.time()),
            "type": event_type, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "data": data,
        }  # fmt: skip
        self.events[event_id] = event
        return event

    def snapshot(self, subscription_id: str) -> Json:
        """The subscription as an event carries it: a copy, frozen at the event's time."""
        copied: Json = json.loads(json.dumps(self.subscriptions[subscription_id]))
        return copied

    def _invoice(self, subscription_id: str, status: str) -> Json:
        subscription = self.subscriptions[subscription_id]
        item = subscription["items"]["data"][0]
        return {
            "id": self._id("in"), "object": "invoice", "customer": subscription["customer"],
            "status": status, "amount_due": 1900, "amount_paid": 1900 if status == "paid" else 0,
            "currency": "usd", "livemode": False, "created": int(time.time()),
            "parent": {
                "type": "subscription_details", "quote_details": None,
                "subscription_details": {
                    "subscription": subscription_id, "metadata": subscription["metadata"],
                },
            },
            "period_start": item["current_period_start"], "period_end": item["current_period_end"],
        }  # fmt: skip


async def _page(send: Send, title: str) -> None:
    body = f"<!doctype html><title>{title}</title><h1>{title}</h1>".encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, body: Json, idempotency_key: str | None) -> None:
    headers = [(b"content-type", b"application/json"), (b"request-id", b"req_fake"),
               (b"stripe-version", API_VERSION.encode())]  # fmt: skip
    if idempotency_key is not None:
        headers.append((b"idempotency-key", idempotency_key.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@contextlib.asynccontextmanager
async def fake_stripe(
    secret_key: str = "sk_test_fake", webhook_secret: str = "whsec_fake", prices: Sequence[str] = ()
) -> AsyncIterator[FakeStripe]:
    """Serve a :class:`FakeStripe` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeStripe(secret_key, webhook_secret, prices)
    async with serving(fake, "Stripe API") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake
