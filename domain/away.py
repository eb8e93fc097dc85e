"""Away mode (pure): "away until Monday" for the whole inbox.

While an away period is on (set, not ended, ``until`` not reached), each direct conversation
that writes on one of its connections (every connection when none is named) gets one answer
with its message — sent, or proposed as a draft (``mode``) — whatever the agent's mode there;
the agent answers as usual besides. People's push notifications are held until the inbox is
back (``tenant.away_ended``: the owner came back, or the scheduler at ``until``), when one
notification says what came in meanwhile. The away answer does not count as a reply: the
conversation still needs one from a person.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from domain import events as ev
from domain import ids

AWAY_SENDER: Final = ev.Sender(id="agent:away", name="Moltbot", is_bot=True)  # not an answer: a notice
ACTOR: Final = "agent:away"
MAX_MESSAGE: Final = 1000
MAX_AHEAD: Final = timedelta(days=365)
DEFAULT_MESSAGE: Final = "I'm away at the moment and will answer when I'm back."


class Away(msgspec.Struct, frozen=True, kw_only=True):
    """An away period as the read model holds it."""

    away_id: str
    until: datetime
    message: str
    connection_ids: list[str]  # empty: every connection
    mode: Literal["answer", "draft"]
    started_at: datetime
    ended_at: datetime | None = None
    ended_reason: str | None = None


def is_on(away: Away | None, now: datetime) -> bool:
    return away is not None and away.ended_at is None and now < away.until


def answers_here(
    away: Away | None, now: datetime, *, connection_id: str, conversation_kind: str, preview: bool
) -> bool:
    """Whether a person's message in this conversation gets the away answer (once)."""
    if away is None or not is_on(away, now) or preview or conversation_kind != "direct":
        return False
    return not away.connection_ids or connection_id in away.connection_ids


def answer_id(away_id: str, conversation_id: str) -> str:
    """The away answer's message id: one per conversation per away period."""
    return ids.stable_id(ids.MESSAGE, f"away:{away_id}:{conversation_id}")


def draft_id(away_id: str, conversation_id: str) -> str:
    """The away answer's draft id (``mode`` draft): one per conversation per away period."""
    return ids.stable_id(ids.DRAFT, f"away:{away_id}:{conversation_id}")


def answer_events(
    trigger: ev.MessageReceived,
    away: Away,
    *,
    connection_id: str,
    channel: str,
    to: str,
    at: datetime,
) -> list[ev.Event]:
    """The away answer to ``trigger``'s conversation: a send request, or a draft."""
    answer = answer_id(away.away_id, trigger.aggregate_id)
    data: ev.Payload
    cls: type[ev.Event]
    if away.mode == "draft":
        cls = ev.MessageDraftProposed
        data = ev.MessageDraftProposedData(
            draft_id=draft_id(away.away_id, trigger.aggregate_id),
            run_id=ids.stable_id(ids.RUN, f"away:{away.away_id}:{trigger.aggregate_id}"),
            connection_id=connection_id, channel=channel, to=to, text=away.message,
            reply_to_message_id=trigger.data.message_id,
        )  # fmt: skip
    else:
        cls = ev.MessageSendRequested
        data = ev.MessageSendRequestedData(
            message_id=answer, connection_id=connection_id, channel=channel, to=to, text=away.message,
            sender=AWAY_SENDER, reply_to_message_id=trigger.data.message_id,
        )  # fmt: skip
    return [
        ev.new_event(
            cls,
            tenant_id=trigger.tenant_id,
            aggregate_id=trigger.aggregate_id,
            actor=ACTOR,
            data=data,
            causation_id=trigger.id,
            correlation_id=trigger.correlation_id or trigger.id,
            occurred_at=at,
        )
    ]


def refusal(until: datetime, message: str, now: datetime) -> tuple[str, str] | None:
    """What is wrong with an away period asked for (field, what to fix), or None."""
    if until.tzinfo is None:
        return "until", "Give until with its time zone, e.g. 2026-11-30T08:00:00Z."
    if not now < until <= now + MAX_AHEAD:
        return "until", "until is a moment in the coming year."
    if not message.strip():
        return "message", "The away message says something, e.g. when you are back."
    if len(message) > MAX_MESSAGE:
        return "message", f"The away message is at most {MAX_MESSAGE} characters."
    return None
