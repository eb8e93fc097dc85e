"""The day at a glance (``GET /v1/digest``) on the person's clock: a message at 00:15 in
Kathmandu is that day's even though it is the day before in UTC, and what waits for a reply
by the end of a day is listed with that day."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx

from domain import events as ev
from domain import ids
from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup


async def _asked(stack: Stack, tenant: str, title: str, at: datetime) -> str:
    conversation, actor = ids.new_id(ids.CONVERSATION), "connector:telegram:cn_d"
    await stack.store.append_many([
        ev.new_event(
            ev.ConversationCreated, tenant_id=tenant, aggregate_id=conversation, actor=actor, occurred_at=at,
            data=ev.ConversationCreatedData(
                channel="telegram", connection_id="cn_d", kind="direct", title=title, external_id=title
            ),
        ),
        ev.new_event(
            ev.MessageReceived, tenant_id=tenant, aggregate_id=conversation, actor=actor, occurred_at=at,
            data=ev.MessageReceivedData(
                message_id=ids.new_id(ids.MESSAGE), connection_id="cn_d", channel="telegram",
                provider_message_id=title, sender=ev.Sender(id=f"tg:{title}", name=title),
                text=f"{title} asks something", sent_at=at,
            ),
        ),
    ])  # fmt: skip
    return conversation


async def test_the_digest_is_of_a_day_on_the_persons_clock(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "digest@example.com")
    tenant = owner["tenant_id"]
    zone = await api.put("/v1/me/preferences", json={"time_zone": "Asia/Kathmandu"}, headers=_auth(owner))
    assert zone.status_code == 202, zone.text
    # 18:00 UTC is 23:45 on the 19th in Kathmandu (UTC+5:45); 18:30 UTC is 00:15 on the 20th.
    late = await _asked(stack, tenant, "Late", datetime(2026, 11, 19, 18, 0, tzinfo=UTC))
    early = await _asked(stack, tenant, "Early", datetime(2026, 11, 19, 18, 30, tzinfo=UTC))
    due = ev.new_event(
        ev.FollowUpScheduled, tenant_id=tenant, aggregate_id=early, actor=f"user:{owner['user_id']}",
        data=ev.FollowUpScheduledData(
            follow_up_id=ids.new_id(ids.FOLLOW_UP), due_at=datetime(2026, 11, 20, 4, 0, tzinfo=UTC),
            note="Answer Early",
        ),
    )  # fmt: skip
    await stack.store.append(due)
    seq = await stack.store.last_seq()

    nineteenth = (
        await api.get("/v1/digest", params={"date": "2026-11-19", "min_seq": seq}, headers=_auth(owner))
    ).json()
    assert nineteenth["time_zone"] == "Asia/Kathmandu"
    assert nineteenth["received"] == 1
    assert [w["conversation_id"] for w in nineteenth["needs_reply"]] == [late]
    assert nineteenth["follow_ups"] == [] and nineteenth["channels"] == []
    twentieth = (await api.get("/v1/digest", params={"date": "2026-11-20"}, headers=_auth(owner))).json()
    assert twentieth["received"] == 1
    assert [w["conversation_id"] for w in twentieth["needs_reply"]] == [
        late,
        early,
    ]  # the longest waiting first
    assert [f["note"] for f in twentieth["follow_ups"]] == ["Answer Early"]
    today = (await api.get("/v1/digest", headers=_auth(owner))).json()
    assert today["date"] == datetime.now(ZoneInfo("Asia/Kathmandu")).date().isoformat()
    bad = await api.get("/v1/digest", params={"date": "20/11/2026"}, headers=_auth(owner))
    assert (bad.status_code, bad.json()["field"]) == (400, "date")


async def test_the_digest_lists_the_days_mentions_in_groups(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "digest-mentions@example.com")
    tenant, actor, at = owner["tenant_id"], "connector:slack:cn_s", datetime.now(UTC)
    group = ids.new_id(ids.CONVERSATION)

    def said(text: str, mentions: bool) -> ev.MessageReceived:
        return ev.new_event(
            ev.MessageReceived, tenant_id=tenant, aggregate_id=group, actor=actor, occurred_at=at,
            data=ev.MessageReceivedData(
                message_id=ids.new_id(ids.MESSAGE), connection_id="cn_s", channel="slack",
                provider_message_id=text, sender=ev.Sender(id="slack:U1", name="Grace"), text=text,
                sent_at=at, mentions_agent=mentions,
            ),
        )  # fmt: skip

    created = ev.new_event(
        ev.ConversationCreated, tenant_id=tenant, aggregate_id=group, actor=actor, occurred_at=at,
        data=ev.ConversationCreatedData(
            channel="slack", connection_id="cn_s", kind="group", title="#launch", external_id="C1"
        ),
    )  # fmt: skip
    await stack.store.append_many([created, said("@moltbot what is the date?", True), said("lunch?", False)])
    seq = await stack.store.last_seq()
    day = (await api.get("/v1/digest", params={"min_seq": seq}, headers=_auth(owner))).json()
    [mention] = day["mentions"]
    assert (mention["title"], mention["sender_name"], mention["text"]) == (
        "#launch",
        "Grace",
        "@moltbot what is the date?",
    )
    await stack.verify_read_models()  # the mention replays identically
