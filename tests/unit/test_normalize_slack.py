"""Slack Events API payloads → canonical events, as tables (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.slack.normalize import (
    channel_conversation_id,
    conversation_created,
    delivery,
    emoji,
    message_id,
    normalize,
    slack_time,
    thread_conversation_id,
)
from domain import events as ev

TENANT, CONNECTION, BOT = "t_1", "cn_1", "UBOT"
TS = "1764000000.000100"


def _callback(**event: Any) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T1", "event": event}


def _message(**extra: Any) -> dict[str, Any]:
    return _callback(**{"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": TS, **extra})


def _events(payload: dict[str, Any]) -> list[ev.Event]:
    return normalize(payload, tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=BOT)


EDITED = {
    "subtype": "message_changed",
    "message": {"user": "U1", "text": "hi!", "ts": TS, "edited": {"ts": "1764000005.000000"}},
}
UNFURLED = {"subtype": "message_changed", "message": {"user": "U1", "text": "hi", "ts": TS}}
REACTION = {
    "type": "reaction_added",
    "user": "U1",
    "reaction": "thumbsup",
    "event_ts": "1764000009.000000",
    "item": {"type": "message", "channel": "C1", "ts": TS},
}


@pytest.mark.parametrize(
    ("payload", "types"),
    [
        (_message(), ["message.received"]),
        (_message(type="app_mention"), ["message.received"]),
        (
            _message(subtype="file_share", text="", files=[{"id": "F1", "mimetype": "image/png"}]),
            ["message.received"],
        ),
        (_message(subtype="channel_join"), []),
        (_message(subtype="bot_message", bot_id="B1"), []),
        (_message(user=BOT), []),  # our own bot
        (_message(text=""), []),
        (_message(**EDITED), ["message.edited"]),
        (_message(**UNFURLED), []),  # an unfurl is not an edit
        (
            _message(subtype="message_deleted", deleted_ts=TS, previous_message={"user": "U1", "ts": TS}),
            ["message.deleted"],
        ),
        (_callback(**REACTION), ["reaction.added"]),
        (_callback(**{**REACTION, "type": "reaction_removed"}), ["reaction.removed"]),
        (_callback(**{**REACTION, "item": {"type": "file", "file": "F1"}}), []),
        ({"type": "url_verification", "challenge": "x"}, []),
        (_callback(type="channel_created", channel={"id": "C2"}), []),
    ],
)
def test_which_events_become_which_canonical_events(payload: dict[str, Any], types: list[str]) -> None:
    assert [event.type for event in _events(payload)] == types


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        ({}, False),
        ({"text": "hey <@UBOT>"}, True),
        ({"text": "hey <@UBOT|moltbot>"}, True),
        ({"text": "hey <@UBOT2>"}, False),
        ({"type": "app_mention"}, True),
        ({"thread_ts": "1764000000.000001", "parent_user_id": BOT}, True),  # a thread the bot started
        ({"thread_ts": "1764000000.000001", "parent_user_id": "U2"}, False),
    ],
)
def test_the_agent_is_mentioned_by_id_by_app_mention_or_in_its_thread(
    extra: dict[str, Any], mentions: bool
) -> None:
    [received] = _events(_message(**extra))
    assert isinstance(received, ev.MessageReceived)
    assert received.data.mentions_agent is mentions


@pytest.mark.parametrize(
    ("extra", "conversation", "kind", "external_id"),
    [
        ({}, channel_conversation_id(CONNECTION, "C1"), "group", "C1"),
        ({"channel": "D1", "channel_type": "im"}, channel_conversation_id(CONNECTION, "D1"), "direct", "D1"),
        (
            {"thread_ts": "1764000000.000001"},
            thread_conversation_id(CONNECTION, "C1", "1764000000.000001"),
            "thread",
            "C1:1764000000.000001",
        ),
        ({"thread_ts": TS}, channel_conversation_id(CONNECTION, "C1"), "group", "C1"),  # the thread's parent
    ],
)
def test_a_message_lives_in_its_channel_dm_or_thread(
    extra: dict[str, Any], conversation: str, kind: str, external_id: str
) -> None:
    payload = _message(**extra)
    [received] = _events(payload)
    created = conversation_created(payload, tenant_id=TENANT, connection_id=CONNECTION)
    assert created is not None
    assert received.aggregate_id == created.aggregate_id == conversation
    assert (created.data.kind, created.data.external_id) == (kind, external_id)


def test_a_delivery_creates_the_conversation_only_for_a_new_message() -> None:
    options: dict[str, Any] = {"tenant_id": TENANT, "connection_id": CONNECTION, "bot_user_id": BOT}
    assert delivery(_message(), **options).created is not None
    assert delivery(_message(**EDITED), **options).created is None
    assert delivery(_callback(**REACTION), **options).created is None


def test_a_message_and_its_app_mention_are_one_message() -> None:
    [plain] = _events(_message())
    [mention] = _events(_message(type="app_mention"))
    assert isinstance(plain, ev.MessageReceived) and isinstance(mention, ev.MessageReceived)
    assert plain.data.message_id == mention.data.message_id == message_id(CONNECTION, "C1", TS)


@pytest.mark.parametrize(
    ("name", "shown"),
    [("thumbsup", "👍"), ("+1", "👍"), ("thumbsup::skin-tone-2", "👍"), ("party_parrot", ":party_parrot:")],
)
def test_reactions_show_as_emoji_where_known(name: str, shown: str) -> None:
    assert emoji(name) == shown


@given(st.integers(min_value=0, max_value=4_000_000_000), st.integers(min_value=0, max_value=999_999))
def test_a_ts_is_its_moment_to_the_microsecond(seconds: int, micros: int) -> None:
    expected = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)
    assert slack_time(f"{seconds}.{micros:06d}") == expected


def test_what_the_owner_writes_in_slack_is_a_message_they_sent() -> None:
    owner = delivery(
        _message(user="UOWNER", text="I'll take this one"),
        tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=BOT, owner_user_id="UOWNER",
    )  # fmt: skip
    [sent] = owner.events
    assert isinstance(sent, ev.MessageSent)
    assert (sent.data.origin, sent.data.text, sent.data.sender.id) == (
        "device",
        "I'll take this one",
        "slack:UOWNER",
    )
    assert sent.data.message_id == message_id(CONNECTION, "C1", TS)  # the id an edit of it names
    assert owner.created is not None  # a conversation the owner starts is a conversation too
    [other] = normalize(
        _message(), tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=BOT, owner_user_id="UOWNER"
    )
    assert isinstance(other, ev.MessageReceived)
