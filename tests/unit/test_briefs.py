"""Conversation briefs (pure): the extractive summary and action items with the days they
name, and the model's JSON read leniently."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain import briefs

WEDNESDAY = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sentence", "due"),
    [
        ("I'll send the address tomorrow.", date(2026, 11, 26)),
        ("Call me on Friday", date(2026, 11, 27)),
        ("Can you confirm by Wednesday?", date(2026, 12, 2)),  # the next one, not today
        ("Let's do it next week", date(2026, 11, 30)),  # its Monday
        ("Please pay today", date(2026, 11, 25)),
        ("Please pay soon", None),
    ],
)
def test_an_action_item_names_the_day_it_says(sentence: str, due: date | None) -> None:
    assert briefs.due_named(sentence, WEDNESDAY.date()) == due


def test_the_extractive_brief_keeps_first_sentences_and_what_was_promised_or_asked() -> None:
    said = [
        briefs.Said("Ada", "Hi! We moved to a new flat. I'll send the address tomorrow.", WEDNESDAY),
        briefs.Said("You", "Great. Could you also confirm the delivery day?", WEDNESDAY),
        briefs.Said("Ada", "Thanks, that's all.", WEDNESDAY),
    ]
    brief = briefs.extractive(said)
    assert brief.summary.splitlines() == ["Ada: Hi!", "You: Great.", "Ada: Thanks, that's all."]
    assert [(i.text, i.due) for i in brief.action_items] == [
        ("Ada: I'll send the address tomorrow.", date(2026, 11, 26)),
        ("You: Could you also confirm the delivery day?", None),
    ]


def test_the_models_brief_is_read_from_json_even_wrapped_and_refused_when_it_is_not_one() -> None:
    wrapped = (
        'Here you go:\n```json\n{"summary": "Ada moved.", "action_items":'
        ' [{"text": "Send the address", "due": "2026-11-26"}, {"text": "  "}]}\n```'
    )
    brief = briefs.from_model(wrapped)
    assert brief == briefs.Brief("Ada moved.", (briefs.ActionItem("Send the address", date(2026, 11, 26)),))
    assert briefs.from_model(
        '{"summary": "x", "action_items": [{"text": "y", "due": "soon"}]}'
    ) == briefs.Brief("x", (briefs.ActionItem("y", None),))
    assert briefs.from_model("I cannot do that.") is None
    assert briefs.from_model('{"summary": ""}') is None
    assert briefs.from_model('{"summary": 3}') is None
