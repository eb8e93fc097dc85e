"""Promises in messages (pure): "I'll get back to you Friday" becomes a proposed follow-up —
if they have not written by then, remind the owner (``reminder.proposed``; nothing is reminded
until a person approves it).

What counts as a promise is a sentence in which the writer commits to come back: "I'll get
back to you", "I will let you know", "I'll send it", "I'll confirm", "let me check", and the
like, in English. When it names a day ("today", "tomorrow", a weekday, "next week", "in 3
days", "by the end of the week") the follow-up is due the morning after that day; without one,
two days later. Mornings are :data:`MORNING` o'clock on the owner's clock.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from domain import events as ev
from domain import ids

MORNING: Final = 9  # o'clock, on the owner's clock
UNDATED_DAYS: Final = 2  # "I'll get back to you": nudge after this many days
MAX_NOTE: Final = 200
ACTOR: Final = "agent:promises"

_SENTENCES = re.compile(r"(?<=[.!?\n])\s+")
_PROMISE = re.compile(
    r"\b(?:i\s*(?:['\u2019]ll|\s+will|\s+shall)|i\s*(?:['\u2019]m|\s+am)\s+going\s+to|let\s+me)\s+"
    r"(?:try\s+to\s+|probably\s+|definitely\s+)?"
    r"(?:get\s+back|come\s+back|let\s+you\s+know|send|confirm|check|call|reply|answer|follow\s+up"
    r"|write\s+(?:back|again)|have\s+a\s+look|look\s+into|think\s+about\s+it|find\s+out)\b",
    re.IGNORECASE,
)
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_IN_DAYS = re.compile(r"\bin\s+(\d{1,2}|a\s+couple\s+of|two|three|four|five)\s+days?\b", re.IGNORECASE)
_WORDS_AS_NUMBERS: Final = {"a couple of": 2, "two": 2, "three": 3, "four": 4, "five": 5}


class Promise(msgspec.Struct, frozen=True):
    sentence: str  # the words that promised, shortened to MAX_NOTE
    day: date | None  # the day named, on the owner's clock (None: none named)


def promising(text: str) -> bool:
    """Whether ``text`` promises something (cheap: no day worked out)."""
    return _PROMISE.search(text) is not None


def find(text: str, today: date) -> Promise | None:
    """The first promise in ``text`` (written on ``today``, the owner's clock), or None."""
    for sentence in _SENTENCES.split(text):
        if _PROMISE.search(sentence):
            words = " ".join(sentence.split())
            short = words if len(words) <= MAX_NOTE else words[: MAX_NOTE - 1] + "…"
            return Promise(short, day_named(sentence, today))
    return None


def day_named(sentence: str, today: date) -> date | None:
    """The day a sentence names ("tomorrow", "on Friday", "next week", "in 3 days"), if any."""
    lowered = sentence.lower()
    if re.search(r"\b(?:today|tonight|this\s+(?:afternoon|evening))\b", lowered):
        return today
    if re.search(r"\btomorrow\b", lowered):
        return today + timedelta(days=1)
    if re.search(r"\b(?:end\s+of\s+(?:the|this)\s+week|this\s+week)\b", lowered):
        return today + timedelta(days=(4 - today.weekday()) % 7)  # Friday (today, if it is one)
    if re.search(r"\bnext\s+week\b", lowered):
        return today + timedelta(days=7 - today.weekday())  # next Monday
    for number, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name}\b", lowered):
            return today + timedelta(days=(number - today.weekday()) % 7 or 7)  # the next one
    if found := _IN_DAYS.search(lowered):
        count = found.group(1)
        days = int(count) if count.isdigit() else _WORDS_AS_NUMBERS[" ".join(count.split())]
        return today + timedelta(days=days)
    return None


def due_at(promise: Promise, today: date, zone: ZoneInfo) -> datetime:
    """When to nudge: the morning after the day named, or :data:`UNDATED_DAYS` days on."""
    day = (
        (promise.day + timedelta(days=1)) if promise.day is not None else today + timedelta(days=UNDATED_DAYS)
    )
    return datetime.combine(day, time(MORNING), tzinfo=zone)


def follow_up_id(message_id: str) -> str:
    """One proposal per message, however often it is handled."""
    return ids.stable_id(ids.FOLLOW_UP, f"promise:{message_id}")


def proposal(trigger: ev.MessageReceived, zone: ZoneInfo, now: datetime) -> ev.FollowUpProposed | None:
    """The follow-up to propose for a person's message that promises something, or None."""
    today = now.astimezone(zone).date()
    promise = find(trigger.data.text, today)
    if promise is None:
        return None
    return ev.new_event(
        ev.FollowUpProposed,
        tenant_id=trigger.tenant_id,
        aggregate_id=trigger.aggregate_id,
        actor=ACTOR,
        causation_id=trigger.id,
        correlation_id=trigger.correlation_id or trigger.id,
        occurred_at=now,
        data=ev.FollowUpProposedData(
            follow_up_id=follow_up_id(trigger.data.message_id),
            due_at=due_at(promise, today, zone),
            note=f"They said: {promise.sentence}",
            message_id=trigger.data.message_id,
        ),
    )
