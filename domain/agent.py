"""The agent's decisions, pure: whether to answer a message, how far its tools may read,
how a run claims its conversation's lane, how a reply is cut to fit a channel, and what a
run costs.

Everything here is a function of its inputs (no clock, no I/O), so the policy reads as
a table and is tested as one (tests/unit/test_agent_policy.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from domain import events as ev
from domain import ids
from domain.models import price_of

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
PLAN_BUDGET_MICROS: dict[str, int | None] = {"free": 2_000_000, "pro": 50_000_000, "byok": None}


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


def budget_left(plan: str, spent_micros: int) -> bool:
    limit = PLAN_BUDGET_MICROS.get(plan, PLAN_BUDGET_MICROS["free"])
    return limit is None or spent_micros < limit
