"""The agent orchestrator: every ``message.received`` is a possible trigger.

For each trigger (durable consumer ``agent`` on EVENTS, other types skipped by subject):

1. wait until the read models have the trigger (so the conversation and its history
   are there), then ask the pure policy (:func:`domain.agent.decide`: the rules, the
   budget, and the conversation's runs in the last minute);
2. debounce: wait out a short window and step aside if a newer message arrived — its
   own trigger answers the whole burst;
3. claim the conversation's lane (``ev.<t>.assistant.<conversation>.*``) by appending
   ``agent.run_requested`` with the lane's expected last sequence, so at most one run
   is active per conversation even with several orchestrators;
4. call the model with recent history within a character budget, streaming deltas on
   ``live.<t>.agent.<conversation>.<run>``; its tools act for the sender being answered
   (:func:`domain.agent.search_scope`);
5. append the reply as ``message.send_requested`` (chunked to the channel), usage, and
   ``agent.run_completed``.

What each step records is decided by :mod:`domain.agent` (``claim_events``,
``run_started``, ``reply_events``, ...); this module reads, calls the model and appends.
The run id derives from the trigger and every event of a run has a dedupe key derived
from the run, so a trigger redelivered after a crash resumes the same run and records
each step (and sends each reply) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog
from msgspec.structs import replace
from nats.aio.client import Client
from nats.aio.msg import Msg

from adapters.agent import spend
from adapters.agent.growing_reply import GrowingReply
from adapters.agent.tools import ToolBox, ToolContext
from adapters.nats.consume import RECOVERABLE, consume
from adapters.nats.errors import ConcurrencyConflict
from adapters.nats.event_store import EVENTS_STREAM
from adapters.nats.outbox import CommandQueue
from adapters.nats.pull import ack_position, raise_if_cancelled
from domain import agent as policy
from domain import away as away_rules
from domain import events as ev
from domain import plans, promises, subjects, zones
from domain.connectors import Capabilities, typing_subject
from domain.errors import InvalidEvent
from domain.injection import Screening
from domain.models import (
    NO_TOOLS,
    OFFLINE_MODEL,
    ChatTurn,
    Model,
    ModelReply,
    ModelRequest,
    ModelSource,
    ModelUnavailable,
    OnDelta,
)
from domain.ports import EventStore, StoredRecord
from domain.reads import AgentReads, ConversationView, PastMessage, Person, RunContext, TriggerContext

log = structlog.get_logger()

CONSUMER = "agent"
PLAIN_TEXT = Capabilities(max_text_length=policy.DEFAULT_MAX_TEXT_LENGTH)  # a kind the registry lacks
READ_MODELS = ("inbox", "agents", "tenants", "usage", "connections", "contacts")
_MESSAGE_RECEIVED = ".message_received"
_MESSAGE_SENT = ".message_sent"  # the owner's own, from their device: a takeover
TYPING_EVERY = 4.0  # seconds between "typing…" signals while a run writes
RUNS_WINDOW = timedelta(minutes=1)  # what agent_runs_per_conversation counts over

Outcome = Literal["done", "retry"]


@dataclass(frozen=True)
class AgentSettings:
    debounce: float = 1.0  # seconds a burst of messages is given before one answer
    stale_after: float = 120.0  # a run silent this long is taken over
    context_chars: int = 12_000  # history sent to the model (~3k tokens)
    context_messages: int = 50
    concurrency: int = 32  # triggers handled at once (across conversations)
    catch_up_wait: float = 10.0  # seconds to wait for the read models to have a trigger
    agent_runs_per_conversation: int = 6  # runs one conversation gets per minute; 0: no limit
    injection_model_check: bool = False  # the model screens what it would answer, besides the rules


class Orchestrator:
    def __init__(
        self,
        nc: Client,
        reads: AgentReads,
        models: ModelSource,
        *,
        store: EventStore,
        settings: AgentSettings = AgentSettings(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        capabilities_for: Callable[[str], Capabilities] = lambda channel: PLAIN_TEXT,
        agent_mode_for: Callable[[str], ev.AgentMode] = lambda channel: "draft",
        catalog: plans.Catalog,
    ) -> None:
        self._nc = nc
        self._store = store
        self._reads = reads
        self._models = models
        self._settings = settings
        self._clock = clock
        self._capabilities_for = capabilities_for  # what a channel kind supports (the channel registry)
        self._agent_mode_for = agent_mode_for  # a channel kind's default mode (the registry too)
        self._catalog = catalog  # the plans: each tenant's AI allowance
        self._commands = CommandQueue(nc)  # edits of a reply that grows in place
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.runs_completed = 0
        self.decisions: Counter[str] = Counter()  # the policy's verdicts by reason, e.g. "rate_limited"

    async def run(self) -> None:
        log.info("agent_running", consumer=CONSUMER)
        try:
            await consume(self._nc, EVENTS_STREAM, CONSUMER, self.handle, batch=200)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def handle(self, msg: Msg) -> None:
        # Each in its own task: waiting for the read models never holds up the next trigger.
        if msg.subject.endswith(_MESSAGE_SENT):
            work = self._owner_wrote(msg)
        elif msg.subject.endswith(_MESSAGE_RECEIVED):
            work = self._process(msg)
        else:
            await msg.ack()
            return
        await self._slots.acquire()
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _process(self, msg: Msg) -> None:
        seq = ack_position(msg.reply)[0]
        keep_alive = asyncio.create_task(_keep_in_progress(msg))
        try:
            try:
                trigger = await self._store.decode(msg.data)
            except InvalidEvent as exc:  # the projections dead-letter it; nothing to answer
                log.warning("agent_trigger_unreadable", seq=seq, error=str(exc))
                await msg.ack()
                return
            assert isinstance(trigger, ev.MessageReceived)
            outcome = await self._trigger(trigger, seq)
        except RECOVERABLE as exc:
            log.warning("agent_trigger_retry", seq=seq, error=repr(exc))
            outcome = "retry"
        except Exception:
            log.exception("agent_trigger_failed", seq=seq)
            outcome = "retry"
        finally:
            keep_alive.cancel()
        with contextlib.suppress(*RECOVERABLE):
            if outcome == "done":
                await msg.ack()
            else:
                await msg.nak(delay=1.0)

    async def _owner_wrote(self, msg: Msg) -> None:
        """The owner wrote in a conversation from their own device: the agent steps back
        there (or "/stop", "/start"), recorded once the inbox knows the conversation."""
        seq = ack_position(msg.reply)[0]
        try:
            sent = await self._store.decode(msg.data)
            events: list[ev.Event] = []
            recent = not policy.too_old(sent.occurred_at, self._clock())
            if isinstance(sent, ev.MessageSent) and sent.data.origin == "device" and recent:
                if not await self._reads.caught_up(
                    seq, ("inbox", "connections"), wait=self._settings.catch_up_wait, event_type=sent.type
                ):
                    await msg.nak(delay=1.0)
                    return
                conversation = await self._reads.conversation(sent.tenant_id, sent.aggregate_id)
                takeover = conversation.takeover_minutes if conversation is not None else None
                events = policy.owner_wrote(sent, takeover, at=self._clock())
            await self._store.append_many(events)
            if events:
                log.info("agent_stepped_back", conversation_id=sent.aggregate_id, recorded=events[0].type)
        except InvalidEvent:
            pass  # the projections dead-letter it
        except Exception as exc:  # a bug here must not stop the triggers: the message is retried
            raise_if_cancelled()
            log.warning("agent_owner_message_retry", seq=seq, error=repr(exc))
            with contextlib.suppress(*RECOVERABLE):
                await msg.nak(delay=1.0)
            return
        with contextlib.suppress(*RECOVERABLE):
            await msg.ack()

    async def _trigger(self, trigger: ev.MessageReceived, seq: int) -> Outcome:
        tenant, conversation_id = trigger.tenant_id, trigger.aggregate_id
        if policy.too_old(trigger.occurred_at, self._clock()):
            return "done"  # history (a consumer created on an old log): no reads, no wait
        wait = self._settings.catch_up_wait
        if not await self._reads.caught_up(seq, READ_MODELS, wait=wait, event_type=trigger.type):
            return "retry"
        run_id = policy.run_id_for(trigger.id)
        now = self._clock()
        context = await self._reads.trigger_context(
            tenant, conversation_id, now=now, runs_since=now - RUNS_WINDOW, other_than=run_id
        )
        if context is None:
            return "done"
        conversation, routed, spend = context.conversation, context.routed, context.spend
        await self._besides(trigger, context)
        by_id = {view.agent_id: view for view in routed.agents}
        enabled = {view.agent_id for view in routed.agents if view.config.enabled}
        chosen, routed_by = policy.route(routed.rules, trigger.data, conversation.kind, enabled)
        agent = by_id[chosen] if chosen is not None else (routed.agents[0] if routed.agents else None)
        quiet = agent is not None and agent.config.rules.quiet_hours is not None
        time_zone = context.owner_time_zone if quiet else None
        max_runs = self._settings.agent_runs_per_conversation
        recent_runs = context.recent_runs if max_runs else 0
        decision = policy.decide(
            policy.Situation(
                message=trigger.data,
                conversation_kind=conversation.kind,
                mode=policy.effective_mode(
                    conversation.agent_mode,
                    conversation.connection_agent_mode,
                    self._agent_mode_for(conversation.channel),
                ),
                paused_until=conversation.agent_paused_until,
                agent=agent.config if agent else None,
                budget_left=plans.ai_allowance_left(self._catalog, spend),
                at=self._clock(),
                received_at=trigger.occurred_at,
                runs_last_minute=recent_runs,
                max_runs_per_minute=max_runs,
                time_zone=time_zone,
            )
        )
        # Only a message the agent would answer is screened: a skipped one needs no verdict.
        screening = policy.screen_message(trigger.data) if decision.verdict == "answer" else Screening()
        decision = policy.guarded(decision, screening)
        self.decisions[decision.reason] += 1
        if decision.verdict == "skip" or agent is None:
            if decision.reason == "rate_limited":
                log.info("agent_rate_limited", conversation_id=conversation_id, runs=recent_runs)
            log.debug("agent_skipped", conversation_id=conversation_id, reason=decision.reason)
            return "done"
        if await self._superseded(trigger, seq):
            return "done"
        if not await self._admitted(trigger, conversation):
            return "done"
        # An agent set up before a downgrade answers with the plan's model, not its own.
        model_name = plans.model_for_plan(self._catalog.limits(spend.plan), agent.config.model)
        config = agent.config if model_name == agent.config.model else replace(agent.config, model=model_name)
        run = _Run(trigger, conversation, run_id, config, decision, screening.reason())
        if decision.verdict == "budget_reply":
            claimed = await self._claim(trigger, run_id, agent.agent_id, routed_by)
            if claimed == "go":
                await self._budget_reply(run)
            return "done" if claimed == "go" else claimed
        model = await self._models.model_for(run.agent, tenant)
        started = policy.run_started(trigger, run_id, model.name, at=self._clock())
        # What the model will be told is read while the lane is claimed (both only read or
        # append; a claim that fails drops the read).
        reading = asyncio.create_task(self._context(run))
        try:
            claimed = await self._claim(trigger, run_id, agent.agent_id, routed_by, started)
        except BaseException:
            reading.cancel()
            raise
        if claimed != "go":
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, *RECOVERABLE):
                await reading
            return claimed
        await self._answer(run, model, await reading)
        return "done"

    async def _context(self, run: _Run) -> tuple[RunContext, StoredRecord | None]:
        """The run's context (history, facts, the person) and the conversation's last summary."""
        trigger = run.trigger
        summarized = subjects.event_subject(
            trigger.tenant_id, ev.CONVERSATION, trigger.aggregate_id, ev.ConversationSummarized.TYPE
        )
        context, summary = await asyncio.gather(
            self._reads.run_context(
                trigger.tenant_id, run.conversation.conversation_id, self._settings.context_messages
            ),
            self._store.last_on(summarized),
        )
        return context, summary

    async def _superseded(self, trigger: ev.MessageReceived, seq: int) -> bool:
        """After the debounce window: has a newer message arrived in this conversation?"""
        waited = (self._clock() - trigger.occurred_at).total_seconds()
        if waited < self._settings.debounce:
            await asyncio.sleep(self._settings.debounce - waited)
        subject = subjects.event_subject(
            trigger.tenant_id, ev.CONVERSATION, trigger.aggregate_id, ev.MessageReceived.TYPE
        )
        latest = await self._store.last_on(subject)
        if latest is None or latest.seq <= seq:
            return False
        if trigger.data.mentions_agent:
            # "@bot, a question" then "and another thing": the newer message alone would not
            # be answered in a group, so the one that called the agent keeps the answer.
            newer = self._store.codec.decode(latest.data)
            return isinstance(newer, ev.MessageReceived) and newer.data.mentions_agent
        return True

    async def _besides(self, trigger: ev.MessageReceived, context: TriggerContext) -> None:
        """What a person's direct message gets whatever the agent decides: the away answer
        (once per conversation while the inbox is away, to senders the DM policy admits) and
        a proposed follow-up when it promises something ("I'll get back to you Friday")."""
        conversation, away = context.conversation, context.away
        if not policy.awaits_reply(trigger.data) or conversation.kind != "direct" or conversation.preview:
            return
        now = self._clock()
        events: list[ev.Event] = []
        here = away_rules.answers_here(
            away, now, connection_id=conversation.connection_id, conversation_kind=conversation.kind,
            preview=conversation.preview,
        )  # fmt: skip
        if away is not None and here and await self._admission(trigger, conversation) == "admit":
            to = destination_of(conversation)
            events += away_rules.answer_events(
                trigger, away, connection_id=to.connection_id, channel=to.channel, to=to.external_id, at=now
            )
        if promises.promising(trigger.data.text):
            zone = zones.zone(context.owner_time_zone)
            if (proposed := promises.proposal(trigger, zone, now)) is not None:
                events.append(proposed)
        await self._store.append_many(events)
        if events:
            log.info("agent_besides", conversation_id=trigger.aggregate_id, recorded=[e.type for e in events])

    async def _admission(
        self, trigger: ev.MessageReceived, conversation: ConversationView
    ) -> policy.Admission:
        """What the connection's DM policy says of this sender."""
        dm_policy, kind, preview = conversation.dm_policy, conversation.kind, conversation.preview
        status = None
        if policy.admission(dm_policy, kind, "pending", preview=preview) != "admit":  # it asks for approval
            status = await self._reads.sender_status(
                trigger.tenant_id, conversation.connection_id, trigger.data.sender.id
            )
        return policy.admission(dm_policy, kind, status, preview=preview)

    async def _admitted(self, trigger: ev.MessageReceived, conversation: ConversationView) -> bool:
        """Whether the connection's DM policy lets the agent answer this sender; an unknown
        sender is recorded as wanting to talk (and, under ``pairing``, sent their code)."""
        dm_policy = conversation.dm_policy
        admitted = await self._admission(trigger, conversation)
        if admitted == "admit":
            return True
        self.decisions[f"sender_{admitted}"] += 1
        if admitted == "request" and dm_policy is not None:
            requested = policy.sender_request_events(
                trigger, destination_of(conversation), dm_policy, at=self._clock()
            )
            await self._store.append_many(requested)
            log.info("agent_sender_requested", conversation_id=trigger.aggregate_id, dm_policy=dm_policy)
        return False

    async def _claim(
        self,
        trigger: ev.MessageReceived,
        run_id: str,
        agent_id: str,
        routed_by: int | None,
        then: Sequence[ev.Event] = (),
    ) -> Outcome | Literal["go"]:
        """Claim the conversation's lane for this run, with ``then`` (the run's start) in the
        same atomic batch: the lane holds both or neither."""
        lane = subjects.aggregate_filter(trigger.tenant_id, ev.ASSISTANT, trigger.aggregate_id)
        last = await self._store.last_on(lane)
        last_event = self._store.codec.decode(last.data) if last is not None else None
        state = policy.claim(last_event, run_id, self._clock(), self._settings.stale_after)
        if state == "done":
            return "done"
        if state == "busy":
            return "retry"
        if state == "resume":
            log.info("agent_run_resumed", run_id=run_id)
        claims = policy.claim_events(
            trigger, state, last_event, run_id, agent_id, at=self._clock(), routed_by=routed_by
        )
        try:
            await self._store.append_batch([*claims, *then], expected_seq=last.seq if last is not None else 0)
        except ConcurrencyConflict:
            return "retry"  # another orchestrator claimed the lane first
        return "go"

    async def _budget_reply(self, run: _Run) -> None:
        events = policy.budget_reply_events(
            run.trigger, run.destination, run.run_id, run.agent, at=self._clock()
        )
        await self._record(events)
        log.info("agent_budget_reply", run_id=run.run_id, tenant_id=run.trigger.tenant_id)

    async def _answer(self, run: _Run, model: Model, read: tuple[RunContext, StoredRecord | None]) -> None:
        run = replace_run(
            run,
            policy.offline_delivery(
                run.decision, offline_model=model.name == OFFLINE_MODEL, preview=run.conversation.preview
            ),
        )
        if (
            run.decision.verdict == "answer"
            and self._settings.injection_model_check
            and model.name != OFFLINE_MODEL
        ):
            run = await self._screened_by(model, run)
        request, tools = await self._request(run, model, *read)
        drafting = run.decision.verdict == "draft"
        # A draft is for the owner: the contact sees neither "typing…" nor the words as written.
        typing = (
            None if drafting else asyncio.create_task(self._typing(run.trigger.tenant_id, run.conversation))
        )
        growing = None if drafting else self._growing(run)
        try:
            reply = await model.complete(
                request, tools, _quiet if drafting else self._live_deltas(run, growing)
            )
        except asyncio.CancelledError:
            if growing is not None:
                growing.abandon()  # its edits stop with the run (a redelivered trigger resumes it)
            raise
        except ModelUnavailable as exc:
            await self._fail(run.trigger, run.run_id, exc.code, exc.reason, growing)
            return
        except Exception as exc:  # a bug in a model adapter or a tool: fail the run, not the trigger
            log.exception("agent_model_error", run_id=run.run_id)
            reason = f"The agent hit an internal error ({type(exc).__name__})."
            await self._fail(run.trigger, run.run_id, "agent_error", reason, growing)
            return
        finally:
            if typing is not None:
                typing.cancel()
        # What it asked to remember waits for the owner (before the run is done, like the rest).
        await self._store.append_many(
            policy.fact_proposals(run.trigger, run.run_id, tools.remembered, at=self._clock())
        )
        if drafting:
            await self._draft(run, reply)
        else:
            first_sent = await growing.finish(reply.text) if growing is not None else False
            await self._reply(run, reply, first_sent=first_sent)

    async def _screened_by(self, model: Model, run: _Run) -> _Run:
        """The model check of what the run answers (besides the rules): a message it judges
        an injection is answered with a draft, like one the rules flag. A check that cannot
        be made leaves the run as it was (the rules screened it already)."""
        request = ModelRequest(
            model=run.agent.model,
            system=policy.INJECTION_CHECK_SYSTEM,
            turns=(ChatTurn("user", policy.injection_check_text(run.trigger.data)),),
            max_tokens=60,
        )
        try:
            verdict = await model.complete(request, NO_TOOLS, _quiet)
        except ModelUnavailable as exc:
            log.warning("agent_screen_unavailable", run_id=run.run_id, code=exc.code)
            return run
        await self._store.append_many(
            policy.screening_usage(run.trigger, run.run_id, verdict, at=self._clock())
        )
        screening = policy.model_screening(verdict.text)
        if not screening.flagged:
            return run
        log.info("agent_injection_suspected", run_id=run.run_id, by="model_check")
        return dataclasses.replace(
            run, decision=policy.guarded(run.decision, screening), flag=screening.reason()
        )

    def _growing(self, run: _Run) -> GrowingReply | None:
        """Where the channel edits messages: a reply that grows in place as the model writes."""
        capabilities = self._capabilities_for(run.conversation.channel)
        if not capabilities.edits:
            return None
        direct = run.conversation.kind == "direct"
        return GrowingReply(
            store=self._store,
            reads=self._reads,
            commands=self._commands,
            first_part=lambda text: policy.first_part(
                run.trigger, run.destination, run.run_id, run.agent, text, at=self._clock()
            ),
            every=capabilities.edit_every if direct else capabilities.group_edit_every,
            max_text=capabilities.max_text_length,
            clock=self._clock,
        )

    async def _draft(self, run: _Run, reply: ModelReply) -> None:
        """Keep the model's reply as a draft for a person (the conversation drafts, or the
        offline model wrote it), with its usage and the run completed."""
        reason = policy.draft_reason(run.decision)
        flag = run.flag if reason == "injection_suspected" else None
        events = policy.draft_events(
            run.trigger, run.destination, run.run_id, reply, reason=reason, at=self._clock(), flag=flag
        )
        await self._record(events)
        self.runs_completed += 1
        log.info("agent_draft_proposed", run_id=run.run_id, reason=reason, tokens_out=reply.tokens_out)

    async def _request(
        self, run: _Run, model: Model, context: RunContext, stored_summary: StoredRecord | None
    ) -> tuple[ModelRequest, ToolBox]:
        """What the model is asked: the agent's prompt (with the notice on untrusted text), the
        facts the owner approved, the conversation's memory and the recent history that fits,
        each delimited and labelled, and the tools, acting for the sender being answered."""
        trigger, conversation, agent = run.trigger, run.conversation, run.agent
        facts, person = context.facts, context.person
        recent, older = _fit(context.history, self._settings.context_chars)
        summary = await self._memory(run, older, model, stored_summary)
        sender_id = trigger.data.sender.id
        scope = policy.search_scope(agent.rules, sender_id, conversation.kind)
        tools = ToolBox(
            agent.tools,
            ToolContext(
                trigger.tenant_id, conversation.conversation_id, sender_id, self._reads, self._clock, scope
            ),
        )
        channel = conversation.channel
        turns = [
            ChatTurn("assistant", m.text)
            if m.direction == "out"
            else ChatTurn("user", policy.from_contact(m.sender_name, channel, m.text))
            for m in recent
        ]
        if summary:
            turns.insert(0, ChatTurn("user", policy.summary_turn(summary)))
        if facts:
            turns.insert(0, ChatTurn("user", policy.facts_turn(facts)))
        if person is not None:
            elsewhere = await self._heard_elsewhere(run, person) if agent.rules.cross_channel_memory else []
            if person.notes.strip() or elsewhere:
                turns.insert(0, ChatTurn("user", policy.person_turn(person.notes, elsewhere)))
        request = ModelRequest(
            model=agent.model,
            system=policy.guarded_prompt(agent.system_prompt),
            turns=tuple(turns),
            tools=tools.specs(),
        )
        return request, tools

    def _live_deltas(self, run: _Run, growing: GrowingReply | None) -> OnDelta:
        """Publishes each piece of the reply as the model writes it (live only, not logged),
        and grows the reply in place where the channel edits messages."""
        conversation_id = run.conversation.conversation_id
        live = subjects.live_subject(run.trigger.tenant_id, "agent", conversation_id, run.run_id)
        index = 0

        async def on_delta(text: str) -> None:
            nonlocal index
            delta = await self._store.seal_text(run.trigger.tenant_id, text)
            body = {"run_id": run.run_id, "conversation_id": conversation_id, "index": index, "delta": delta}
            index += 1
            await self._nc.publish(live, json.dumps(body).encode())
            if growing is not None:
                await growing.on_delta(text)

        return on_delta

    async def _reply(self, run: _Run, reply: ModelReply, *, first_sent: bool) -> None:
        """Record the model's reply: its parts (the first one already, when it grew in place),
        the usage at the catalog's price, the run completed."""
        limit = self._capabilities_for(run.conversation.channel).max_text_length
        events = policy.reply_events(
            run.trigger, run.destination, run.run_id, run.agent, reply, max_text=limit, at=self._clock(),
            first_sent=first_sent,
        )  # fmt: skip
        await self._record(events)
        completed = events[-1]  # priced by the policy: what the run cost is recorded on it
        assert isinstance(completed, ev.AgentRunCompleted)
        spend.warn_if_unpriced(
            completed.data.model,
            completed.data.cost_micros,
            tenant_id=run.trigger.tenant_id,
            run_id=run.run_id,
        )
        self.runs_completed += 1
        log.info(
            "agent_run_completed",
            run_id=run.run_id,
            model=reply.model,
            parts=sum(isinstance(event, ev.MessageSendRequested) for event in events),
            tokens_out=reply.tokens_out,
        )

    async def _typing(self, tenant_id: str, conversation: ConversationView) -> None:
        """Tell the channel's connector to show "typing…" while the model writes (channels
        show it for about five seconds, so it is repeated)."""
        subject = typing_subject(tenant_id, conversation.channel, conversation.connection_id)
        body = json.dumps({"to": await self._store.seal_text(tenant_id, conversation.external_id)}).encode()
        with contextlib.suppress(*RECOVERABLE):
            while True:
                await self._nc.publish(subject, body)
                raise_if_cancelled()  # a publish can swallow the cancellation
                await asyncio.sleep(TYPING_EVERY)

    async def _heard_elsewhere(self, run: _Run, person: Person) -> list[policy.Heard]:
        """The person's other conversations as the agent may hear of them: each one's rolling
        summary (its last ``conversation.summarized``, read in parallel) and latest message."""
        tenant = run.trigger.tenant_id
        stored = await asyncio.gather(*(
            self._store.last_on(subjects.event_subject(
                tenant, ev.CONVERSATION, other.conversation_id, ev.ConversationSummarized.TYPE
            ))
            for other in person.elsewhere
        ))  # fmt: skip
        heard = []
        for other, record in zip(person.elsewhere, stored, strict=True):
            event = await self._store.decode(record.data) if record is not None else None
            summary = event.data.summary if isinstance(event, ev.ConversationSummarized) else None
            if summary or other.last_message_preview:
                heard.append(policy.Heard(other.channel, summary, other.last_message_preview))
        return heard

    async def _memory(
        self, run: _Run, older: list[PastMessage], model: Model, stored: StoredRecord | None
    ) -> str | None:
        """The conversation's rolling summary (``stored``, its last record), extended with older
        messages it lacks: written by the run's model when it has one (not the offline model),
        else extractive."""
        trigger = run.trigger
        last = await self._store.decode(stored.data) if stored is not None else None
        previous = last.data if isinstance(last, ev.ConversationSummarized) else None
        new = policy.not_summarized(previous, older)
        if not new:
            return previous.summary if previous else None
        written = None
        if model.name != OFFLINE_MODEL:
            written = await self._summarized_by(model, run, previous, new)
        extended = policy.summary_events(trigger, previous, older, at=self._clock(), written=written)
        await self._store.append_many(extended)
        summarized = extended[-1]
        assert isinstance(summarized, ev.ConversationSummarized)
        return summarized.data.summary

    async def _summarized_by(
        self,
        model: Model,
        run: _Run,
        previous: ev.ConversationSummarizedData | None,
        new: list[policy.OlderMessage],
    ) -> ModelReply | None:
        """The model's rewrite of the summary to cover ``new``; None when it cannot (the
        extractive summary stands in, and the answer goes on)."""
        text = policy.summary_request_text(
            previous.summary if previous else None, new, run.conversation.channel
        )
        request = ModelRequest(
            model=run.agent.model,
            system=policy.SUMMARY_SYSTEM,
            turns=(ChatTurn("user", text),),
            max_tokens=400,
        )
        try:
            return await model.complete(request, NO_TOOLS, _quiet)
        except ModelUnavailable as exc:
            log.warning("agent_summary_unavailable", run_id=run.run_id, code=exc.code)
            return None

    async def _fail(
        self,
        trigger: ev.MessageReceived,
        run_id: str,
        code: str,
        reason: str,
        growing: GrowingReply | None = None,
    ) -> None:
        if growing is not None:
            await growing.finish(growing.text)  # what went out already loses its " …"
        await self._store.append(policy.run_failed(trigger, run_id, code, reason, at=self._clock()))
        log.warning("agent_run_failed", run_id=run_id, code=code, reason=reason)

    async def _record(self, events: list[ev.Event]) -> None:
        """Append a step's events (its replies and usage, then the run's state on the lane) as
        one atomic batch: a run is never done on the lane without them, nor they without it."""
        await self._store.append_batch(events)


@dataclass(frozen=True)
class _Run:
    """A run that answers: the message it answers, in which conversation, under which id, as
    which agent, and whether it sends or proposes a draft."""

    trigger: ev.MessageReceived
    conversation: ConversationView
    run_id: str
    agent: ev.AgentConfiguredData
    decision: policy.Decision
    flag: str | None = None  # what made the trigger look like a prompt injection

    @property
    def destination(self) -> policy.Destination:
        return destination_of(self.conversation)


def destination_of(conversation: ConversationView) -> policy.Destination:
    """Where replies in a conversation go: its channel, connection and provider id."""
    return policy.Destination(conversation.channel, conversation.connection_id, conversation.external_id)


def replace_run(run: _Run, decision: policy.Decision) -> _Run:
    return run if decision == run.decision else dataclasses.replace(run, decision=decision)


async def _quiet(text: str) -> None:
    """Deltas of a draft go nowhere: the contact must not see them, the owner gets the draft."""


def _fit(history: list[PastMessage], budget_chars: int) -> tuple[list[PastMessage], list[PastMessage]]:
    """(the most recent messages that fit ``budget_chars``, the older ones), both oldest first."""
    used, keep = 0, 0
    for message in reversed(history):
        if keep and used + len(message.text) > budget_chars:
            break
        used += len(message.text)
        keep += 1
    recent = history[len(history) - keep :]
    if recent and len(recent[0].text) > budget_chars:  # one huge message: its end is what matters
        first = recent[0]
        recent[0] = PastMessage(
            first.message_id, first.direction, first.sender_name, first.text[-budget_chars:], first.sent_at
        )
    return recent, history[: len(history) - keep]


async def _keep_in_progress(msg: Msg) -> None:
    """A run may outlast the consumer's ack wait: keep the trigger ours while it works."""
    with contextlib.suppress(*RECOVERABLE):
        while True:
            await asyncio.sleep(5)
            await msg.in_progress()
            raise_if_cancelled()
