"""Paying for a plan with Stripe, over the whole product: the real ``stripe`` client against a
local fake of Stripe's API, which plays Stripe's side (the subscription, signed webhooks).

An inbox starts on free; checkout makes its Stripe customer once; Stripe's events make it pro
exactly once, whatever their order or how often they come; a badly signed delivery stores
nothing; cancelling keeps pro until Stripe ends the subscription; a failed payment keeps pro in
a grace period; without Stripe settings billing is off."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from adapters.billing.config import StripeConfig
from adapters.billing.stripe_billing import StripeBilling
from adapters.postgres import tenancy
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from gateway.auth import Tokens
from gateway.context import GatewayContext
from gateway.routes.billing import SubscriptionView, subscription_of
from tests.fakes.stripe_api import FakeStripe, fake_stripe
from tests.integration.conftest import Stack, member_token
from tests.integration.test_gateway import _auth, _signup

SECRET_KEY = "sk_test_moltbot_fake"
WEBHOOK_SECRET = "whsec_moltbot_fake"
PRICES = {"pro": "price_pro_monthly", "team": "price_team_monthly"}


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    async with fake_stripe(SECRET_KEY, WEBHOOK_SECRET, prices=[*PRICES.values(), "price_elsewhere"]) as fake:
        yield fake


@pytest.fixture
def billing(stripe_fake: FakeStripe) -> StripeConfig | None:
    """The gateway's Stripe settings: at the fake."""
    return StripeConfig(
        secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET, prices=PRICES, api_base=stripe_fake.base_url
    )


@pytest.fixture
def stripe_side(api: httpx.AsyncClient, stripe_fake: FakeStripe) -> FakeStripe:
    """The fake, posting its events to the gateway's webhook."""
    stripe_fake.webhook_url = f"{api.base_url}/v1/webhooks/stripe"
    return stripe_fake


async def _plan(api: httpx.AsyncClient, stack: Stack, owner: dict[str, str]) -> str:
    """The inbox's plan as the product shows it, once the read models have the whole log."""
    params = {"min_seq": await stack.store.last_seq()}
    me = await api.get("/v1/me", params=params, headers=_auth(owner))
    assert me.status_code == 200, me.text
    return str(me.json()["plan"])


async def _tenant_events(stack: Stack, tenant_id: str, event_type: str) -> list[Any]:
    subject = f"ev.{tenant_id}.tenant.{tenant_id}.>"
    return [s.event async for s in stack.store.read_events(subject=subject) if s.event.type == event_type]


async def _billing_row(stack: Stack, tenant_id: str) -> dict[str, Any]:
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT * FROM billing.customers WHERE tenant_id = %s", (tenant_id,))
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def _processed(stack: Stack) -> int:
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM billing.processed_events")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _subscription_view(
    stack: Stack, tenant_id: str, config: StripeConfig, key_file: Path
) -> SubscriptionView | None:
    """What the billing page shows (``subscription_of``), through a gateway context of its own."""
    pool = tenancy.pool(stack.database_url, max_size=1)
    await pool.open()
    stripe_billing = StripeBilling(config)
    try:
        ctx = GatewayContext(
            store=stack.store, pool=pool, tokens=Tokens.from_pem_file(key_file), billing=stripe_billing
        )
        return await subscription_of(ctx, tenant_id)
    finally:
        await stripe_billing.aclose()
        await pool.close()


async def _checkout(api: httpx.AsyncClient, owner: dict[str, str], plan: str = "pro", **headers: str) -> str:
    response = await api.post("/v1/billing/checkout", json={"plan": plan}, headers=_auth(owner) | headers)
    assert response.status_code == 200, response.text
    return str(response.json()["session_id"])


async def test_checkout_then_stripe_confirms_and_the_inbox_is_pro_once(
    api: httpx.AsyncClient, stack: Stack, stripe_side: FakeStripe, tmp_path: Path
) -> None:
    owner = await _signup(api, "billing-owner@example.com")
    assert await _plan(api, stack, owner) == "free"

    checkout = await api.post("/v1/billing/checkout", json={"plan": "pro"}, headers=_auth(owner))
    assert checkout.status_code == 200, checkout.text
    session_id = checkout.json()["session_id"]
    assert checkout.json()["url"] == f"{stripe_side.base_url}/pay/{session_id}"
    [customer] = stripe_side.customers.values()
    assert customer["metadata"] == {"tenant_id": owner["tenant_id"]}
    assert customer["email"] == "billing-owner@example.com"
    session = stripe_side.sessions[session_id]
    assert session["customer"] == customer["id"]
    assert session["client_reference_id"] == owner["tenant_id"]
    assert session["metadata"]["tenant_id"] == owner["tenant_id"]
    asked = next(r for r in stripe_side.requests if r.path == "/v1/checkout/sessions")
    assert asked.params["line_items"] == [{"price": PRICES["pro"], "quantity": "1"}]
    assert asked.params["mode"] == "subscription"
    assert asked.params["subscription_data"] == {"metadata": {"tenant_id": owner["tenant_id"]}}
    assert asked.headers["idempotency-key"].startswith(f"moltbot-checkout-{owner['tenant_id']}-pro-")

    # A second checkout reuses the customer; the same Idempotency-Key gets the same session.
    again = await _checkout(api, owner, **{"Idempotency-Key": "try-2"})
    assert again != session_id
    assert await _checkout(api, owner, **{"Idempotency-Key": "try-2"}) == again
    assert len(stripe_side.customers) == 1
    assert stripe_side.sessions[again]["customer"] == customer["id"]

    for plan in ("free", "byok", "platinum"):
        refused = await api.post("/v1/billing/checkout", json={"plan": plan}, headers=_auth(owner))
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == "plan"
        assert "pro, team" in refused.json()["detail"]
    admin = await member_token(stack, tmp_path / "jwt.pem", owner["tenant_id"], "admin")
    for path in ("/v1/billing/checkout", "/v1/billing/portal"):
        forbidden = await api.post(path, json={"plan": "pro"}, headers=_auth({"token": admin}))
        assert forbidden.status_code == 403, forbidden.text

    seq_before = await stack.store.last_seq()
    subscription_id = await stripe_side.complete_checkout(session_id)
    outcomes = [(d.event["type"], d.status, d.body) for d in stripe_side.deliveries]
    assert outcomes == [
        ("checkout.session.completed", 200, {"received": True, "outcome": "applied"}),
        ("customer.subscription.created", 200, {"received": True, "outcome": "unchanged"}),
        ("invoice.paid", 200, {"received": True, "outcome": "unchanged"}),
    ]
    assert await _plan(api, stack, owner) == "pro"
    [plan_changed] = await _tenant_events(stack, owner["tenant_id"], "plan.changed")
    assert isinstance(plan_changed, ev.PlanChanged)
    assert (plan_changed.data.plan, plan_changed.data.previous_plan) == ("pro", "free")
    assert plan_changed.actor == "billing:stripe"
    audit = (await api.get("/v1/audit", headers=_auth(owner))).json()["entries"]
    [moved] = [entry for entry in audit if entry["action"] == "plan.changed"]
    assert moved["actor"] == "billing:stripe"
    assert (moved["detail"]["from"], moved["detail"]["to"]) == ("free", "pro")
    [changed] = await _tenant_events(stack, owner["tenant_id"], "billing.subscription_changed")
    assert isinstance(changed, ev.SubscriptionChanged)
    assert changed.data.subscription_id == subscription_id
    assert (changed.data.customer_id, changed.data.status, changed.data.plan) == (
        customer["id"],
        "active",
        "pro",
    )
    period_end = stripe_side.subscriptions[subscription_id]["items"]["data"][0]["current_period_end"]
    assert changed.data.current_period_end == datetime.fromtimestamp(period_end, UTC)
    assert plan_changed.correlation_id == changed.id
    assert await stack.store.last_seq() == seq_before + 2
    row = await _billing_row(stack, owner["tenant_id"])
    assert (row["customer_id"], row["subscription_id"], row["status"], row["plan"]) == (
        customer["id"], subscription_id, "active", "pro",
    )  # fmt: skip

    # Stripe delivering the same event again: answered, and nothing changes or is stored.
    processed, last_seq = await _processed(stack), await stack.store.last_seq()
    assert processed == 3
    first = stripe_side.deliveries[0].event
    replay = await stripe_side.resend(first["id"])
    assert (replay.status, replay.body) == (200, {"received": True, "outcome": "replayed"})
    assert (await _processed(stack), await stack.store.last_seq()) == (processed, last_seq)

    # Not signed by Stripe (another secret, no header, a stale signature, a changed body):
    # 400 from the billing webhook (not the channels' /v1/webhooks/{kind}), nothing stored.
    forged = stripe_side.event("customer.subscription.deleted", stripe_side.snapshot(subscription_id))
    payload = json.dumps(forged)
    url = "/v1/webhooks/stripe"
    bad_headers = [
        {"Stripe-Signature": stripe_side.signature(payload, secret="whsec_someone_else")},
        {},
        {"Stripe-Signature": stripe_side.signature(payload, timestamp=int(time.time()) - 600)},
    ]
    for headers in bad_headers:
        refused = await api.post(url, content=payload, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "bad_signature"
        assert "MOLTBOT_STRIPE_WEBHOOK_SECRET" in refused.json()["detail"]
    tampered = await api.post(
        url,
        content=payload.replace('"active"', '"canceled"'),
        headers={"Stripe-Signature": stripe_side.signature(payload)},
    )
    assert (tampered.status_code, tampered.json()["error"]) == (400, "bad_signature")
    assert (await _processed(stack), await stack.store.last_seq()) == (processed, last_seq)
    assert await _plan(api, stack, owner) == "pro"

    portal = await api.post("/v1/billing/portal", headers=_auth(owner))
    assert portal.status_code == 200, portal.text
    [portal_session] = stripe_side.portal_sessions.values()
    assert portal.json()["url"] == portal_session["url"]
    assert portal.json()["url"].startswith(f"{stripe_side.base_url}/portal/")
    assert portal_session["customer"] == customer["id"]

    subscribed = await api.post("/v1/billing/checkout", json={"plan": "team"}, headers=_auth(owner))
    assert (subscribed.status_code, subscribed.json()["error"]) == (409, "subscribed")
    assert "/v1/billing/portal" in subscribed.json()["detail"]

    stranger = await _signup(api, "never-paid@example.com")
    no_customer = await api.post("/v1/billing/portal", headers=_auth(stranger))
    assert (no_customer.status_code, no_customer.json()["error"]) == (409, "no_customer")
    assert "/v1/billing/checkout" in no_customer.json()["detail"]


async def test_cancelled_at_period_end_stays_pro_until_stripe_ends_it(
    api: httpx.AsyncClient, stack: Stack, stripe_side: FakeStripe
) -> None:
    owner = await _signup(api, "cancels@example.com")
    subscription_id = await stripe_side.complete_checkout(await _checkout(api, owner))
    assert await _plan(api, stack, owner) == "pro"
    paid_snapshot = stripe_side.snapshot(subscription_id)

    await stripe_side.cancel_at_period_end(subscription_id)
    assert stripe_side.deliveries[-1].status == 200
    assert await _plan(api, stack, owner) == "pro"
    changes = await _tenant_events(stack, owner["tenant_id"], "billing.subscription_changed")
    assert [(c.data.status, c.data.cancel_at_period_end, c.data.plan) for c in changes] == [
        ("active", False, "pro"),
        ("active", True, "pro"),
    ]

    await stripe_side.end_period(subscription_id)
    assert stripe_side.deliveries[-1].body == {"received": True, "outcome": "applied"}
    assert await _plan(api, stack, owner) == "free"
    plans = [
        (e.data.previous_plan, e.data.plan)
        for e in await _tenant_events(stack, owner["tenant_id"], "plan.changed")
    ]
    assert plans == [("free", "pro"), ("pro", "free")]

    # A late event carrying the subscription as it was (active): Stripe is asked again, so the
    # inbox stays free.
    last_seq = await stack.store.last_seq()
    stale = await stripe_side.deliver(stripe_side.event("customer.subscription.updated", paid_snapshot))
    assert (stale.status, stale.body) == (200, {"received": True, "outcome": "unchanged"})
    assert await stack.store.last_seq() == last_seq
    assert await _plan(api, stack, owner) == "free"
    row = await _billing_row(stack, owner["tenant_id"])
    assert (row["status"], row["plan"], row["cancel_at_period_end"]) == ("canceled", "free", True)

    # Subscribing again is a new checkout for the same customer.
    again = await _checkout(api, owner, plan="team")
    assert len(stripe_side.customers) == 1
    await stripe_side.complete_checkout(again)
    assert await _plan(api, stack, owner) == "team"


async def test_a_failed_payment_keeps_pro_in_grace_until_stripe_gives_up(
    api: httpx.AsyncClient, stack: Stack, stripe_side: FakeStripe, billing: StripeConfig, tmp_path: Path
) -> None:
    owner = await _signup(api, "card-declined@example.com")
    assert await _subscription_view(stack, owner["tenant_id"], billing, tmp_path / "jwt.pem") is None
    # Stripe's events in another order than they happened: the first one decides, the others agree.
    order = ["invoice.paid", "customer.subscription.created", "checkout.session.completed"]
    subscription_id = await stripe_side.complete_checkout(await _checkout(api, owner), order=order)
    assert [d.body["outcome"] for d in stripe_side.deliveries] == ["applied", "unchanged", "unchanged"]  # type: ignore[index]
    assert await _plan(api, stack, owner) == "pro"

    before = datetime.now(UTC)
    await stripe_side.fail_payment(subscription_id)
    assert [d.status for d in stripe_side.deliveries[-2:]] == [200, 200]
    assert await _plan(api, stack, owner) == "pro"
    row = await _billing_row(stack, owner["tenant_id"])
    assert row["status"] == "past_due"
    assert before + timedelta(days=13) < row["grace_until"] < datetime.now(UTC) + timedelta(days=15)
    late = (await _tenant_events(stack, owner["tenant_id"], "billing.subscription_changed"))[-1]
    assert (late.data.status, late.data.plan, late.data.grace_until) == (
        "past_due",
        "pro",
        row["grace_until"],
    )
    shown = await _subscription_view(stack, owner["tenant_id"], billing, tmp_path / "jwt.pem")
    assert shown == SubscriptionView(
        status="past_due", plan="pro", current_period_end=late.data.current_period_end,
        cancel_at_period_end=False, grace_until=row["grace_until"], portal=True,
    )  # fmt: skip

    await stripe_side.end_period(subscription_id)  # retries ran out: Stripe cancels it
    assert await _plan(api, stack, owner) == "free"
    row = await _billing_row(stack, owner["tenant_id"])
    assert (row["status"], row["plan"], row["grace_until"]) == ("canceled", "free", None)
    plans = [e.data.plan for e in await _tenant_events(stack, owner["tenant_id"], "plan.changed")]
    assert plans == ["pro", "free"]


@pytest.mark.parametrize("billing", [None])
async def test_without_stripe_settings_billing_is_off(api: httpx.AsyncClient, billing: None) -> None:
    owner = await _signup(api, "no-billing@example.com")
    for path, body in (("/v1/billing/checkout", {"plan": "pro"}), ("/v1/billing/portal", None)):
        off = await api.post(path, json=body, headers=_auth(owner))
        assert off.status_code == 503, off.text
        assert off.json()["error"] == "billing_off"
        assert "moltbot tenants set-plan TENANT PLAN" in off.json()["detail"]
    hook = await api.post("/v1/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    assert (hook.status_code, hook.json()["error"]) == (503, "billing_off")


async def test_the_fake_answers_the_real_client_as_stripe_does(stripe_fake: FakeStripe) -> None:
    """The fake's own wire format, through the real client: what the product relies on."""
    client = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": stripe_fake.base_url}, http_client=stripe.HTTPXClient()
    )
    customer = await client.v1.customers.create_async(params={"metadata": {"tenant_id": "t_1"}})
    options: Any = {"idempotency_key": "same-key"}
    first = await client.v1.billing_portal.sessions.create_async(
        params={"customer": customer.id}, options=options
    )
    again = await client.v1.billing_portal.sessions.create_async(
        params={"customer": customer.id}, options=options
    )
    assert (again.id, len(stripe_fake.portal_sessions)) == (first.id, 1)
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.billing_portal.sessions.create_async(
            params={"customer": customer.id, "return_url": "https://elsewhere.example"}, options=options
        )
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.subscriptions.retrieve_async("sub_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as no_price:
        await client.v1.checkout.sessions.create_async(
            params={
                "mode": "subscription",
                "customer": customer.id,
                "line_items": [{"price": "price_x", "quantity": 1}],
            }
        )
    assert no_price.value.param == "line_items[0][price]"
    metered: Any = {"event_name": "ai_tokens", "identifier": "t_1-2026-11-24-tokens"}
    metered["payload"] = {"value": "12"}
    once: Any = {"idempotency_key": "mev-1"}
    for _ in range(2):  # a resend under the same key gets the first answer again
        await client.v1.billing.meter_events.create_async(params=metered, options=once)
    with pytest.raises(stripe.InvalidRequestError) as taken:  # the identifier under another key
        await client.v1.billing.meter_events.create_async(params=metered)
    assert taken.value.user_message == "An event already exists with identifier t_1-2026-11-24-tokens."
    assert [e["payload"] for e in stripe_fake.meter_events.values()] == [{"value": "12"}]
    wrong_key = stripe.StripeClient(
        "sk_test_wrong", base_addresses={"api": stripe_fake.base_url}, http_client=stripe.HTTPXClient()
    )
    with pytest.raises(stripe.AuthenticationError):
        await wrong_key.v1.customers.create_async(params={})
