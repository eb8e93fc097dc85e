"""The subject grammar: built subjects always parse back, bad tokens never get in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import subjects
from domain.errors import InvalidToken
from domain.events import BY_TYPE

token_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
tokens = st.text(token_chars, min_size=1, max_size=40)
event_types = st.sampled_from(sorted(BY_TYPE))
bad_tokens = st.one_of(
    st.just(""),
    st.text(min_size=1, max_size=20).filter(lambda s: any(c in s for c in ". *>\t\n") or not s.isascii()),
    st.builds(lambda a, b: f"{a}.{b}", tokens, tokens),
    st.sampled_from(["*", ">", "t_1.>", "a b", "x\x00y"]),
)


@given(tokens, tokens, tokens, event_types)
def test_event_subject_round_trips(tenant: str, aggregate: str, aggregate_id: str, event_type: str) -> None:
    subject = subjects.event_subject(tenant, aggregate, aggregate_id, event_type)
    assert subject.split(".")[0] == "ev"
    assert subject.count(".") == 4
    assert subjects.parse_event_subject(subject) == (tenant, aggregate, aggregate_id, event_type)


@given(tokens, tokens, tokens, event_types)
def test_aggregate_filter_covers_its_events_only(
    tenant: str, aggregate: str, aggregate_id: str, event_type: str
) -> None:
    subject = subjects.event_subject(tenant, aggregate, aggregate_id, event_type)
    prefix = subjects.aggregate_filter(tenant, aggregate, aggregate_id).removesuffix(">")
    assert subject.startswith(prefix)
    assert subjects.tenant_filter(tenant) == f"ev.{tenant}.>"


@given(bad_tokens)
def test_bad_tokens_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(InvalidToken):
        subjects.event_subject(bad, "conversation", "c_1", "message.received")
    with pytest.raises(InvalidToken):
        subjects.event_subject("t_1", "conversation", bad, "message.received")
    with pytest.raises(InvalidToken):
        subjects.tenant_filter(bad)
    with pytest.raises(InvalidToken):
        subjects.command_subject("telegram", bad, "send_message")
    with pytest.raises(InvalidToken):
        subjects.live_subject(bad, "agent", "r_1")


def test_event_type_token_uses_underscore() -> None:
    assert subjects.event_token("message.received") == "message_received"
    assert subjects.event_token("connection.state_changed") == "connection_state_changed"
    assert subjects.event_type_of("connection_state_changed") == "connection.state_changed"


def test_every_event_type_maps_to_a_token_and_back() -> None:
    for event_type in BY_TYPE:
        noun, verb = event_type.split(".")
        assert subjects.event_type_of(subjects.event_token(event_type)) == event_type
        assert "." not in noun and "." not in verb


def test_command_live_and_dlq_subjects() -> None:
    assert subjects.command_subject("telegram", "cn_1", "send_message") == "cmd.telegram.cn_1.send_message"
    assert subjects.agent_command_subject("t_1", "c_1") == "cmd.agent.t_1.c_1"
    assert subjects.live_subject("t_1", "agent", "r_1") == "live.t_1.agent.r_1"
    assert subjects.dlq_subject("proj-inbox-v1", "unknown_type") == "dlq.proj-inbox-v1.unknown_type"


def test_parse_refuses_foreign_subjects() -> None:
    for subject in ("cmd.telegram.cn_1.send", "ev.t_1.conversation.c_1", "ev.t.c.i.x.y", "ev.t.*.i.x"):
        with pytest.raises(InvalidToken):
            subjects.parse_event_subject(subject)
