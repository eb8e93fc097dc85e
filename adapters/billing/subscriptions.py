"""The product's billing tables, and what each Stripe event changes.

``billing.customers`` maps an inbox (tenant) to the Stripe customer the product created for it
and holds what was last recorded of its subscription; ``billing.processed_events`` holds the id
of every Stripe event handled, so each is handled once. Both belong to the gateway's login and
are used as the confined role (``moltbot_gateway``), like the gateway's own tables.

A Stripe event is handled in one transaction: its id is inserted first (a repeat finds it and
changes nothing), the inbox's row is locked (its events are handled one at a time), the
subscription is read back from Stripe (never trusting the event's copy or order),
:func:`domain.billing.decide` gives the plan, and the changes are appended to the log
(``billing.subscription_changed``, ``plan.changed`` when the plan really changes) before the
row and the event id commit. A crash in between leaves the event unhandled, and Stripe's
retry appends the same event ids again (stored once inside the duplicate window).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import msgspec
import structlog
from psycopg_pool import AsyncConnectionPool

from adapters.billing.stripe_billing import StripeBilling, StripeEvent
from adapters.postgres import audit
from adapters.postgres.database import Connection
from domain import billing, ids, subjects
from domain import events as ev
from domain.errors import InvalidToken
from domain.ports import EventStore

log = structlog.get_logger()

BILLING_SQL = """
CREATE SCHEMA IF NOT EXISTS billing;
CREATE TABLE IF NOT EXISTS billing.customers (
    tenant_id            text PRIMARY KEY,
    customer_id          text UNIQUE,       -- Stripe's; NULL until the first checkout makes it
    subscription_id      text,              -- the subscription that decides the plan
    status               text,              -- Stripe's status of it, as last read back
    plan                 text,              -- the inbox's plan after it was last read
    price_id             text,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    current_period_end   timestamptz,
    grace_until          timestamptz,       -- past due: the plan is kept until then
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customers_subscription ON billing.customers (subscription_id);
CREATE TABLE IF NOT EXISTS billing.processed_events (
    event_id     text PRIMARY KEY,          -- Stripe's event id: each is handled once
    type         text NOT NULL,
    tenant_id    text,
    outcome      text,
    processed_at timestamptz NOT NULL DEFAULT now()
);
GRANT USAGE ON SCHEMA billing TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE ON billing.customers TO moltbot_gateway;
GRANT SELECT, INSERT ON billing.processed_events TO moltbot_gateway;
GRANT UPDATE (tenant_id, outcome) ON billing.processed_events TO moltbot_gateway;
"""

ACTOR = "billing:stripe"
# The Stripe events that can change a subscription; Stripe's others are answered and ignored.
HANDLED = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    }
)
Outcome = Literal["applied", "unchanged", "ignored", "replayed"]


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    """An inbox's row of ``billing.customers``."""

    tenant_id: str
    customer_id: str | None
    standing: billing.Standing


class Handled(msgspec.Struct, frozen=True, kw_only=True):
    """What a Stripe event did: ``applied`` (events appended), ``unchanged``, ``ignored`` (not
    about a subscription of ours; ``reason`` says why) or ``replayed`` (handled before)."""

    outcome: Outcome
    tenant_id: str | None = None
    reason: str | None = None
    seq: int | None = None  # the log's sequence of the last event appended


class _Target(msgspec.Struct, frozen=True):
    """Whom a Stripe event is about, from its own copy of the object (read back before use)."""

    subscription_id: str
    customer_id: str | None
    tenant_hints: tuple[str, ...]  # client_reference_id, metadata.tenant_id: the fallback


_COLUMNS = (
    "tenant_id, customer_id, subscription_id, status, plan, price_id, cancel_at_period_end,"
    " current_period_end, grace_until"
)


def _customer(row: dict[str, Any]) -> Customer:
    return Customer(
        tenant_id=row["tenant_id"],
        customer_id=row["customer_id"],
        standing=billing.Standing(
            subscription_id=row["subscription_id"],
            status=row["status"],
            plan=row["plan"],
            price_id=row["price_id"],
            cancel_at_period_end=row["cancel_at_period_end"],
            current_period_end=row["current_period_end"],
            grace_until=row["grace_until"],
        ),
    )


async def customer_of(conn: Connection, tenant_id: str) -> Customer | None:
    """The inbox's Stripe customer and subscription as last recorded, or None."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM billing.customers WHERE tenant_id = %s", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else _customer(row)


async def ensure_customer(
    pool: AsyncConnectionPool[Any],
    stripe: StripeBilling,
    tenant_id: str,
    *,
    email: str | None = None,
    name: str | None = None,
) -> Customer:
    """The inbox's row with its Stripe customer, which is created the first time only (the row
    is locked meanwhile, so two checkouts at once make one customer)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO billing.customers (tenant_id) VALUES (%s) ON CONFLICT (tenant_id) DO NOTHING",
            (tenant_id,),
        )
        found = await _locked(conn, tenant_id)
        if found.customer_id is not None:
            return found
        customer_id = await stripe.create_customer(tenant_id, email=email, name=name)
        await conn.execute(
            "UPDATE billing.customers SET customer_id = %s, updated_at = now() WHERE tenant_id = %s",
            (customer_id, tenant_id),
        )
        log.info("stripe_customer_created", tenant_id=tenant_id, customer_id=customer_id)
        return msgspec.structs.replace(found, customer_id=customer_id)


async def _locked(conn: Connection, tenant_id: str) -> Customer:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM billing.customers WHERE tenant_id = %s FOR UPDATE", (tenant_id,)
    )
    row = await cur.fetchone()
    assert row is not None, "the row is inserted first"
    return _customer(row)


async def plan_in_log(store: EventStore, tenant_id: str) -> str | None:
    """The inbox's plan as the log has it now (its last ``plan.changed``, else the plan it was
    created with), or None when the log has no such inbox. Read from the log, not a read model,
    so a change decided here never repeats one that is still being folded."""
    for event_type in ("plan.changed", "tenant.created"):
        subject = subjects.event_subject(tenant_id, ev.TENANT, tenant_id, event_type)
        record = await store.last_on(subject)
        if record is not None:
            event = store.codec.decode(record.data)
            if isinstance(event, ev.PlanChanged | ev.TenantCreated):
                return event.data.plan
    return None


def _target(event: StripeEvent) -> _Target | None:
    """The subscription a Stripe event is about, or None (not a subscription's event)."""
    obj = event.object
    metadata = obj.get("metadata") or {}
    hints: list[Any] = []
    if event.type == "checkout.session.completed":
        subscription_id = _id(obj.get("subscription"))
        hints = [obj.get("client_reference_id"), metadata.get("tenant_id")]
    elif event.type.startswith("customer.subscription."):
        subscription_id = _id(obj.get("id"))
        hints = [metadata.get("tenant_id")]
    elif event.type.startswith("invoice."):
        # The current API names the subscription under parent; older versions at the top.
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        subscription_id = _id(details.get("subscription")) or _id(obj.get("subscription"))
        hints = [(details.get("metadata") or {}).get("tenant_id")]
    else:
        return None
    if subscription_id is None:
        return None
    return _Target(subscription_id, _id(obj.get("customer")), tuple(str(h) for h in hints if h))


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _event_id(stripe_event_id: str, event_type: str, created: int) -> str:
    """A ULID derived from the Stripe event: a retry after a crash appends the same event."""
    digest = hashlib.blake2b(f"{stripe_event_id}:{event_type}".encode(), digest_size=10).digest()
    return ids.ulid(at_ms=created * 1000, randomness=digest)


class StripeEvents:
    """Applies verified Stripe events to the inboxes they are about (see the module's doc)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        store: EventStore,
        stripe: StripeBilling,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._store = store
        self._stripe = stripe
        self._now = now

    async def apply(self, event: StripeEvent) -> Handled:
        if event.type not in HANDLED:
            return Handled(outcome="ignored", reason="not_a_subscription_event")
        target = _target(event)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO billing.processed_events (event_id, type) VALUES (%s, %s)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                (event.id, event.type),
            )
            if await cur.fetchone() is None:
                log.info("stripe_event_replayed", stripe_event_id=event.id, type=event.type)
                return Handled(outcome="replayed")
            handled = await self._handle(conn, event, target)
            await conn.execute(
                "UPDATE billing.processed_events SET tenant_id = %s, outcome = %s WHERE event_id = %s",
                (handled.tenant_id, handled.reason or handled.outcome, event.id),
            )
        log.info(
            "stripe_event_handled", stripe_event_id=event.id, type=event.type, tenant_id=handled.tenant_id,
            outcome=handled.outcome, reason=handled.reason,
        )  # fmt: skip
        return handled

    async def _handle(self, conn: Connection, event: StripeEvent, target: _Target | None) -> Handled:
        if target is None:
            return Handled(outcome="ignored", reason="no_subscription")
        tenant_id = await self._tenant_of(conn, target)
        if tenant_id is None:  # another deployment's customer on the same Stripe account
            return Handled(outcome="ignored", reason="unknown_customer")
        found = await _locked(conn, tenant_id)
        subscription = await self._stripe.subscription(target.subscription_id)
        if subscription is None:
            return Handled(outcome="ignored", tenant_id=tenant_id, reason="no_such_subscription")
        if subscription.customer_id != found.customer_id:
            return Handled(outcome="ignored", tenant_id=tenant_id, reason="another_customer")
        previous = found.standing
        if not billing.follows(previous, subscription):
            return Handled(outcome="ignored", tenant_id=tenant_id, reason="superseded")
        current = await plan_in_log(self._store, tenant_id)
        if current is None:
            return Handled(outcome="ignored", tenant_id=tenant_id, reason="unknown_tenant")
        decision = billing.decide(subscription, self._stripe.prices, previous, self._now())
        if decision.reason == "unknown_price":
            log.warning(
                "stripe_price_unknown",
                tenant_id=tenant_id,
                price_id=subscription.price_id,
                hint="add it to MOLTBOT_STRIPE_PRICES",
            )
        plan = decision.plan or current
        now_standing = billing.standing(subscription, decision, plan)
        events = _events(event, tenant_id, subscription, previous, now_standing, current)
        seq = None
        if events:
            seq = (await self._store.append_many(events))[-1].seq
        for changed in (e for e in events if isinstance(e, ev.PlanChanged)):
            await conn.execute("SELECT set_config('moltbot.tenant_id', %s, true)", (tenant_id,))
            moved = {"from": changed.data.previous_plan, "to": changed.data.plan, "stripe_event": event.id}
            await audit.record(conn, tenant_id, "plan.changed", actor=ACTOR, target=tenant_id, detail=moved)
        if now_standing != previous:
            await conn.execute(
                "UPDATE billing.customers SET subscription_id = %s, status = %s, plan = %s, price_id = %s,"
                " cancel_at_period_end = %s, current_period_end = %s, grace_until = %s, updated_at = now()"
                " WHERE tenant_id = %s",
                (
                    now_standing.subscription_id,
                    now_standing.status,
                    now_standing.plan,
                    now_standing.price_id,
                    now_standing.cancel_at_period_end,
                    now_standing.current_period_end,
                    now_standing.grace_until,
                    tenant_id,
                ),
            )
        outcome: Outcome = "applied" if events else "unchanged"
        return Handled(outcome=outcome, tenant_id=tenant_id, seq=seq)

    async def _tenant_of(self, conn: Connection, target: _Target) -> str | None:
        """The inbox of the customer the product created, else of the subscription recorded,
        else the one the checkout named (client_reference_id, metadata.tenant_id) when that
        inbox exists and has no other customer yet: it is linked to this customer now."""
        cur = await conn.execute(
            "SELECT tenant_id FROM billing.customers WHERE customer_id = %s OR subscription_id = %s"
            " ORDER BY (customer_id = %s) DESC NULLS LAST LIMIT 1",
            (target.customer_id, target.subscription_id, target.customer_id),
        )
        row = await cur.fetchone()
        if row is not None:
            return str(row["tenant_id"])
        if target.customer_id is None:
            return None
        for hint in target.tenant_hints:
            try:
                if await plan_in_log(self._store, hint) is None:
                    continue
            except InvalidToken:
                continue
            cur = await conn.execute(
                "INSERT INTO billing.customers (tenant_id, customer_id) VALUES (%s, %s)"
                " ON CONFLICT (tenant_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,"
                " updated_at = now() WHERE billing.customers.customer_id IS NULL RETURNING tenant_id",
                (hint, target.customer_id),
            )
            if await cur.fetchone() is not None:
                log.info("stripe_customer_linked", tenant_id=hint, customer_id=target.customer_id)
                return hint
            log.warning("stripe_customer_not_linked", tenant_id=hint, reason="the inbox has another customer")
        return None


def _events(
    event: StripeEvent,
    tenant_id: str,
    subscription: billing.Subscription,
    previous: billing.Standing,
    now_standing: billing.Standing,
    current_plan: str,
) -> list[ev.Event]:
    """``billing.subscription_changed`` when what is recorded of the subscription changes,
    and ``plan.changed`` when the inbox's plan does (each with an id derived from ``event``)."""
    plan, was = _plan(now_standing.plan), _plan(current_plan)
    events: list[ev.Event] = []
    if now_standing != previous:
        recorded = ev.SubscriptionChangedData(
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            status=subscription.status,
            plan=plan,
            price_id=subscription.price_id,
            cancel_at_period_end=subscription.cancel_at_period_end,
            current_period_end=subscription.current_period_end,
            grace_until=now_standing.grace_until,
            stripe_event_id=event.id,
        )
        event_id = _event_id(event.id, "billing.subscription_changed", event.created)
        events.append(
            ev.new_event(
                ev.SubscriptionChanged,
                tenant_id=tenant_id,
                aggregate_id=tenant_id,
                actor=ACTOR,
                data=recorded,
                event_id=event_id,
            )
        )
    if plan != was:
        changed = ev.PlanChangedData(plan=plan, previous_plan=was)
        event_id = _event_id(event.id, "plan.changed", event.created)
        correlation_id = events[0].id if events else None
        events.append(
            ev.new_event(
                ev.PlanChanged,
                tenant_id=tenant_id,
                aggregate_id=tenant_id,
                actor=ACTOR,
                data=changed,
                event_id=event_id,
                correlation_id=correlation_id,
            )
        )
    return events


def _plan(value: str | None) -> ev.Plan:
    """A plan the events can carry (an unknown one is the free plan)."""
    return cast("ev.Plan", value) if value in get_args(ev.Plan) else "free"
