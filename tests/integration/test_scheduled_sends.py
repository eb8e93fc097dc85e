"""Scheduled sends: ``POST /v1/messages`` with ``send_at`` lists as scheduled, is not
delivered early, goes out once at its time through the normal outbox, and can be called off
while it waits; releases are exactly once however many schedulers tick and whenever one
restarts (the schedule is the log and the inbox read model)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from adapters.postgres import tenancy
from adapters.postgres.scheduled_sends import release_due
from domain import events as ev
from tests.integration.conftest import Stack
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages, _next, _visitor_says, _visitor_socket, _widget


async def _schedule(
    api: httpx.AsyncClient, owner: dict[str, str], conversation: str, text: str, at: datetime
) -> httpx.Response:
    body = {"conversation_id": conversation, "text": text, "send_at": at.isoformat()}
    return await api.post("/v1/messages", json=body, headers=_auth(owner))


async def _visited(api: httpx.AsyncClient, owner: dict[str, str], key: str) -> str:
    """A visitor's conversation, once the inbox has it (a reply may be scheduled into it)."""
    asked = await _visitor_says(api, key, "Hello")
    shown = await api.get(
        f"/v1/conversations/{asked['conversation_id']}",
        params={"min_seq": asked["seq"]},
        headers=_auth(owner),
    )
    assert shown.status_code == 200, shown.text
    return str(asked["conversation_id"])


async def _status(api: httpx.AsyncClient, owner: dict[str, str], conversation: str, message_id: str) -> str:
    found = [m for m in await _messages(api, owner, conversation) if m["message_id"] == message_id]
    return str(found[0]["status"]) if found else ""


async def _released(stack: Stack, tenant_id: str) -> list[ev.MessageSendReleased]:
    return [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{tenant_id}.>")
        if isinstance(s.event, ev.MessageSendReleased)
    ]


async def _from_business(socket: Any) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await socket.recv())
        if frame.get("op") == "message" and frame["message"]["from"] == "business":
            return frame


async def test_a_scheduled_message_goes_out_once_at_its_time_and_not_before(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "scheduled@example.com")
    key = (await _widget(api, owner))["widget_key"]
    async with await _visitor_socket(api, key) as socket:
        await socket.send(json.dumps({"op": "hello", "name": "Lea"}))
        conversation = (await _next(socket, "welcome"))["conversation_id"]
        await socket.send(json.dumps({"op": "send", "text": "Remind me tomorrow?"}))
        asked = await _next(socket, "sent")
        due = datetime.now(UTC) + timedelta(seconds=4)
        scheduled = await _schedule(api, owner, conversation, "Good morning! Here is your reminder.", due)
        assert scheduled.status_code == 202, scheduled.text
        message_id = scheduled.json()["message_id"]
        assert await _status(api, owner, conversation, message_id) == "scheduled"
        # Scheduled is no answer yet: the question still waits, and nothing reached the visitor.
        waiting = await api.get("/v1/conversations", params={"needs_reply": "true"}, headers=_auth(owner))
        assert [c["conversation_id"] for c in waiting.json()["items"]] == [conversation]
        frames: list[dict[str, Any]] = []
        while datetime.now(UTC) < due - timedelta(seconds=1):
            with contextlib.suppress(TimeoutError):
                frames.append(json.loads(await asyncio.wait_for(socket.recv(), 0.5)))
        assert not [f for f in frames if f.get("op") == "message" and f["message"]["from"] == "business"]
        delivered = await asyncio.wait_for(_from_business(socket), 20)
        assert delivered["message"]["text"] == "Good morning! Here is your reminder."
        assert datetime.now(UTC) >= due  # not early
    assert asked["seq"] < scheduled.json()["seq"]

    async def sent() -> bool:
        return await _status(api, owner, conversation, message_id) == "sent"

    await _until(sent, "the scheduled message to be confirmed sent")
    await asyncio.sleep(2)  # more ticks: still released once, sent once
    assert len(await _released(stack, owner["tenant_id"])) == 1
    outgoing = [m for m in await _messages(api, owner, conversation) if m["direction"] == "out"]
    assert len(outgoing) == 1
    answered = await api.get("/v1/conversations", params={"needs_reply": "true"}, headers=_auth(owner))
    assert answered.json()["items"] == []  # released, it answered the question
    await stack.verify_read_models()


async def test_a_scheduled_message_can_be_called_off_and_bad_requests_say_what_to_fix(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "scheduled-cancel@example.com")
    key = (await _widget(api, owner))["widget_key"]
    conversation = await _visited(api, owner, key)
    later = datetime.now(UTC) + timedelta(minutes=10)
    scheduled = await _schedule(api, owner, conversation, "Never mind.", later)
    assert scheduled.status_code == 202, scheduled.text
    message_id = scheduled.json()["message_id"]
    await api.get(
        f"/v1/conversations/{conversation}/messages?min_seq={scheduled.json()['seq']}", headers=_auth(owner)
    )
    cancelled = await api.delete(f"/v1/messages/{message_id}", headers=_auth(owner))
    assert cancelled.status_code == 202, cancelled.text
    await _until(lambda: _cancelled(api, owner, conversation, message_id), "the message to show as cancelled")
    again = await api.delete(f"/v1/messages/{message_id}", headers=_auth(owner))
    assert (again.status_code, again.json()["error"]) == (409, "not_scheduled")
    # Its time passes: nothing is released.
    async with tenancy.pool(stack.database_url, max_size=1, confined=False) as owner_pool:
        assert await release_due(owner_pool, stack.store, later + timedelta(minutes=1)) == 0

    soon = await _schedule(
        api, owner, conversation, "Almost now.", datetime.now(UTC) + timedelta(seconds=1.5)
    )
    await api.get(
        f"/v1/conversations/{conversation}/messages?min_seq={soon.json()['seq']}", headers=_auth(owner)
    )
    late = await api.delete(f"/v1/messages/{soon.json()['message_id']}", headers=_auth(owner))
    assert (late.status_code, late.json()["error"]) == (409, "too_late")
    assert (await api.delete("/v1/messages/m_missing", headers=_auth(owner))).status_code == 404

    past = await _schedule(api, owner, conversation, "Yesterday.", datetime.now(UTC) - timedelta(minutes=1))
    assert (past.status_code, past.json()["field"]) == (400, "send_at")
    naive = await api.post(
        "/v1/messages",
        json={"conversation_id": conversation, "text": "x", "send_at": "2030-01-01T09:00:00"},
        headers=_auth(owner),
    )
    assert (naive.status_code, naive.json()["field"]) == (400, "send_at")
    far = await _schedule(api, owner, conversation, "Next year.", datetime.now(UTC) + timedelta(days=400))
    assert far.status_code == 400
    stranger = await _signup(api, "scheduled-stranger@example.com")
    assert (await api.delete(f"/v1/messages/{message_id}", headers=_auth(stranger))).status_code == 404


async def _cancelled(
    api: httpx.AsyncClient, owner: dict[str, str], conversation: str, message_id: str
) -> bool:
    return await _status(api, owner, conversation, message_id) == "cancelled"


async def test_releases_are_exactly_once_across_schedulers_and_restarts(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "scheduled-twice@example.com")
    key = (await _widget(api, owner))["widget_key"]
    conversation = await _visited(api, owner, key)
    due = datetime.now(UTC) + timedelta(minutes=30)  # far enough that the gateway's own ticks wait
    scheduled = await _schedule(api, owner, conversation, "Half an hour later.", due)
    await stack.wait_caught_up()
    async with tenancy.pool(stack.database_url, max_size=4, confined=False) as owner_pool:
        assert await release_due(owner_pool, stack.store, due - timedelta(seconds=1)) == 0  # not early
        # Two schedulers tick at its time at once, then one "restarts" and ticks again before
        # and after the inbox has folded the release: the log holds one release.
        await asyncio.gather(
            release_due(owner_pool, stack.store, due), release_due(owner_pool, stack.store, due)
        )
        await release_due(owner_pool, stack.store, due + timedelta(seconds=1))
        await stack.wait_caught_up()
        assert await release_due(owner_pool, stack.store, due + timedelta(seconds=2)) == 0
    [released] = await _released(stack, owner["tenant_id"])
    assert released.data.message_id == scheduled.json()["message_id"]
    assert released.data.text == "Half an hour later."
