"""A website visitor's message → canonical events, as tables (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.webchat.normalize import (
    conversation_created,
    conversation_id,
    message_received,
    visitor_id,
)
from domain import events as ev

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=10, max_size=40)


def _received(token: str, client_message_id: str = "c1", connection_id: str = "cn_1") -> ev.MessageReceived:
    return message_received(
        tenant_id="t_1",
        connection_id=connection_id,
        visitor_token=token,
        name="Ada",
        text="hi",
        client_message_id=client_message_id,
        sent_at=AT,
    )


def test_a_visitor_has_a_direct_conversation_titled_with_their_name() -> None:
    created = conversation_created(
        tenant_id="t_1", connection_id="cn_1", visitor_token="vt_abcdefghij", name="Ada"
    )
    assert (created.type, created.data.kind, created.data.title) == (
        "conversation.created",
        "direct",
        "Ada (website)",
    )
    assert created.data.external_id == visitor_id("cn_1", "vt_abcdefghij")
    assert created.aggregate_id == conversation_id("cn_1", "vt_abcdefghij")


def test_a_message_is_received_from_the_visitor_in_their_conversation() -> None:
    received = _received("vt_abcdefghij")
    visitor = visitor_id("cn_1", "vt_abcdefghij")
    assert received.aggregate_id == conversation_id("cn_1", "vt_abcdefghij")
    assert received.data.provider_message_id == f"{visitor}:c1"
    assert (received.data.sender.id, received.data.channel) == (f"webchat:{visitor}", "webchat")


@given(TOKENS, TOKENS)
def test_one_visitors_client_ids_never_name_anothers_message(first: str, second: str) -> None:
    same = _received(first).data.message_id == _received(second).data.message_id
    assert same is (first == second)


@given(TOKENS, st.text(min_size=1, max_size=20))
def test_a_repeated_message_names_the_same_message(token: str, client_message_id: str) -> None:
    assert (
        _received(token, client_message_id).data.message_id
        == _received(token, client_message_id).data.message_id
    )
