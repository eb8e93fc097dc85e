"""Follow-ups over the real gateway, read models and the gateway's scheduler: "nudge me if
they have not answered" fires when they have not and not when they have (unless asked to
fire regardless), once; a reminder counts on /v1/me until dismissed."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from nats.aio.client import Client

from domain import events as ev
from tests.integration.conftest import Stack
from tests.integration.test_agent import _decided, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _visitor_says, _widget


async def _follow_up(
    api: httpx.AsyncClient, owner: dict[str, str], conversation: str, seconds: float, **body: Any
) -> httpx.Response:
    due = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    return await api.post(
        f"/v1/conversations/{conversation}/follow-ups", json={"due_at": due, **body}, headers=_auth(owner)
    )


async def _by_status(api: httpx.AsyncClient, owner: dict[str, str], status: str) -> list[Any]:
    response = await api.get("/v1/follow-ups", params={"status": status}, headers=_auth(owner))
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()
    return found


async def test_a_follow_up_fires_only_when_they_have_not_answered(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "follow-ups@example.com")
    key = (await _widget(api, owner))["widget_key"]
    quiet = await _visitor_says(api, key, "Can you send me the price list?")
    chatty = await _visitor_says(api, key, "I will think about it.")
    regardless = await _visitor_says(api, key, "Call me Friday.")
    silent = await _follow_up(
        api, owner, quiet["conversation_id"], 3, note="Did they get the price list?", only_if_no_reply=True
    )
    answered = await _follow_up(api, owner, chatty["conversation_id"], 3)
    anyway = await _follow_up(api, owner, regardless["conversation_id"], 3, only_if_no_reply=False)
    assert silent.status_code == answered.status_code == anyway.status_code == 202, silent.text
    # One of them writes again before the time: their follow-up is answered, it never fires.
    await _visitor_says(api, key, "Actually, yes please!", visitor_token=chatty["visitor_token"])
    await _visitor_says(api, key, "See you Friday.", visitor_token=regardless["visitor_token"])

    async def fired() -> list[Any]:
        due = await _by_status(api, owner, "due")
        return due if len(due) == 2 else []

    due = await _until(fired, "the two reminders", timeout=20)
    assert {f["follow_up_id"] for f in due} == {silent.json()["follow_up_id"], anyway.json()["follow_up_id"]}
    [reminded] = [f for f in due if f["follow_up_id"] == silent.json()["follow_up_id"]]
    assert reminded["note"] == "Did they get the price list?" and reminded["title"]
    [not_needed] = await _by_status(api, owner, "answered")
    assert not_needed["follow_up_id"] == answered.json()["follow_up_id"]
    me = (await api.get("/v1/me", headers=_auth(owner))).json()
    assert me["follow_ups_due"] == 2
    reminders = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if isinstance(s.event, ev.ReminderDue)
    ]
    assert len(reminders) == 2  # once each, though the scheduler ticked every second

    # Dismissed, it no longer counts; a settled one cannot be called off again.
    dismissed = await api.delete(f"/v1/follow-ups/{reminded['follow_up_id']}", headers=_auth(owner))
    assert dismissed.status_code == 202, dismissed.text
    again = await api.delete(f"/v1/follow-ups/{reminded['follow_up_id']}", headers=_auth(owner))
    assert (again.status_code, again.json()["error"]) == (409, "settled")
    await _until(lambda: _count_is(api, owner, 1), "the count to drop")
    await stack.verify_read_models()  # follow-ups, answers and reminders replay identically


async def _count_is(api: httpx.AsyncClient, owner: dict[str, str], count: int) -> bool:
    return bool((await api.get("/v1/me", headers=_auth(owner))).json()["follow_ups_due"] == count)


async def test_bad_follow_ups_are_refused_with_what_to_fix(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "follow-ups-errors@example.com")
    key = (await _widget(api, owner))["widget_key"]
    conversation = (await _visitor_says(api, key, "Hello"))["conversation_id"]
    past = await _follow_up(api, owner, conversation, -60)
    assert (past.status_code, past.json()["field"]) == (400, "due_at")
    naive = await api.post(
        f"/v1/conversations/{conversation}/follow-ups",
        json={"due_at": "2030-01-01T09:00:00"},
        headers=_auth(owner),
    )
    assert (naive.status_code, naive.json()["field"]) == (400, "due_at")
    wordy = await _follow_up(api, owner, conversation, 60, note="x" * 501)
    assert (wordy.status_code, wordy.json()["field"]) == (400, "note")
    assert (await _follow_up(api, owner, "c_missing", 60)).status_code == 404
    mine = await _follow_up(api, owner, conversation, 600)
    stranger = await _signup(api, "follow-ups-stranger@example.com")
    stolen = await api.delete(f"/v1/follow-ups/{mine.json()['follow_up_id']}", headers=_auth(stranger))
    assert stolen.status_code == 404
    assert await _by_status(api, stranger, "waiting") == []


async def test_a_brief_without_a_model_is_extractive_kept_per_message_and_its_items_become_follow_ups(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "briefs@example.com")
    key = (await _widget(api, owner))["widget_key"]
    first = await _visitor_says(api, key, "Hi! We moved house. Can you send the new quote tomorrow?")
    conversation = first["conversation_id"]
    path = f"/v1/conversations/{conversation}/summary"
    brief = (await api.get(path, params={"min_seq": first["seq"]}, headers=_auth(owner))).json()
    assert brief["model"] is None and brief["summary"] == "Visitor: Hi!"
    [item] = brief["action_items"]
    assert item["text"] == "Visitor: Can you send the new quote tomorrow?" and item["due"]
    assert (await api.get(path, headers=_auth(owner))).json() == brief  # kept: nothing new was said
    later = await _visitor_says(api, key, "Also, please call me.", visitor_token=first["visitor_token"])
    newer = (await api.get(path, params={"min_seq": later["seq"]}, headers=_auth(owner))).json()
    assert newer["through_message_id"] != brief["through_message_id"] and len(newer["action_items"]) == 2
    # One click: an action item becomes a follow-up with its text as the note.
    due = f"{item['due']}T09:00:00+00:00"
    body = {"due_at": due, "note": item["text"]}
    made = await api.post(f"/v1/conversations/{conversation}/follow-ups", json=body, headers=_auth(owner))
    assert made.status_code == 202, made.text
    assert (await api.get("/v1/conversations/c_missing/summary", headers=_auth(owner))).status_code == 404


async def test_a_promise_in_a_message_becomes_a_proposal_the_owner_approves_or_declines(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "follow-up-proposals@example.com")
    chosen = await api.put("/v1/me/preferences", json={"time_zone": "Europe/Berlin"}, headers=_auth(owner))
    assert chosen.status_code == 202, chosen.text
    await stack.wait_caught_up()
    key = (await _widget(api, owner))["widget_key"]
    promised = await _visitor_says(api, key, "Thanks! I'll get back to you tomorrow with the dates.")
    vague = await _visitor_says(api, key, "Let me check with my wife.")
    chatty = await _visitor_says(api, key, "I will confirm on Friday.")
    plain = await _visitor_says(api, key, "What time do you open?")
    await _decided(stack, nc, max(s["seq"] for s in (promised, vague, chatty, plain)))

    async def proposed() -> list[Any]:
        found = await _by_status(api, owner, "proposed")
        return found if len(found) == 3 else []

    proposals = {f["conversation_id"]: f for f in await _until(proposed, "three proposals")}
    assert plain["conversation_id"] not in proposals  # no promise, no proposal
    berlin = ZoneInfo("Europe/Berlin")
    today = datetime.now(berlin).date()
    tomorrow_one = proposals[promised["conversation_id"]]
    assert tomorrow_one["note"] == "They said: I'll get back to you tomorrow with the dates."
    assert datetime.fromisoformat(tomorrow_one["due_at"]) == datetime.combine(
        today + timedelta(days=2), time(9), tzinfo=berlin
    )  # the morning after the day they named, on the owner's clock
    assert datetime.fromisoformat(proposals[vague["conversation_id"]]["due_at"]).date() == today + timedelta(
        days=2
    )
    assert await _by_status(api, owner, "waiting") == []  # nothing is reminded until approved

    approved = await api.post(f"/v1/follow-ups/{tomorrow_one['follow_up_id']}/approve", headers=_auth(owner))
    assert approved.status_code == 202, approved.text
    declined = await api.delete(
        f"/v1/follow-ups/{proposals[vague['conversation_id']]['follow_up_id']}", headers=_auth(owner)
    )
    assert declined.status_code == 202, declined.text
    # They wrote again before anyone approved: the proposal is moot.
    await _visitor_says(api, key, "Friday works, see you!", visitor_token=chatty["visitor_token"])
    await stack.wait_caught_up()
    [waiting] = await _by_status(api, owner, "waiting")
    assert waiting["follow_up_id"] == tomorrow_one["follow_up_id"] and waiting["only_if_no_reply"]
    assert [f["conversation_id"] for f in await _by_status(api, owner, "answered")] == [
        chatty["conversation_id"]
    ]
    twice = await api.post(f"/v1/follow-ups/{tomorrow_one['follow_up_id']}/approve", headers=_auth(owner))
    assert (twice.status_code, twice.json()["error"]) == (409, "not_proposed")
    await stack.verify_read_models()  # proposals, approvals and answers replay identically
