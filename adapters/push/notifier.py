"""The notifier: push notifications from the event log (durable consumer ``notifier`` on
EVENTS, created at the log's end — history is never pushed; other types skipped by subject).

For each event that may concern people (``domain.notifications``): wait until the read models
have it, read what the decision needs, decide, then send to the devices of the people it is
for — except those whose quiet hours it is on their clock, and everyone while the inbox is
away (held back: not sent, not queued). A person's morning digest goes by e-mail too (the
mailer of account mail), once per person and day (``push.notices``).
A device the push service no longer knows (404, 410) is deleted; another failure is logged
and leaves the other devices alone. An event still unread after 15 minutes is history and
dropped; one the read models have not reached yet is retried a second later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

import psycopg
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from adapters.mail import digest_mail
from adapters.mail.templates import render
from adapters.nats.consume import RECOVERABLE, consume
from adapters.nats.event_store import EVENTS_STREAM
from adapters.nats.pull import ack_position, raise_if_cancelled
from adapters.postgres import tenancy
from adapters.push import notices, subscriptions
from adapters.push.subscriptions import Target
from adapters.push.webpush import Outcome
from adapters.vault.cipher import Keyring
from domain import events as ev
from domain import notifications as decide
from domain.errors import InvalidEvent
from domain.mail import Mailer, MailNotSent
from domain.notifications import NotifierReads, Push, PushMessage, Urgency
from domain.plans import Catalog
from domain.ports import EventStore
from projections.digest_queries import Digest
from projections.inbox_queries import WhileAway
from projections.tenants_queries import Preferences

log = structlog.get_logger()

CONSUMER = "notifier"
# The types that may notify someone (or change who is notified), by their subject's last token.
_WATCHED = tuple(
    "." + cls.TYPE.replace(".", "_")
    for cls in (
        ev.MessageReceived,
        ev.MessageDraftProposed,
        ev.ConnectionStateChanged,
        ev.ConnectionSenderRequested,
        ev.ReminderDue,
        ev.UsageRecorded,
        ev.MemberRemoved,
        ev.DigestDue,
        ev.AwayEnded,
    )
)
_OUTAGES = (*RECOVERABLE, psycopg.OperationalError, psycopg.InterfaceError)
CATCH_UP_WAIT = 10.0  # seconds to wait for the read models to have an event

Handled = Literal["done", "retry"]


class PushSender(Protocol):
    async def send(self, target: Target, message: PushMessage, urgency: Urgency = "normal") -> Outcome: ...


class Reads(NotifierReads, Protocol):
    """Besides the decisions' reads: the digest and what happened while away."""

    async def while_away(self, tenant_id: str, away_id: str) -> WhileAway | None: ...

    async def digest(
        self, tenant_id: str, user_id: str, day: date
    ) -> tuple[Digest, Preferences, str | None]: ...


class Notifier:
    def __init__(
        self,
        nc: Client,
        reads: Reads,
        pool: AsyncConnectionPool[Any],
        keyring: Keyring,
        sender: PushSender,
        *,
        store: EventStore,
        catalog: Catalog,
        mailer: Mailer | None = None,
        inbox_url: str = "http://127.0.0.1:8000",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 16,
    ) -> None:
        self._nc = nc
        self._reads = reads
        self._pool = pool  # the confined role: each transaction sees one tenant's devices
        self._keyring = keyring
        self._sender = sender
        self._store = store
        self._catalog = catalog
        self._mailer = mailer  # the morning digest by e-mail; None: by push only
        self._inbox_url = inbox_url.rstrip("/")  # the web inbox the digest's mail links to
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()  # per device: sent, gone, refused, failed, held_back

    async def run(self) -> None:
        log.info("notifier_running", consumer=CONSUMER)
        try:
            await consume(self._nc, EVENTS_STREAM, CONSUMER, self.handle, batch=200)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def handle(self, msg: Msg) -> None:
        if not msg.subject.endswith(_WATCHED):
            await msg.ack()
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._process(msg))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _process(self, msg: Msg) -> None:
        seq = ack_position(msg.reply)[0]
        outcome: Handled = "done"
        try:
            event = await self._store.decode(msg.data)
            outcome = await self._event(event, seq)
        except InvalidEvent:
            pass  # the projections dead-letter it
        except _OUTAGES as exc:
            raise_if_cancelled()
            log.warning("notifier_retry", seq=seq, error=repr(exc))
            outcome = "retry"
        except Exception:  # a bug must not stop the notifications of every other event
            raise_if_cancelled()
            log.exception("notifier_event_failed", seq=seq)
        with contextlib.suppress(*RECOVERABLE):
            if outcome == "done":
                await msg.ack()
            else:
                await msg.nak(delay=1.0)

    async def _event(self, event: ev.Event, seq: int) -> Handled:
        if isinstance(event, ev.MemberRemoved):
            async with tenancy.tenant_transaction(self._pool, event.tenant_id) as conn:
                await subscriptions.forget_member(conn, event.tenant_id, event.data.user_id)
            return "done"
        now = self._clock()
        if decide.too_old(event.occurred_at, now):
            return "done"
        push: Push | None = None
        if isinstance(event, ev.MessageReceived):
            if event.data.backfill:
                return "done"
            if not await self._caught_up(seq, ("inbox", "connections", "tenants")):
                return "retry"
            conversation = await self._reads.conversation(event.tenant_id, event.aggregate_id)
            push = decide.message_push(event, conversation, now) if conversation else None
        elif isinstance(event, ev.MessageDraftProposed):
            if not await self._caught_up(seq, ("inbox", "tenants")):
                return "retry"
            conversation = await self._reads.conversation(event.tenant_id, event.aggregate_id)
            push = decide.draft_push(event, conversation) if conversation else None
        elif isinstance(event, ev.ConnectionStateChanged):
            if event.data.state != "action_required":
                return "done"
            if not await self._caught_up(seq, ("connections", "tenants")):
                return "retry"
            name = await self._reads.connection_name(event.tenant_id, event.aggregate_id)
            push = decide.channel_push(event, name or "")
        elif isinstance(event, ev.ReminderDue):
            if not await self._caught_up(seq, ("inbox", "tenants")):
                return "retry"
            conversation = await self._reads.conversation(event.tenant_id, event.aggregate_id)
            push = decide.reminder_push(event, conversation) if conversation else None
        elif isinstance(event, ev.ConnectionSenderRequested):
            if not await self._caught_up(seq, ("tenants",)):
                return "retry"
            push = decide.sender_push(event)
        elif isinstance(event, ev.UsageRecorded):
            if event.data.metric != "cost_micros":
                return "done"
            if not await self._caught_up(seq, ("usage", "tenants")):
                return "retry"
            push = await self._budget(event)
        elif isinstance(event, ev.AwayEnded):
            if not await self._caught_up(seq, ("inbox", "tenants")):
                return "retry"
            report = await self._reads.while_away(event.tenant_id, event.data.away_id)
            if report is not None:
                push = decide.back_push(
                    received=report.received, conversations=report.conversations,
                    still_waiting=report.still_waiting,
                )  # fmt: skip
        elif isinstance(event, ev.DigestDue):
            if not await self._caught_up(seq, ("inbox", "connections", "tenants")):
                return "retry"
            push = await self._morning(event, now)
        if push is not None:
            if push.held_while_away and await self._reads.away_on(event.tenant_id, now):
                self.outcomes["held_away"] += 1
                return "done"
            await self._deliver(event.tenant_id, push, now, event_type=event.type)
        return "done"

    async def _morning(self, event: ev.DigestDue, now: datetime) -> Push | None:
        """A person's digest: claimed once per person and day, mailed (when they want it),
        and its push; nothing when nothing in it needs them, or while the inbox is away."""
        user_id, day = event.aggregate_id, event.data.date
        if await self._reads.away_on(event.tenant_id, now):
            return None  # the "welcome back" notification sums it up
        found, chosen, email = await self._reads.digest(event.tenant_id, user_id, day)
        if found.empty():
            return None
        async with tenancy.tenant_transaction(self._pool, event.tenant_id) as conn:
            if not await notices.claim(conn, event.tenant_id, f"digest:{user_id}:{day.isoformat()}"):
                return None
        if chosen.digest_email and email and self._mailer is not None:
            await self._mail_digest(found, email)
        return decide.digest_push(user_id, digest_mail.headline(found))

    async def _mail_digest(self, found: Digest, email: str) -> None:
        assert self._mailer is not None
        mail = render("digest", to=email, values=digest_mail.values(found, f"{self._inbox_url}/#digest"))
        try:
            await self._mailer.send(mail)
        except MailNotSent as exc:  # the push still goes; the log says why the mail did not
            log.warning("digest_mail_failed", detail=str(exc)[:200])

    async def _caught_up(self, seq: int, read_models: tuple[str, ...]) -> bool:
        return await self._reads.caught_up(seq, read_models, wait=CATCH_UP_WAIT)

    async def _budget(self, event: ev.UsageRecorded) -> Push | None:
        """The allowance's notification, the first time this month that spend reached it."""
        spend = await self._reads.plan_and_spend(event.tenant_id, event.occurred_at)
        if not decide.allowance_used_up(self._catalog, spend):
            return None
        async with tenancy.tenant_transaction(self._pool, event.tenant_id) as conn:
            if not await notices.claim(conn, event.tenant_id, decide.budget_notice(event.occurred_at)):
                return None
        return decide.budget_push(self._catalog, spend.plan)

    async def _deliver(self, tenant_id: str, push: Push, now: datetime, *, event_type: str) -> None:
        people = [r for r in await self._reads.recipients(tenant_id) if decide.addressed(push, r)]
        awake = [r.user_id for r in people if not decide.quiet_now(r, now)]
        held_back = len(people) - len(awake)
        self.outcomes["held_back"] += held_back
        async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
            devices = await subscriptions.targets(conn, self._keyring, tenant_id, awake)
        results = await asyncio.gather(
            *(self._sender.send(device, push.message, push.urgency) for device in devices)
        )
        self.outcomes.update(results)
        sent = [d.subscription_id for d, r in zip(devices, results, strict=True) if r == "sent"]
        gone = [d.subscription_id for d, r in zip(devices, results, strict=True) if r == "gone"]
        if sent or gone:
            async with tenancy.tenant_transaction(self._pool, tenant_id) as conn:
                if gone:
                    await subscriptions.forget(conn, tenant_id, gone)
                if sent:
                    await subscriptions.mark_sent(conn, tenant_id, sent)
        # Most events of a busy inbox find no device awake: only a push that went somewhere is news.
        (log.info if devices or held_back else log.debug)(
            "push_delivered", tenant_id=tenant_id, event_type=event_type, devices=len(devices),
            sent=len(sent), gone=len(gone), held_back=held_back,
        )  # fmt: skip
