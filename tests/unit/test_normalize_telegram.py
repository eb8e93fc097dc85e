"""Telegram updates → canonical events, as tables (pure: no bot, no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.telegram.normalize import (
    conversation_created,
    conversation_id,
    message_id,
    normalize,
)
from domain import events as ev

TENANT, CONNECTION, BOT = "t_1", "cn_1", "ada_shop_bot"
DATE = 1_764_000_000
ADA = {"id": 42, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace"}
PRIVATE = {"id": 42, "type": "private", "first_name": "Ada"}
GROUP = {"id": -100, "type": "supergroup", "title": "Engines"}


def _message(text: str | None = "hi", chat: dict[str, Any] = PRIVATE, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"message_id": 7, "date": DATE, "chat": chat, "from": ADA, **extra}
    if text is not None:
        message["text"] = text
    return message


def _events(update: dict[str, Any]) -> list[ev.Event]:
    return normalize({"update_id": 1, **update}, tenant_id=TENANT, connection_id=CONNECTION, bot_username=BOT)


@pytest.mark.parametrize(
    ("update", "types"),
    [
        ({"message": _message()}, ["message.received"]),
        ({"edited_message": _message("hi!", edit_date=DATE + 5)}, ["message.edited"]),
        ({"message": _message(None)}, []),  # a service message: no text, no attachment
        (
            {
                "message": _message(
                    None,
                    caption="look",
                    photo=[{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}],
                )
            },
            ["message.received"],
        ),
        ({"callback_query": {"id": "1", "from": ADA, "chat_instance": "x"}}, []),
        ({}, []),
    ],
)
def test_which_updates_become_which_events(update: dict[str, Any], types: list[str]) -> None:
    assert [event.type for event in _events(update)] == types


@pytest.mark.parametrize(
    ("text", "chat", "extra", "mentions"),
    [
        ("hi", PRIVATE, {}, False),
        ("hi @ada_shop_bot", GROUP, {}, True),
        ("hi @ADA_SHOP_BOT", GROUP, {}, True),
        ("hi @ada_shop_bot_two", GROUP, {}, False),
        ("mail ada@ada_shop_bot", GROUP, {}, False),
        (
            "yes",
            GROUP,
            {
                "reply_to_message": {
                    **_message(),
                    "from": {"id": 1, "is_bot": True, "first_name": "B", "username": BOT},
                }
            },
            True,
        ),
        ("yes", GROUP, {"reply_to_message": _message()}, False),
    ],
)
def test_the_agent_is_mentioned_by_name_or_by_a_reply_to_the_bot(
    text: str, chat: dict[str, Any], extra: dict[str, Any], mentions: bool
) -> None:
    [received] = _events({"message": _message(text, chat, **extra)})
    assert isinstance(received, ev.MessageReceived)
    assert received.data.mentions_agent is mentions


def test_a_message_names_its_chat_sender_and_ids_derived_from_telegrams() -> None:
    [received] = _events({"message": _message("hello")})
    assert isinstance(received, ev.MessageReceived)
    assert received.aggregate_id == conversation_id(CONNECTION, 42)
    assert received.data.message_id == message_id(CONNECTION, 42, 7)
    assert (received.data.provider_message_id, received.data.channel) == ("42:7", "telegram")
    assert (received.data.sender.id, received.data.sender.name) == ("tg:42", "Ada Lovelace")
    assert received.data.sent_at == datetime.fromtimestamp(DATE, UTC)


@pytest.mark.parametrize(("chat", "kind", "title"), [(PRIVATE, "direct", "Ada"), (GROUP, "group", "Engines")])
def test_a_chat_is_a_direct_or_group_conversation(chat: dict[str, Any], kind: str, title: str) -> None:
    created = conversation_created(
        {"update_id": 1, "message": _message(chat=chat)}, tenant_id=TENANT, connection_id=CONNECTION
    )
    assert created is not None
    assert (created.data.kind, created.data.title, created.data.external_id) == (kind, title, str(chat["id"]))


def test_an_edit_repeated_is_the_same_event() -> None:
    update = {"edited_message": _message("hi!", edit_date=DATE + 5)}
    assert _events(update)[0].id == _events(update)[0].id


@given(st.text(min_size=1).filter(str.strip))
def test_the_text_is_published_as_sent(text: str) -> None:
    [received] = _events({"message": _message(text)})
    assert isinstance(received, ev.MessageReceived)
    assert received.data.text == text
