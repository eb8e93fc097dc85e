"""Discord gateway dispatches → canonical events, as tables (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.discord.normalize import (
    conversation_created,
    conversation_id,
    message_id,
    normalize,
    snowflake_time,
)
from domain import events as ev

TENANT, CONNECTION, BOT = "t_1", "cn_1", "900"
ADA = {"id": "42", "username": "ada", "global_name": "Ada"}
MESSAGE = {
    "id": "1000000000000000000",
    "channel_id": "500",
    "guild_id": "7",
    "author": ADA,
    "content": "hi",
    "timestamp": "2026-11-24T12:00:00+00:00",
    "type": 0,
}
REACTION = {
    "user_id": "42",
    "channel_id": "500",
    "message_id": MESSAGE["id"],
    "emoji": {"name": "👍", "id": None},
}


def _dispatch(name: str, data: Any, seq: int = 1) -> dict[str, Any]:
    return {"op": 0, "t": name, "s": seq, "d": data}


def _events(payload: dict[str, Any]) -> list[ev.Event]:
    return normalize(payload, tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=BOT)


@pytest.mark.parametrize(
    ("payload", "types"),
    [
        (_dispatch("MESSAGE_CREATE", MESSAGE), ["message.received"]),
        (_dispatch("MESSAGE_CREATE", {**MESSAGE, "type": 19}), ["message.received"]),  # a reply
        (_dispatch("MESSAGE_CREATE", {**MESSAGE, "type": 7}), []),  # someone joined
        (_dispatch("MESSAGE_CREATE", {**MESSAGE, "author": {"id": BOT, "username": "moltbot"}}), []),
        (_dispatch("MESSAGE_CREATE", {**MESSAGE, "content": ""}), []),  # text the bot may not read
        (
            _dispatch(
                "MESSAGE_UPDATE",
                {**MESSAGE, "content": "hi!", "edited_timestamp": "2026-11-24T12:01:00+00:00"},
            ),
            ["message.edited"],
        ),
        (_dispatch("MESSAGE_UPDATE", {**MESSAGE, "edited_timestamp": None}), []),  # an embed unfurled
        (_dispatch("MESSAGE_DELETE", {"id": MESSAGE["id"], "channel_id": "500"}), ["message.deleted"]),
        (_dispatch("MESSAGE_DELETE_BULK", {"ids": ["1", "2"], "channel_id": "500"}), ["message.deleted"] * 2),
        (_dispatch("MESSAGE_REACTION_ADD", REACTION), ["reaction.added"]),
        (_dispatch("MESSAGE_REACTION_REMOVE", REACTION), ["reaction.removed"]),
        (_dispatch("MESSAGE_REACTION_ADD", {**REACTION, "user_id": BOT}), []),
        (_dispatch("TYPING_START", {"channel_id": "500"}), []),
        ({"op": 11}, []),
    ],
)
def test_which_dispatches_become_which_events(payload: dict[str, Any], types: list[str]) -> None:
    assert [event.type for event in _events(payload)] == types


@pytest.mark.parametrize(
    ("extra", "mentions", "text"),
    [
        ({}, False, "hi"),
        ({"content": "hi <@900>", "mentions": [{"id": "900", "username": "moltbot"}]}, True, "hi @moltbot"),
        (
            {"content": "hi <@!43>", "mentions": [{"id": "43", "username": "bob", "global_name": "Bob"}]},
            False,
            "hi @Bob",
        ),
        ({"content": "hi <@44>"}, False, "hi <@44>"),  # Discord did not name them
        ({"referenced_message": {"author": {"id": "900"}}}, True, "hi"),
    ],
)
def test_mentions_read_as_names_and_the_agent_is_mentioned_by_id_or_reply(
    extra: dict[str, Any], mentions: bool, text: str
) -> None:
    [received] = _events(_dispatch("MESSAGE_CREATE", {**MESSAGE, **extra}))
    assert isinstance(received, ev.MessageReceived)
    assert (received.data.mentions_agent, received.data.text) == (mentions, text)


def test_a_message_has_ids_derived_from_discords() -> None:
    [received] = _events(_dispatch("MESSAGE_CREATE", MESSAGE))
    assert isinstance(received, ev.MessageReceived)
    assert received.aggregate_id == conversation_id(CONNECTION, "500")
    assert received.data.message_id == message_id(CONNECTION, "500", str(MESSAGE["id"]))
    assert (received.data.sender.id, received.data.sender.name) == ("dc:42", "Ada")


@pytest.mark.parametrize(("guild", "kind", "title"), [("7", "group", "#500"), (None, "direct", "Ada")])
def test_a_channel_is_a_group_and_a_dm_direct(guild: str | None, kind: str, title: str) -> None:
    created = conversation_created(
        _dispatch("MESSAGE_CREATE", {**MESSAGE, "guild_id": guild}),
        tenant_id=TENANT,
        connection_id=CONNECTION,
    )
    assert created is not None
    assert (created.data.kind, created.data.title, created.data.external_id) == (kind, title, "500")


def test_a_reaction_replayed_after_resume_is_the_same_event_and_a_new_one_is_not() -> None:
    [first] = _events(_dispatch("MESSAGE_REACTION_ADD", REACTION, seq=5))
    [replayed] = _events(_dispatch("MESSAGE_REACTION_ADD", REACTION, seq=5))
    [again] = _events(_dispatch("MESSAGE_REACTION_ADD", REACTION, seq=9))
    assert first.id == replayed.id != again.id


@given(st.integers(min_value=0, max_value=2**41))
def test_a_snowflake_tells_when_it_was_made(milliseconds: int) -> None:
    snowflake = milliseconds << 22
    assert snowflake_time(snowflake) == datetime.fromtimestamp((milliseconds + 1_420_070_400_000) / 1000, UTC)


def test_what_the_bots_owner_writes_is_a_message_they_sent() -> None:
    owned = {**MESSAGE, "author": ADA}
    [sent] = normalize(
        _dispatch("MESSAGE_CREATE", owned), tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=BOT,
        owner_user_id=ADA["id"],
    )  # fmt: skip
    assert isinstance(sent, ev.MessageSent)
    assert (sent.data.origin, sent.data.sender.id) == ("device", f"dc:{ADA['id']}")
    assert sent.data.message_id == message_id(CONNECTION, MESSAGE["channel_id"], MESSAGE["id"])
    [received] = normalize(
        _dispatch("MESSAGE_CREATE", owned), tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=BOT,
        owner_user_id="999",
    )  # fmt: skip
    assert isinstance(received, ev.MessageReceived)
