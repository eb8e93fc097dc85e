"""The events of an agent run, decided without I/O: given a trigger (and what the lane or
the model said), when a step of the run, then these events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import agent
from domain import events as ev
from domain.codec import dedupe_key
from domain.models import HIGHEST_PRICE, OFFLINE_MODEL, ModelReply, ToolCall

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ASSISTANT = agent.TEMPLATES["personal_assistant"]
TO = agent.Destination(channel="webchat", connection_id="cn_1", external_id="v_1")


def _trigger(*, correlation_id: str | None = None) -> ev.MessageReceived:
    return ev.new_event(
        ev.MessageReceived,
        tenant_id="t_1",
        aggregate_id="c_1",
        actor="connector:webchat",
        correlation_id=correlation_id,
        occurred_at=AT - timedelta(seconds=2),
        data=ev.MessageReceivedData(
            message_id="m_1", connection_id="cn_1", channel="webchat", provider_message_id="1",
            sender=ev.Sender(id="webchat:v_1", name="Ada"), text="Are you open on Sunday?", sent_at=AT,
        ),
    )  # fmt: skip


TRIGGER = _trigger()
RUN = agent.run_id_for(TRIGGER.id)


def _reply(text: str = "Yes, from ten.", *, model: str = "claude-sonnet-4-6", **fields: Any) -> ModelReply:
    return ModelReply(text=text, model=model, **({"tokens_in": 1000, "tokens_out": 100} | fields))


def _then(events: Sequence[ev.Event]) -> list[tuple[str, Any]]:
    """What a step recorded, without the fresh event ids: (type, data) in order."""
    return [(event.type, event.data) for event in events]  # type: ignore[attr-defined]


def _send(text: str, part: int = 0) -> tuple[str, ev.MessageSendRequestedData]:
    return (
        "message.send_requested",
        ev.MessageSendRequestedData(
            message_id=agent.reply_message_id(RUN, part), connection_id="cn_1", channel="webchat", to="v_1",
            text=text, sender=ev.Sender(id=f"agent:{RUN}", name="Moltbot", is_bot=True),
            reply_to_message_id="m_1" if part == 0 else None, agent_run_id=RUN,
        ),
    )  # fmt: skip


def _usage(metric: ev.UsageMetric, quantity: int) -> tuple[str, ev.UsageRecordedData]:
    return ("usage.recorded", ev.UsageRecordedData(metric=metric, quantity=quantity, source_id=RUN))


def _lane(cls: type[ev.E], run_id: str) -> ev.E:
    data: dict[type[ev.Event], ev.Payload] = {
        ev.AgentRunStarted: ev.AgentRunStartedData(run_id=run_id, model="offline-1"),
        ev.AgentRunCompleted: ev.AgentRunCompletedData(
            run_id=run_id, model="offline-1", tokens_in=1, tokens_out=1, cost_micros=0
        ),
    }
    return ev.new_event(cls, tenant_id="t_1", aggregate_id="c_1", actor="agent", data=data[cls])


# --- claiming the lane ----------------------------------------------------------------------


REQUESTED = (
    "agent.run_requested",
    ev.AgentRunRequestedData(run_id=RUN, agent_id="ag_1", trigger_message_id="m_1"),
)
ABANDONED = (
    "agent.run_failed",
    ev.AgentRunFailedData(
        run_id="r_silent",
        code="abandoned",
        reason="The agent stopped while answering; a newer message took over.",
    ),
)


@pytest.mark.parametrize(
    ("last", "claimed", "then"),
    [
        (None, "start", [REQUESTED]),
        ((ev.AgentRunCompleted, "r_before"), "start", [REQUESTED]),
        ((ev.AgentRunStarted, "r_silent"), "take_over", [ABANDONED, REQUESTED]),  # the silent run first
        ((ev.AgentRunStarted, RUN), "resume", []),
        ((ev.AgentRunCompleted, RUN), "done", []),
        ((ev.AgentRunStarted, "r_other"), "busy", []),
    ],
)
def test_claiming_the_lane_records_the_request(
    last: tuple[type[ev.Event], str] | None, claimed: agent.Claim, then: list[tuple[str, Any]]
) -> None:
    given_last = None if last is None else _lane(*last)
    events = agent.claim_events(TRIGGER, claimed, given_last, RUN, "ag_1", at=AT)
    assert _then(events) == then


# --- starting, failing ----------------------------------------------------------------------------


def test_a_started_run_names_its_model() -> None:
    events = agent.run_started(TRIGGER, RUN, "claude-haiku-4-5", at=AT)
    assert _then(events) == [
        ("agent.run_started", ev.AgentRunStartedData(run_id=RUN, model="claude-haiku-4-5"))
    ]


def test_a_failed_run_says_why() -> None:
    failed = agent.run_failed(TRIGGER, RUN, "model_unavailable", "The provider is down.", at=AT)
    assert _then([failed]) == [
        (
            "agent.run_failed",
            ev.AgentRunFailedData(run_id=RUN, code="model_unavailable", reason="The provider is down."),
        )
    ]


def test_an_exhausted_budget_gets_one_reply_and_fails_the_run() -> None:
    events = agent.budget_reply_events(TRIGGER, TO, RUN, ASSISTANT, at=AT)
    assert _then(events) == [
        _send(agent.BUDGET_REPLY),
        (
            "agent.run_failed",
            ev.AgentRunFailedData(
                run_id=RUN, code="budget_exhausted", reason="This month's model budget is used up."
            ),
        ),
    ]


# --- a model's reply --------------------------------------------------------------------------------


def test_a_drafted_reply_is_proposed_whole_metered_and_completes_the_run_without_a_send() -> None:
    events = agent.draft_events(TRIGGER, TO, RUN, _reply("Yes, from ten. " * 300), reason="draft_mode", at=AT)
    assert _then(events) == [
        (
            "message.draft_proposed",
            ev.MessageDraftProposedData(
                draft_id=agent.draft_id_for(RUN), run_id=RUN, connection_id="cn_1", channel="webchat",
                to="v_1", text=("Yes, from ten. " * 300).strip(), reply_to_message_id="m_1",
                reason="draft_mode",
            ),
        ),
        _usage("agent_runs", 1),
        _usage("tokens_in", 1000),
        _usage("tokens_out", 100),
        _usage("cost_micros", 4500),
        (
            "agent.run_completed",
            ev.AgentRunCompletedData(
                run_id=RUN, model="claude-sonnet-4-6", tokens_in=1000, tokens_out=100, cost_micros=4500,
                reply_message_id=None,
            ),
        ),
    ]  # fmt: skip
    assert not any(isinstance(event, ev.MessageSendRequested) for event in events)
    # A resumed run proposes the same draft: one in the log (its dedupe key is the draft's).
    again = agent.draft_events(TRIGGER, TO, RUN, _reply("other words"), reason="draft_mode", at=AT)
    assert dedupe_key(again[0]) == dedupe_key(events[0])


def test_a_reply_is_sent_metered_and_completes_the_run() -> None:
    used = ToolCall(name="current_time", input={}, output="12:00")
    reply = _reply("Yes, from ten.", tool_calls=(used,))
    events = agent.reply_events(TRIGGER, TO, RUN, ASSISTANT, reply, max_text=4000, at=AT)
    assert _then(events) == [
        _send("Yes, from ten."),
        _usage("agent_runs", 1),
        _usage("tokens_in", 1000),
        _usage("tokens_out", 100),
        _usage("cost_micros", 3000 + 1500),  # $3 and $15 per MTok
        (
            "agent.run_completed",
            ev.AgentRunCompletedData(
                run_id=RUN, model="claude-sonnet-4-6", tokens_in=1000, tokens_out=100, cost_micros=4500,
                reply_message_id=agent.reply_message_id(RUN, 0),
                tool_calls=(ev.AgentToolUse(name="current_time", input={}),),  # used, not what it said
            ),
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("limit", [2000, 4000, 4096, 40000])  # the channels' limits today
def test_a_long_reply_is_cut_to_the_channels_limit(limit: int) -> None:
    text = " ".join(f"word{n}" for n in range(6000))  # ~ 52k characters: beyond every limit
    events = agent.reply_events(TRIGGER, TO, RUN, ASSISTANT, _reply(text), max_text=limit, at=AT)
    sends = [e for e in events if isinstance(e, ev.MessageSendRequested)]
    assert len(sends) == len(agent.chunk_text(text, limit)) >= len(text) // limit > 0
    assert all(len(s.data.text) <= limit for s in sends)
    assert [s.data.message_id for s in sends] == [agent.reply_message_id(RUN, n) for n in range(len(sends))]
    assert [s.data.reply_to_message_id for s in sends] == ["m_1"] + [None] * (len(sends) - 1)
    assert events[: len(sends)] == sends  # the parts first, in order
    [completed] = [e for e in events if isinstance(e, ev.AgentRunCompleted)]
    assert completed.data.reply_message_id == sends[0].data.message_id


def test_an_empty_reply_still_answers() -> None:
    events = agent.reply_events(TRIGGER, TO, RUN, ASSISTANT, _reply("  \n "), max_text=4000, at=AT)
    assert _then(events)[0] == _send("…")


@pytest.mark.parametrize(
    ("model", "cost", "priced"),
    [
        ("claude-sonnet-4-6", 1000 * 3 + 100 * 15, True),
        ("claude-sonnet-4-5-20250929", 1000 * 3 + 100 * 15, True),  # a dated id is its family
        ("claude-opus-4-1", 1000 * 15 + 100 * 75, True),
        (OFFLINE_MODEL, 0, True),
        (
            "gpt-unknown",
            (1000 * HIGHEST_PRICE.input_per_mtok + 100 * HIGHEST_PRICE.output_per_mtok) // 10**6,
            False,
        ),
    ],
)
def test_a_run_costs_the_catalogs_price_and_an_unknown_model_the_highest(
    model: str, cost: int, priced: bool
) -> None:
    events = agent.reply_events(TRIGGER, TO, RUN, ASSISTANT, _reply(model=model), max_text=4000, at=AT)
    metered = {e.data.metric: e.data.quantity for e in events if isinstance(e, ev.UsageRecorded)}
    assert metered == {"agent_runs": 1, "tokens_in": 1000, "tokens_out": 100, "cost_micros": cost}
    assert events[-1].data.cost_micros == cost  # type: ignore[attr-defined]
    assert agent.charge(model, 1000, 100) == agent.Charge(cost, priced)  # unpriced: flagged for the log


@given(text=st.text(max_size=3000), limit=st.integers(min_value=20, max_value=5000))
def test_every_reply_ends_with_its_usage_and_the_completed_run(text: str, limit: int) -> None:
    events = agent.reply_events(TRIGGER, TO, RUN, ASSISTANT, _reply(text), max_text=limit, at=AT)
    types = [e.type for e in events]
    sends = types.count("message.send_requested")
    assert sends >= 1
    assert types == ["message.send_requested"] * sends + ["usage.recorded"] * 4 + ["agent.run_completed"]


# --- the envelope: a redelivered trigger records each step once ---------------------------------------


def _every_step(trigger: ev.MessageReceived) -> list[ev.Event]:
    run_id = agent.run_id_for(trigger.id)
    return [
        *agent.claim_events(trigger, "start", None, run_id, "ag_1", at=AT),
        *agent.run_started(trigger, run_id, "offline-1", at=AT),
        *agent.reply_events(trigger, TO, run_id, ASSISTANT, _reply("x " * 3000), max_text=2000, at=AT),
    ]


def test_a_runs_events_are_caused_by_its_trigger_and_keyed_by_the_run() -> None:
    first, again = _every_step(TRIGGER), _every_step(TRIGGER)
    assert [dedupe_key(e) for e in first] == [dedupe_key(e) for e in again]  # decided twice, stored once
    assert len({dedupe_key(e) for e in first}) == len(first)
    assert {(e.tenant_id, e.actor, e.causation_id, e.occurred_at) for e in first} == {
        ("t_1", "agent:orchestrator", TRIGGER.id, AT)
    }
    run = [e for e in first if not isinstance(e, ev.UsageRecorded)]
    metered = [e for e in first if isinstance(e, ev.UsageRecorded)]
    assert {(e.aggregate_id, e.correlation_id) for e in run} == {("c_1", TRIGGER.id)}  # a trigger starts one
    assert {(e.aggregate_id, e.correlation_id) for e in metered} == {("t_1", None)}  # the tenant's meter
    correlated = _every_step(_trigger(correlation_id="01CORRELATED"))
    assert {e.correlation_id for e in correlated if not isinstance(e, ev.UsageRecorded)} == {"01CORRELATED"}


# --- memory ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Past:  # the read model's past message, as far as the summary looks at it
    message_id: str
    sender_name: str
    text: str
    sent_at: datetime


OLDER = [
    _Past("m_a", "Ada", "Can we meet Friday? I am free after ten.", AT - timedelta(hours=2)),
    _Past("m_b", "Bo", "Sure.", AT - timedelta(hours=1)),
]


def test_older_messages_extend_the_summary() -> None:
    events = agent.summary_events(TRIGGER, None, OLDER, at=AT)
    assert _then(events) == [
        (
            "conversation.summarized",
            ev.ConversationSummarizedData(
                summary="Ada: Can we meet Friday?\nBo: Sure.", through_message_id="m_b",
                through_sent_at=AT - timedelta(hours=1), messages=2,
            ),
        )
    ]  # fmt: skip


def test_a_summary_that_covers_them_records_nothing_and_a_newer_one_adds_only_the_rest() -> None:
    [first] = agent.summary_events(TRIGGER, None, OLDER[:1], at=AT)
    assert agent.summary_events(TRIGGER, first.data, OLDER[:1], at=AT) == []
    [extended] = agent.summary_events(TRIGGER, first.data, OLDER, at=AT)
    assert extended.data.summary == "Ada: Can we meet Friday?\nBo: Sure."
    assert (extended.data.through_message_id, extended.data.messages) == ("m_b", 2)


# --- the owner writing from their own device ---------------------------------------------------


def _from_device(text: str, **fields: Any) -> ev.MessageSent:
    return ev.new_event(
        ev.MessageSent, tenant_id="t_1", aggregate_id="c_1", actor="device:d_1",
        occurred_at=AT - timedelta(seconds=1),
        data=ev.MessageSentData(
            message_id="m_mine", connection_id="cn_1", channel="imessage", provider_message_id="g1",
            text=text, sent_at=AT, sender=ev.Sender(id="imessage:me", name="Me"),
            **({"origin": "device"} | fields),
        ),
    )  # fmt: skip


def test_the_owner_writing_from_their_device_pauses_the_agent_there() -> None:
    [paused] = agent.owner_wrote(_from_device("On my way!"), 45, at=AT)
    assert _then([paused]) == [
        (
            "conversation.agent_paused",
            ev.ConversationAgentPausedData(
                reason="human_replied", until=AT + timedelta(minutes=45), message_id="m_mine"
            ),
        )
    ]
    assert paused.aggregate_id == "c_1"
    [default] = agent.owner_wrote(_from_device("ok"), None, at=AT)
    assert default.data.until == AT + timedelta(minutes=agent.TAKEOVER_MINUTES)  # type: ignore[attr-defined]
    # Seen twice (a redelivery), it is the same event: stored once.
    assert dedupe_key(agent.owner_wrote(_from_device("On my way!"), 45, at=AT)[0]) == dedupe_key(paused)


def test_stop_and_start_typed_by_the_owner_switch_the_agent_off_and_on() -> None:
    [stopped] = agent.owner_wrote(_from_device("  /STOP "), 30, at=AT)
    assert isinstance(stopped, ev.ConversationAgentPaused)
    assert (stopped.data.reason, stopped.data.until) == ("owner_command", AT + agent.STOPPED_FOR)
    [started] = agent.owner_wrote(_from_device("/start"), 30, at=AT)
    assert _then([started]) == [
        ("conversation.agent_resumed", ev.ConversationAgentResumedData(reason="owner_command"))
    ]


@pytest.mark.parametrize(
    "sent",
    [
        _from_device("hi", origin=None),  # sent by us (the outbox): not the owner stepping in
        _from_device("hi", backfill=True),  # history brought in with a new channel
        msgspec.structs.replace(_from_device("hi"), occurred_at=AT - timedelta(hours=3)),  # long ago
    ],
)
def test_what_is_not_the_owner_stepping_in_changes_nothing(sent: ev.MessageSent) -> None:
    assert agent.owner_wrote(sent, 30, at=AT) == []


def test_a_reply_that_grew_in_place_sends_only_the_parts_after_the_first() -> None:
    growing = agent.first_part(TRIGGER, TO, RUN, ASSISTANT, "First wor …", at=AT)
    assert _then([growing]) == [_send("First wor …")]  # the same message the reply's first part names
    reply = _reply("First words. " + "x" * 30)
    events = agent.reply_events(TRIGGER, TO, RUN, ASSISTANT, reply, max_text=20, at=AT, first_sent=True)
    sends = [e for e in events if isinstance(e, ev.MessageSendRequested)]
    assert [e.data.message_id for e in sends] == [
        agent.reply_message_id(RUN, 1),
        agent.reply_message_id(RUN, 2),
    ]
    completed = events[-1]
    assert isinstance(completed, ev.AgentRunCompleted)
    assert completed.data.reply_message_id == agent.reply_message_id(RUN, 0)
