"""Push notifications (pure): which events tell the people of an inbox something on their
devices, what the notification says, and when a person's quiet hours hold it back.

- a message arrives (not history brought in with a channel) in a conversation where the
  agent does not answer: its mode is ``off`` or ``draft``, or it stepped back because a
  person took over — everyone in the inbox;
- the agent proposes a draft — everyone in the inbox;
- a channel needs its owner (``connection.state_changed`` to ``action_required``) — owners
  and admins;
- the month's AI allowance is used up — owners and admins, once a month;
- a person's morning digest (``user.digest_due``), when something in it needs them — that person;
- the inbox is back from being away (``tenant.away_ended``): what came in meanwhile — everyone.

While the inbox is away every notification but a channel's call for its owner is held back
(not sent, not queued): the one that says it is back sums them up.

What a notification carries is small (title, body, the inbox URL to open, a tag: a newer
notification with the same tag replaces the older one on the device); a message shows its
sender's name and the start of its text only. The notifier (``adapters/push/notifier.py``)
reads, decides here, and sends.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol

import msgspec

from domain import events as ev
from domain import plans, zones

MAX_AGE: Final = timedelta(minutes=15)  # an event older than this when handled is history, not news
TITLE_CHARS: Final = 60
PREVIEW_CHARS: Final = 120
INBOX_URL: Final = "/"
CHANNELS_URL: Final = "/#channels"
USAGE_URL: Final = "/#usage"
DIGEST_URL: Final = "/#digest"
_SPACES = re.compile(r"\s+")

Audience = Literal["members", "managers"]  # everyone in the inbox; its owners and admins
Urgency = Literal["high", "normal", "low"]  # the Web Push Urgency header
MANAGERS: Final = frozenset({"owner", "admin"})

_ATTACHMENTS: Final = {
    "image": "Sent a photo",
    "video": "Sent a video",
    "audio": "Sent a voice message",
    "document": "Sent a document",
    "sticker": "Sent a sticker",
}


class PushMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What the browser's service worker shows (this, as JSON, is the push's payload)."""

    title: str
    body: str
    url: str  # what a click opens, on the inbox's origin
    tag: str  # one notification per tag on a device: a newer one replaces it


class Push(msgspec.Struct, frozen=True, kw_only=True):
    """A notification and who gets it."""

    message: PushMessage
    audience: Audience
    urgency: Urgency = "normal"
    user_id: str | None = None  # this person only (of the audience)
    held_while_away: bool = True  # held back while the inbox is away


class ConversationFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What deciding on a message's notification needs to know of its conversation."""

    conversation_id: str
    title: str
    kind: str  # direct, group, thread
    agent_mode: str  # its effective mode: its own, else its connection's, else its kind's default
    agent_paused_until: datetime | None = None  # a person took over until then
    preview: bool = False  # the owner's own "Try it" chat


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """A person of the inbox, with when they want no notifications."""

    user_id: str
    role: str
    time_zone: str | None = None  # None: UTC
    quiet_hours: ev.QuietHours | None = None


class NotifierReads(Protocol):
    """What the notifier reads from the read models, each confined to one tenant."""

    async def caught_up(self, seq: int, read_models: tuple[str, ...], *, wait: float) -> bool:
        """Whether every named read model has applied ``seq`` (waiting up to ``wait`` seconds)."""
        ...

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationFacts | None: ...

    async def connection_name(self, tenant_id: str, connection_id: str) -> str | None: ...

    async def recipients(self, tenant_id: str) -> list[Recipient]:
        """The inbox's people, with their time zones and quiet hours."""
        ...

    async def plan_and_spend(self, tenant_id: str, now: datetime) -> plans.Spend: ...

    async def away_on(self, tenant_id: str, now: datetime) -> bool:
        """Whether the inbox is away at ``now``."""
        ...


def too_old(occurred_at: datetime, at: datetime) -> bool:
    return at - occurred_at > MAX_AGE


def conversation_url(conversation_id: str) -> str:
    return f"{INBOX_URL}#conversation={conversation_id}"


def conversation_tag(conversation_id: str) -> str:
    return f"conversation-{conversation_id}"


def shortened(text: str, limit: int) -> str:
    """``text`` on one line, cut at ``limit`` characters (on a word when it can) with "…"."""
    line = _SPACES.sub(" ", text).strip()
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def agent_answers(conversation: ConversationFacts, at: datetime) -> bool:
    """Whether the agent answers new messages there by itself (auto, and no person took over)."""
    paused = conversation.agent_paused_until is not None and at < conversation.agent_paused_until
    return conversation.agent_mode == "auto" and not paused


def message_push(event: ev.MessageReceived, conversation: ConversationFacts, at: datetime) -> Push | None:
    """A new message where nobody answers it by itself; None where the agent does, for
    history brought in with a channel, and in the owner's own "Try it" chat."""
    data = event.data
    if data.backfill or conversation.preview or agent_answers(conversation, at):
        return None
    sender = data.sender.name.strip() or "Someone"
    title = sender if conversation.kind == "direct" else f"{sender} in {conversation.title}"
    if data.text.strip():
        body = shortened(data.text, PREVIEW_CHARS)
    elif data.attachments:
        body = _ATTACHMENTS.get(data.attachments[0].kind, "Sent an attachment")
    else:
        body = "Sent a message"
    message = PushMessage(
        title=shortened(title, TITLE_CHARS),
        body=body,
        url=conversation_url(conversation.conversation_id),
        tag=conversation_tag(conversation.conversation_id),
    )
    return Push(message=message, audience="members", urgency="high")


def draft_push(event: ev.MessageDraftProposed, conversation: ConversationFacts) -> Push:
    """The agent's draft waits for a person to send, edit or discard it."""
    check = event.data.reason == "injection_suspected"
    title = f"{'Draft to check' if check else 'Draft ready'}: {conversation.title}"
    message = PushMessage(
        title=shortened(title, TITLE_CHARS),
        body=shortened(event.data.text, PREVIEW_CHARS) or "The agent proposes a reply.",
        url=conversation_url(conversation.conversation_id),
        tag=conversation_tag(conversation.conversation_id),
    )
    return Push(message=message, audience="members")


def channel_push(event: ev.ConnectionStateChanged, connection_name: str) -> Push | None:
    """A channel that stopped until its owner acts (log in again, reconnect); None otherwise."""
    if event.data.state != "action_required":
        return None
    message = PushMessage(
        title=shortened(f"{connection_name or 'A channel'} needs you", TITLE_CHARS),
        body=shortened(event.data.message, PREVIEW_CHARS) or "Open Channels to reconnect it.",
        url=CHANNELS_URL,
        tag=f"connection-{event.aggregate_id}",
    )
    return Push(message=message, audience="managers", urgency="high", held_while_away=False)


def reminder_push(event: ev.ReminderDue, conversation: ConversationFacts) -> Push:
    """A follow-up came due: they have not answered (or it was wanted regardless)."""
    message = PushMessage(
        title=shortened(f"Follow up: {conversation.title}", TITLE_CHARS),
        body=shortened(event.data.note or "", PREVIEW_CHARS) or "They have not answered yet.",
        url=conversation_url(conversation.conversation_id),
        tag=f"follow-up-{event.data.follow_up_id}",
    )
    return Push(message=message, audience="members", urgency="high")


def sender_push(event: ev.ConnectionSenderRequested) -> Push:
    """Someone the owner has not approved wrote a direct message on a channel that asks
    (its DM policy): they want to talk, and the agent waits for the owner to decide."""
    name = event.data.sender_name.strip() or "Someone"
    message = PushMessage(
        title=shortened(f"{name} wants to talk", TITLE_CHARS),
        body="Approve or block them in the inbox: the agent does not answer them until you do.",
        url=conversation_url(event.data.conversation_id),
        tag=f"sender-{event.data.conversation_id}",
    )
    return Push(message=message, audience="managers", urgency="high")


def allowance_used_up(catalog: plans.Catalog, spend: plans.Spend) -> bool:
    """Whether the plan's monthly AI allowance is spent (the agent sends its short note then)."""
    allowance = catalog.limits(spend.plan).ai_allowance_micros
    return allowance is not None and spend.month_micros >= allowance


def budget_notice(at: datetime) -> str:
    """The key that makes the allowance's notification once per inbox and month (UTC)."""
    return f"ai_allowance:{at:%Y-%m}"


def budget_push(catalog: plans.Catalog, plan: str) -> Push:
    upgrade = catalog.upgrade_for(
        plan, "ai_allowance_micros", 1 + (catalog.limits(plan).ai_allowance_micros or 0)
    )
    more = f" {catalog.spec(upgrade).name} includes more." if upgrade is not None else ""
    message = PushMessage(
        title="This month's AI allowance is used up",
        body=f"Your agent sends a short note instead of answering until next month.{more}",
        url=USAGE_URL,
        tag="ai-allowance",
    )
    return Push(message=message, audience="managers")


def addressed(push: Push, recipient: Recipient) -> bool:
    if push.user_id is not None and recipient.user_id != push.user_id:
        return False
    return push.audience == "members" or recipient.role in MANAGERS


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def digest_headline(
    *, needs_reply: int, follow_ups: int, channels: int, away_received: int | None, mentions: int = 0
) -> str:
    """What a day holds, in a line ("" when nothing needs anyone)."""
    parts = []
    if needs_reply:
        parts.append(f"{_count(needs_reply, 'conversation needs', 'conversations need')} a reply")
    if follow_ups:
        parts.append(f"{_count(follow_ups, 'follow-up', 'follow-ups')} due")
    if mentions:
        parts.append(f"{_count(mentions, 'mention', 'mentions')} in groups")
    if channels:
        parts.append(f"{_count(channels, 'channel needs', 'channels need')} you")
    if away_received is not None:
        parts.append(f"{_count(away_received, 'message', 'messages')} while you were away")
    return ", ".join(parts)


def digest_push(user_id: str, headline: str) -> Push | None:
    """A person's morning: what waits for them today (None when nothing does)."""
    if not headline:
        return None
    message = PushMessage(
        title="Your day at a glance",
        body=shortened(headline[:1].upper() + headline[1:] + ".", PREVIEW_CHARS),
        url=DIGEST_URL,
        tag="digest",
    )
    return Push(message=message, audience="members", user_id=user_id)


def back_push(*, received: int, conversations: int, still_waiting: int) -> Push:
    """The inbox is back from being away: what came in meanwhile."""
    if received:
        where = _count(conversations, "conversation", "conversations")
        verb = "needs" if still_waiting == 1 else "need"
        body = (
            f"{_count(received, 'message', 'messages')} in {where} while you were away;"
            f" {still_waiting} still {verb} a reply."
        )
    else:
        body = "Nothing came in while you were away."
    message = PushMessage(title="Welcome back", body=body, url=DIGEST_URL, tag="away")
    return Push(message=message, audience="members", held_while_away=False)


def quiet_hours_refusal(quiet: ev.QuietHours) -> str | None:
    """What is wrong with ``quiet`` (None: nothing)."""
    for name, hour in (("start", quiet.start), ("end", quiet.end)):
        if not 0 <= hour <= 23:
            return f"quiet_hours.{name} is an hour from 0 to 23, not {hour}."
    if quiet.start == quiet.end:
        return "quiet_hours.start and .end must differ (send null for no quiet hours)."
    return None


def quiet_now(recipient: Recipient, at: datetime) -> bool:
    """Whether ``at`` falls in the person's quiet hours, on their clock."""
    quiet = recipient.quiet_hours
    if quiet is None:
        return False
    return zones.in_hours(zones.local_hour(at, recipient.time_zone), quiet.start, quiet.end)
