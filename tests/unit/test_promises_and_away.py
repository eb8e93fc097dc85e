"""Promises read in messages (``domain/promises.py``), the away rules (``domain/away.py``) and
the digest's and the return's notifications (``domain/notifications.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain import away, notifications, promises
from domain import events as ev
from domain.agent import answers

THURSDAY = date(2026, 11, 26)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("Thanks! I'll get back to you Friday.", date(2026, 11, 27)),
        ("I will let you know tomorrow", date(2026, 11, 27)),
        ("I\u2019ll confirm today, promise", THURSDAY),  # a typographic apostrophe
        ("I'm going to call you on Monday!", date(2026, 11, 30)),
        ("I'll send it next week.", date(2026, 11, 30)),
        ("I will reply in 3 days", date(2026, 11, 29)),
        ("I'll look into it in a couple of days", date(2026, 11, 28)),
        ("I'll get back to you by the end of the week", date(2026, 11, 27)),
        ("I'll check on Thursday", date(2026, 12, 3)),  # today is Thursday: the next one
        ("Let me check and get back to you.", None),
    ],
)
def test_a_promise_and_the_day_it_names(text: str, day: date | None) -> None:
    found = promises.find(text, THURSDAY)
    assert found is not None and found.day == day
    assert promises.promising(text)


@pytest.mark.parametrize(
    "text", ["ok cool", "I will be there at 8", "Will you get back to me?", "Send it please", "I sent it"]
)
def test_words_that_promise_nothing(text: str) -> None:
    assert promises.find(text, THURSDAY) is None


def test_the_nudge_is_the_morning_after_on_the_owners_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    dated = promises.Promise("I'll get back to you Friday.", date(2026, 11, 27))
    assert promises.due_at(dated, THURSDAY, berlin) == datetime(2026, 11, 28, 9, tzinfo=berlin)
    undated = promises.Promise("Let me check.", None)
    assert promises.due_at(undated, THURSDAY, berlin) == datetime(2026, 11, 28, 9, tzinfo=berlin)
    long = promises.find("I'll get back to you. " * 30, THURSDAY)
    assert long is not None and len(long.sentence) <= promises.MAX_NOTE


def test_a_proposal_is_keyed_by_its_message() -> None:
    received = ev.new_event(
        ev.MessageReceived, tenant_id="t_1", aggregate_id="c_1", actor="connector:webchat:cn_1",
        data=ev.MessageReceivedData(
            message_id="m_1", connection_id="cn_1", channel="webchat", provider_message_id="p1",
            sender=ev.Sender(id="web:v1", name="Noor"), text="I'll get back to you tomorrow.",
            sent_at=datetime(2026, 11, 26, 22, 30, tzinfo=UTC),
        ),
    )  # fmt: skip
    # 22:30 UTC is already Friday in Tokyo: "tomorrow" is Saturday there, the nudge Sunday 9:00.
    tokyo = ZoneInfo("Asia/Tokyo")
    first = promises.proposal(received, tokyo, datetime(2026, 11, 26, 22, 30, tzinfo=UTC))
    again = promises.proposal(received, tokyo, datetime(2026, 11, 26, 22, 31, tzinfo=UTC))
    assert first is not None and again is not None
    assert first.data.follow_up_id == again.data.follow_up_id
    assert first.data.due_at == datetime(2026, 11, 29, 9, tzinfo=tokyo)


def _away(**changes: object) -> away.Away:
    values: dict[str, object] = {
        "away_id": "aw_1", "until": datetime(2026, 11, 30, tzinfo=UTC), "message": "Away until Monday.",
        "connection_ids": ["cn_1"], "mode": "answer", "started_at": datetime(2026, 11, 26, tzinfo=UTC),
    }  # fmt: skip
    return away.Away(**(values | changes))  # type: ignore[arg-type]


def test_the_away_answer_goes_to_direct_conversations_on_the_chosen_channels_while_on() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    on = _away()
    assert away.answers_here(on, now, connection_id="cn_1", conversation_kind="direct", preview=False)
    assert not away.answers_here(on, now, connection_id="cn_2", conversation_kind="direct", preview=False)
    assert not away.answers_here(on, now, connection_id="cn_1", conversation_kind="group", preview=False)
    assert not away.answers_here(on, now, connection_id="cn_1", conversation_kind="direct", preview=True)
    everywhere = _away(connection_ids=[])
    assert away.answers_here(everywhere, now, connection_id="cn_9", conversation_kind="direct", preview=False)
    late = datetime(2026, 11, 30, tzinfo=UTC)
    assert not away.answers_here(on, late, connection_id="cn_1", conversation_kind="direct", preview=False)
    ended = _away(ended_at=now - timedelta(hours=1), ended_reason="returned")
    assert not away.answers_here(ended, now, connection_id="cn_1", conversation_kind="direct", preview=False)
    assert not away.answers_here(None, now, connection_id="cn_1", conversation_kind="direct", preview=False)
    assert not answers(away.AWAY_SENDER)  # the notice is no reply: the conversation still waits


def test_an_away_period_asked_for_wrongly_says_what_to_fix() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    assert away.refusal(now + timedelta(days=1), "Back Monday.", now) is None
    assert away.refusal(now - timedelta(days=1), "Back Monday.", now) == (
        "until",
        "until is a moment in the coming year.",
    )
    fields = [
        away.refusal(datetime(2026, 12, 1), "Back Monday.", now),  # no time zone
        away.refusal(now + timedelta(days=1), " ", now),
        away.refusal(now + timedelta(days=1), "x" * 1001, now),
    ]
    assert [wrong[0] if wrong else None for wrong in fields] == ["until", "message", "message"]


def test_the_digest_and_the_return_in_a_notification() -> None:
    headline = notifications.digest_headline(needs_reply=2, follow_ups=1, channels=0, away_received=None)
    assert headline == "2 conversations need a reply, 1 follow-up due"
    push = notifications.digest_push("u_1", headline)
    assert push is not None and push.user_id == "u_1" and push.held_while_away
    assert push.message.body == "2 conversations need a reply, 1 follow-up due."
    assert notifications.digest_push("u_1", "") is None
    ada = notifications.Recipient(user_id="u_1", role="member")
    grace = notifications.Recipient(user_id="u_2", role="owner")
    assert notifications.addressed(push, ada) and not notifications.addressed(push, grace)
    back = notifications.back_push(received=0, conversations=0, still_waiting=0)
    assert back.message.body == "Nothing came in while you were away." and not back.held_while_away
