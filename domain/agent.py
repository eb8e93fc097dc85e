"""The agent's decisions, pure: whether to answer a message, how far its tools may read,
how a run claims its conversation's lane, how a reply is cut to fit a channel, what a
run costs, and the events each step of a run records.

Everything here is a function of its inputs (no clock, no I/O; only a new event's own id
is fresh), so the policy reads as a table and is tested as one
(tests/unit/test_agent_policy.py), and a run's events as given/when/then
(tests/unit/test_agent_decider.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from domain import events as ev
from domain import ids
from domain.models import ModelReply, price_of

# --- templates ---------------------------------------------------------------------------

DEFAULT_MODEL = "claude-sonnet-4-6"

TEMPLATES: dict[str, ev.AgentConfiguredData] = {
    "personal_assistant": ev.AgentConfiguredData(
        name="Moltbot",
        model=DEFAULT_MODEL,
        system_prompt=(
            "You are the personal assistant of the person who owns this inbox. Answer their"
            " contacts briefly and warmly, in the language they write in. Never invent"
            " commitments; when unsure, say the owner will get back to them."
        ),
        template="personal_assistant",
    ),
    "customer_support": ev.AgentConfiguredData(
        name="Support",
        model=DEFAULT_MODEL,
        system_prompt=(
            "You answer customers on behalf of a small business. Be precise and friendly,"
            " use the conversation history, keep answers under 80 words, and offer a human"
            " follow-up for refunds, complaints or anything you cannot answer."
        ),
        rules=ev.AgentRoutingRules(groups_require_mention=True),
        template="customer_support",
    ),
    "creative_writer": ev.AgentConfiguredData(
        name="Muse",
        model=DEFAULT_MODEL,
        system_prompt=(
            "You are a playful creative writing partner: suggest ideas, short drafts and"
            " vivid wording, and ask one question back to keep the story going."
        ),
        tools=("current_time",),
        template="creative_writer",
    ),
}


def default_agent_id(tenant_id: str) -> str:
    """Every tenant's first agent has an id derived from the tenant (created at sign-up)."""
    return ids.stable_id(ids.AGENT, f"default:{tenant_id}")


# --- whether to answer -------------------------------------------------------------------


@dataclass(frozen=True)
class Situation:
    """What the policy looks at for one incoming message."""

    message: ev.MessageReceivedData
    conversation_kind: str  # direct, group, thread
    conversation_agent_enabled: bool
    agent: ev.AgentConfiguredData | None  # None: the tenant has no agent
    budget_left: bool
    at: datetime
    received_at: datetime  # when the message was recorded
    runs_last_minute: int = 0  # runs requested in this conversation in the last minute
    max_runs_per_minute: int = 0  # the most runs a conversation gets a minute; 0: no limit


# A message older than this when the agent first sees it (an agent consumer created on
# an old log, a long outage) is not answered: a reply hours late is worse than none.
MAX_TRIGGER_AGE_S = 600.0


Verdict = Literal["answer", "budget_reply", "skip"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str  # why, for logs and tests: "answer", "agent_disabled", "group_without_mention", ...


def too_old(received_at: datetime, at: datetime) -> bool:
    """A message this old when first handled is history, not a question to answer now."""
    return (at - received_at).total_seconds() > MAX_TRIGGER_AGE_S


def decide(situation: Situation) -> Decision:
    """Answer, send the one "budget reached" reply, or stay quiet — and why."""
    agent, message = situation.agent, situation.message
    if agent is None or not agent.enabled:
        return Decision("skip", "no_agent")
    if message.backfill:
        return Decision("skip", "backfill")  # history brought in with a new channel
    if too_old(situation.received_at, situation.at):
        return Decision("skip", "too_old")
    if not situation.conversation_agent_enabled:
        return Decision("skip", "conversation_disabled")
    if message.sender.is_bot:
        return Decision("skip", "sender_is_bot")  # never answer another bot (or ourselves)
    rules = agent.rules
    if rules.channels and message.channel not in rules.channels:
        return Decision("skip", "channel_not_routed")
    if rules.allowed_senders and message.sender.id not in rules.allowed_senders:
        return Decision("skip", "sender_not_allowed")
    if (
        situation.conversation_kind != "direct"
        and rules.groups_require_mention
        and not message.mentions_agent
    ):
        return Decision("skip", "group_without_mention")
    if rules.quiet_hours is not None and _in_quiet_hours(situation.at.hour, rules.quiet_hours):
        return Decision("skip", "quiet_hours")
    if situation.max_runs_per_minute and situation.runs_last_minute >= situation.max_runs_per_minute:
        return Decision("skip", "rate_limited")  # a flood of messages gets a bounded number of runs
    if not situation.budget_left:
        return Decision("budget_reply", "budget_exhausted")
    return Decision("answer", "answer")


def _in_quiet_hours(hour: int, quiet: tuple[int, int]) -> bool:
    start, end = quiet
    return start <= hour < end if start <= end else hour >= start or hour < end


BUDGET_REPLY = (
    "Thanks for your message! The assistant has used up this month's allowance, so a person"
    " will reply as soon as they can."
)

# --- how far the tools may read ---------------------------------------------------------------

SearchScope = Literal["conversation", "inbox"]


def search_scope(rules: ev.AgentRoutingRules, sender_id: str, conversation_kind: str) -> SearchScope:
    """What the agent's tools may read when answering ``sender_id``: their own conversation,
    or the whole inbox for a sender the owner named — and only in a direct conversation,
    since a reply in a group is read by everyone in it."""
    if conversation_kind == "direct" and sender_id in rules.inbox_search_senders:
        return "inbox"
    return "conversation"


# --- the conversation's lane: at most one run at a time ------------------------------------

Claim = Literal["start", "resume", "done", "busy", "take_over"]


def claim(last: ev.Event | None, run_id: str, now: datetime, stale_after_s: float) -> Claim:
    """What a trigger may do given the last event on its conversation's lane.

    - ``start``: the lane is free; request the run.
    - ``resume``: this very run was requested or started (a crash interrupted it): go on.
    - ``done``: this run already completed or failed: nothing to do.
    - ``busy``: another run is active: try again after it.
    - ``take_over``: another run has been silent past ``stale_after_s``: fail it, then start.
    """
    if last is None:
        return "start"
    last_run_id = getattr(getattr(last, "data", None), "run_id", None)
    if last_run_id == run_id:
        return "done" if isinstance(last, ev.AgentRunCompleted | ev.AgentRunFailed) else "resume"
    if isinstance(last, ev.AgentRunCompleted | ev.AgentRunFailed):
        return "start"
    if (now - last.occurred_at).total_seconds() > stale_after_s:
        return "take_over"
    return "busy"


def run_id_for(trigger_event_id: str) -> str:
    """A run is named by the message that triggered it: a redelivered trigger is the same run."""
    return ids.stable_id(ids.RUN, f"trigger:{trigger_event_id}")


def reply_message_id(run_id: str, part: int) -> str:
    return ids.stable_id(ids.MESSAGE, f"reply:{run_id}:{part}")


# --- memory: a rolling summary of what no longer fits -----------------------------------------

SUMMARY_CHARS = 2000  # the summary's own budget
SUMMARY_LINE_CHARS = 160


def summarize(previous: str | None, older: list[tuple[str, str]]) -> str:
    """``previous`` extended with one line per older message (sender: its first sentence),
    keeping the newest lines within ``SUMMARY_CHARS``. Extractive and deterministic: it
    costs no model call and never invents anything."""
    lines = previous.splitlines() if previous else []
    for sender, text in older:
        flat = " ".join(text.split())
        first = re.split(r"(?<=[.!?])\s", flat, maxsplit=1)[0]
        if len(first) > SUMMARY_LINE_CHARS:
            first = first[: SUMMARY_LINE_CHARS - 1].rstrip() + "…"
        lines.append(f"{sender}: {first}")
    while lines and sum(len(line) + 1 for line in lines) > SUMMARY_CHARS:
        lines.pop(0)
    return "\n".join(lines)


def with_memory(system_prompt: str, summary: str | None) -> str:
    if not summary:
        return system_prompt
    return f"{system_prompt}\n\nEarlier in this conversation (summary, oldest first):\n{summary}"


# --- replies that fit the channel ------------------------------------------------------------

# The longest text of one message where the channel registry does not say (it says per kind).
DEFAULT_MAX_TEXT_LENGTH = 2000


def chunk_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, at paragraph, line,
    sentence or word boundaries when there is one in the second half of a part."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = -1
        for separator in ("\n\n", "\n", ". ", " "):
            at = window.rfind(separator)
            if at >= limit // 2:
                cut = at + len(separator.rstrip(" ")) if separator == ". " else at
                break
        if cut <= 0:
            cut = limit  # one long word: hard cut
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


# --- plans and prices ---------------------------------------------------------------------------

# Monthly model spend included in each plan, in micro-dollars. BYOK tenants pay their
# provider directly: no platform limit.


@dataclass(frozen=True)
class Charge:
    cost_micros: int
    priced: bool  # False: the catalog does not know the model; charged at the highest price


def charge(model: str, tokens_in: int, tokens_out: int) -> Charge:
    """What a model call costs, at the catalog's price for ``model`` (``domain.models``);
    a model the catalog does not know is charged at the highest known price, never free."""
    price, known = price_of(model)
    cost = (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) // 1_000_000
    return Charge(cost, known)


# --- the events of a run -------------------------------------------------------------------
# What a run records, decided here from plain values; the orchestrator reads, calls the
# model and appends. Every step is named by the run (itself named by its trigger), so a
# redelivered trigger records each step once: the dedupe keys derive from the run id,
# the reply ids from the run id and the part, usage from the run id and the metric.

ACTOR = "agent:orchestrator"


@dataclass(frozen=True)
class Destination:
    """Where a conversation's replies go: its channel, connection, and provider id."""

    channel: str
    connection_id: str
    external_id: str


class OlderMessage(Protocol):
    """A message that no longer fits the model's context (the read model's past message)."""

    @property
    def message_id(self) -> str: ...
    @property
    def sender_name(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def sent_at(self) -> datetime: ...


def claim_events(
    trigger: ev.MessageReceived,
    claimed: Claim,
    last: ev.Event | None,
    run_id: str,
    agent_id: str,
    *,
    at: datetime,
) -> list[ev.Event]:
    """What claiming the lane records (see :func:`claim`): to ``start``, the run's request;
    to ``take_over``, first the failure of the silent run ``last`` belongs to. Nothing for
    a run that resumes, is done, or has to wait."""
    if claimed not in ("start", "take_over"):
        return []
    data = ev.AgentRunRequestedData(
        run_id=run_id, agent_id=agent_id, trigger_message_id=trigger.data.message_id
    )
    requested = _run_event(trigger, ev.AgentRunRequested, data, at)
    silent_run_id = getattr(getattr(last, "data", None), "run_id", None)
    if claimed == "take_over" and silent_run_id is not None:
        reason = "The agent stopped while answering; a newer message took over."
        return [run_failed(trigger, silent_run_id, "abandoned", reason, at=at), requested]
    return [requested]


def run_started(trigger: ev.MessageReceived, run_id: str, model: str, *, at: datetime) -> list[ev.Event]:
    return [_run_event(trigger, ev.AgentRunStarted, ev.AgentRunStartedData(run_id=run_id, model=model), at)]


def run_failed(
    trigger: ev.MessageReceived, run_id: str, code: str, reason: str, *, at: datetime
) -> ev.AgentRunFailed:
    return _run_event(
        trigger, ev.AgentRunFailed, ev.AgentRunFailedData(run_id=run_id, code=code, reason=reason), at
    )


def summary_events(
    trigger: ev.MessageReceived,
    previous: ev.ConversationSummarizedData | None,
    older: Sequence[OlderMessage],
    *,
    at: datetime,
) -> list[ev.ConversationSummarized]:
    """The conversation's rolling summary extended with the ``older`` messages it does not
    cover yet (:func:`summarize`), or nothing when it covers them all."""
    new = [m for m in older if previous is None or m.sent_at > previous.through_sent_at]
    if not new:
        return []
    summary = summarize(previous.summary if previous else None, [(m.sender_name, m.text) for m in new])
    data = ev.ConversationSummarizedData(
        summary=summary,
        through_message_id=new[-1].message_id,
        through_sent_at=new[-1].sent_at,
        messages=(previous.messages if previous else 0) + len(new),
    )
    return [_run_event(trigger, ev.ConversationSummarized, data, at)]


def budget_reply_events(
    trigger: ev.MessageReceived,
    destination: Destination,
    run_id: str,
    agent: ev.AgentConfiguredData,
    *,
    at: datetime,
) -> list[ev.Event]:
    """The one "allowance used up" reply (:data:`BUDGET_REPLY`), and the run failed for it."""
    reason = "This month's model budget is used up."
    return [
        _reply(trigger, destination, run_id, agent, BUDGET_REPLY, 0, at),
        run_failed(trigger, run_id, "budget_exhausted", reason, at=at),
    ]


def reply_events(
    trigger: ev.MessageReceived,
    destination: Destination,
    run_id: str,
    agent: ev.AgentConfiguredData,
    reply: ModelReply,
    *,
    max_text: int,
    at: datetime,
) -> list[ev.Event]:
    """A model's reply as recorded: one send request per part of at most ``max_text``
    characters (the channel's limit; "…" for an empty reply), the run's usage at the
    catalog's price (:func:`charge`), and the run completed — last, so a run is only done
    once everything before it is recorded."""
    parts = chunk_text(reply.text, max_text) or ["…"]
    sends = [_reply(trigger, destination, run_id, agent, text, n, at) for n, text in enumerate(parts)]
    cost = charge(reply.model, reply.tokens_in, reply.tokens_out).cost_micros
    metrics: list[tuple[ev.UsageMetric, int]] = [
        ("agent_runs", 1),
        ("tokens_in", reply.tokens_in),
        ("tokens_out", reply.tokens_out),
        ("cost_micros", cost),
    ]
    usage = usage_events(trigger.tenant_id, run_id, metrics, actor=ACTOR, causation_id=trigger.id, at=at)
    completed = ev.AgentRunCompletedData(
        run_id=run_id,
        model=reply.model,
        tokens_in=reply.tokens_in,
        tokens_out=reply.tokens_out,
        cost_micros=cost,
        reply_message_id=sends[0].data.message_id,
        tool_calls=tuple(
            ev.AgentToolUse(name=c.name, input=c.input, is_error=c.is_error) for c in reply.tool_calls
        ),
        offline=reply.offline,
    )
    return [*sends, *usage, _run_event(trigger, ev.AgentRunCompleted, completed, at)]


def usage_events(
    tenant_id: str,
    source_id: str,
    metrics: list[tuple[ev.UsageMetric, int]],
    *,
    actor: str,
    at: datetime,
    causation_id: str | None = None,
) -> list[ev.UsageRecorded]:
    """One ``usage.recorded`` per metric, all naming ``source_id`` (the run or preview), so a
    retried append records each once (the dedupe key derives from it)."""
    return [
        ev.new_event(
            ev.UsageRecorded,
            tenant_id=tenant_id,
            aggregate_id=tenant_id,
            actor=actor,
            causation_id=causation_id,
            occurred_at=at,
            data=ev.UsageRecordedData(metric=metric, quantity=quantity, source_id=source_id),
        )
        for metric, quantity in metrics
    ]


def _reply(
    trigger: ev.MessageReceived,
    destination: Destination,
    run_id: str,
    agent: ev.AgentConfiguredData,
    text: str,
    part: int,
    at: datetime,
) -> ev.MessageSendRequested:
    data = ev.MessageSendRequestedData(
        message_id=reply_message_id(run_id, part),
        connection_id=destination.connection_id,
        channel=destination.channel,
        to=destination.external_id,
        text=text,
        sender=ev.Sender(id=f"agent:{run_id}", name=agent.name, is_bot=True),
        reply_to_message_id=trigger.data.message_id if part == 0 else None,
        agent_run_id=run_id,
    )
    return _run_event(trigger, ev.MessageSendRequested, data, at)


def _run_event(trigger: ev.MessageReceived, cls: type[ev.E], data: ev.Payload, at: datetime) -> ev.E:
    """An event of the run answering ``trigger``, on the trigger's conversation, caused by it."""
    return ev.new_event(
        cls,
        tenant_id=trigger.tenant_id,
        aggregate_id=trigger.aggregate_id,
        actor=ACTOR,
        data=data,
        causation_id=trigger.id,
        correlation_id=trigger.correlation_id or trigger.id,
        occurred_at=at,
    )
