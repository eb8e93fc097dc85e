"""Push notifications' pure decisions as tables: who is told what, and when quiet hours hold a
notification back (on the person's clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import events as ev
from domain import notifications as push
from domain import zones
from domain.plans import Spend
from moltbot.settings import bundled_plans_file, load_catalog

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CATALOG = load_catalog(bundled_plans_file())


def _received(text: str = "hi there", *, backfill: bool = False, **data: object) -> ev.MessageReceived:
    return ev.new_event(
        ev.MessageReceived, tenant_id="t_1", aggregate_id="c_1", actor="connector:webchat:cn_1",
        data=ev.MessageReceivedData(
            message_id="m_1", connection_id="cn_1", channel="webchat", provider_message_id="1",
            sender=ev.Sender(id="v_1", name="Ada Lovelace"), text=text, sent_at=AT, backfill=backfill,
            **data,  # type: ignore[arg-type]
        ),
        occurred_at=AT,
    )  # fmt: skip


def _conversation(mode: str = "draft", **facts: object) -> push.ConversationFacts:
    defaults: dict[str, object] = {"conversation_id": "c_1", "title": "Ada Lovelace", "kind": "direct"}
    return push.ConversationFacts(agent_mode=mode, **(defaults | facts))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "facts", "backfill", "pushed"),
    [
        ("draft", {}, False, True),
        ("off", {}, False, True),
        ("auto", {}, False, False),  # the agent answers by itself
        ("auto", {"agent_paused_until": AT + timedelta(minutes=5)}, False, True),  # a person took over
        ("auto", {"agent_paused_until": AT - timedelta(minutes=5)}, False, False),  # … and it is over
        ("draft", {}, True, False),  # history brought in with a channel
        ("draft", {"preview": True}, False, False),  # the owner's own "Try it" chat
    ],
)
def test_a_message_is_pushed_where_nobody_answers_it_by_itself(
    mode: str, facts: dict[str, object], backfill: bool, pushed: bool
) -> None:
    decided = push.message_push(_received(backfill=backfill), _conversation(mode, **facts), AT)
    assert (decided is not None) == pushed


def test_a_message_push_names_the_sender_and_previews_the_text() -> None:
    decided = push.message_push(_received("word " * 60), _conversation("off"), AT)
    assert decided is not None
    assert decided.message.title == "Ada Lovelace"
    assert len(decided.message.body) <= push.PREVIEW_CHARS and decided.message.body.endswith("…")
    assert (decided.message.url, decided.message.tag) == ("/#conversation=c_1", "conversation-c_1")
    assert (decided.audience, decided.urgency) == ("members", "high")
    group = push.message_push(_received(), _conversation("off", kind="group", title="Book club"), AT)
    assert group is not None and group.message.title == "Ada Lovelace in Book club"
    photo = ev.Attachment(kind="image", provider_file_id="f1")
    only_photo = push.message_push(_received("", attachments=(photo,)), _conversation("off"), AT)
    assert only_photo is not None and only_photo.message.body == "Sent a photo"


def test_a_channel_is_pushed_only_when_it_needs_its_owner() -> None:
    def changed(state: ev.ConnectionState) -> ev.ConnectionStateChanged:
        return ev.new_event(
            ev.ConnectionStateChanged, tenant_id="t_1", aggregate_id="cn_1", actor="connector:telegram:cn_1",
            data=ev.ConnectionStateChangedData(state=state, code="x", message="Telegram refused the token."),
        )  # fmt: skip

    assert push.channel_push(changed("degraded"), "@ada_bot") is None
    needed = push.channel_push(changed("action_required"), "@ada_bot")
    assert needed is not None
    assert needed.audience == "managers"
    assert (needed.message.title, needed.message.url) == ("@ada_bot needs you", "/#channels")
    member = push.Recipient(user_id="u_2", role="member")
    admin = push.Recipient(user_id="u_3", role="admin")
    assert not push.addressed(needed, member) and push.addressed(needed, admin)


def test_a_reminder_names_the_conversation_and_the_note() -> None:
    due = ev.new_event(
        ev.ReminderDue, tenant_id="t_1", aggregate_id="c_1", actor="system:scheduler",
        data=ev.ReminderDueData(follow_up_id="fu_1", note="Did she confirm Friday?"),
    )  # fmt: skip
    conversation = push.ConversationFacts(
        conversation_id="c_1", title="Ada Lovelace", kind="direct", agent_mode="draft"
    )
    reminded = push.reminder_push(due, conversation)
    assert (reminded.message.title, reminded.message.body) == (
        "Follow up: Ada Lovelace",
        "Did she confirm Friday?",
    )
    assert reminded.audience == "members" and reminded.message.url == push.conversation_url("c_1")


def test_a_stranger_wanting_to_talk_is_pushed_to_those_who_decide() -> None:
    requested = ev.new_event(
        ev.ConnectionSenderRequested, tenant_id="t_1", aggregate_id="cn_1", actor="agent:orchestrator",
        data=ev.ConnectionSenderRequestedData(
            sender_id="tg:42", sender_name="Grace", conversation_id="c_1", message_id="m_1", code="K7QW-M3XP"
        ),
    )  # fmt: skip
    wants = push.sender_push(requested)
    assert (wants.message.title, wants.message.url, wants.audience) == (
        "Grace wants to talk",
        push.conversation_url("c_1"),
        "managers",
    )
    assert "K7QW" not in wants.message.body  # the code is theirs to pass on, not in a notification


@pytest.mark.parametrize(
    ("plan", "month", "used_up"),
    [
        ("free", 1_999_999, False),
        ("free", 2_000_000, True),
        ("pro", 2_000_000, False),
        ("byok", 10**12, False),
    ],
)
def test_the_allowance_is_used_up_at_the_plans_monthly_amount(plan: str, month: int, used_up: bool) -> None:
    assert push.allowance_used_up(CATALOG, Spend(plan, month, 0)) is used_up


def test_the_allowance_notice_is_one_per_month_and_offers_the_next_plan() -> None:
    assert push.budget_notice(AT) == push.budget_notice(AT + timedelta(days=5)) == "ai_allowance:2026-11"
    assert push.budget_notice(AT + timedelta(days=7)) == "ai_allowance:2026-12"
    assert "Pro includes more." in push.budget_push(CATALOG, "free").message.body


# hour (UTC) of AT on the person's clock, their quiet hours, quiet then?
@pytest.mark.parametrize(
    ("zone", "quiet", "is_quiet"),
    [
        (None, None, False),
        ("UTC", (11, 13), True),
        ("UTC", (13, 11), False),  # 13:00 → 11:00 the next day: 12:00 is awake
        ("Europe/Berlin", (11, 13), False),  # 13:00 there in November: the end is not quiet
        ("Europe/Berlin", (13, 14), True),
        ("Asia/Kathmandu", (17, 18), True),  # UTC+5:45 → 17:45
        ("America/New_York", (22, 8), True),  # 07:00 there, quiet since 22:00
        ("America/New_York", (22, 7), False),  # … until 7:00
        ("Not/A_Zone", (11, 13), True),  # an unknown zone (never stored) reads as UTC
    ],
)
def test_quiet_hours_are_on_the_persons_clock(
    zone: str | None, quiet: tuple[int, int] | None, is_quiet: bool
) -> None:
    hours = ev.QuietHours(start=quiet[0], end=quiet[1]) if quiet else None
    person = push.Recipient(user_id="u_1", role="owner", time_zone=zone, quiet_hours=hours)
    assert push.quiet_now(person, AT) is is_quiet


@given(st.integers(0, 23), st.integers(0, 23), st.integers(0, 23))
def test_quiet_hours_cover_exactly_their_span(start: int, end: int, hour: int) -> None:
    if start == end:
        return
    person = push.Recipient(user_id="u_1", role="owner", quiet_hours=ev.QuietHours(start=start, end=end))
    span = {(start + n) % 24 for n in range((end - start) % 24)}
    assert push.quiet_now(person, AT.replace(hour=hour)) is (hour in span)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("Europe/Berlin", True),
        ("UTC", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Etc/GMT+5", True),
        ("Mars/Olympus_Mons", False),
        ("../../etc/passwd", False),
        ("/etc/localtime", False),
        ("", False),
        ("Europe/" + "x" * 80, False),
    ],
)
def test_time_zones_are_iana_names(name: str, valid: bool) -> None:
    assert zones.valid(name) is valid


def test_quiet_hours_are_two_different_hours_of_the_day() -> None:
    assert push.quiet_hours_refusal(ev.QuietHours(start=22, end=7)) is None
    assert push.quiet_hours_refusal(ev.QuietHours(start=24, end=7)) is not None
    assert push.quiet_hours_refusal(ev.QuietHours(start=-1, end=7)) is not None
    assert push.quiet_hours_refusal(ev.QuietHours(start=7, end=7)) is not None
