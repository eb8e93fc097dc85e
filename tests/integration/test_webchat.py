"""Webchat and sending, over the whole product (gateway, projections, outbox, connectors):
a visitor's message reaches the inbox, a reply sent with an Idempotency-Key goes out
once and reaches the visitor's socket, and failures are clear."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup


async def _widget(api: httpx.AsyncClient, account: dict[str, str]) -> dict[str, Any]:
    response = await api.get("/v1/webchat", headers=_auth(account))
    assert response.status_code == 200, response.text
    widget: dict[str, Any] = response.json()
    return widget


async def _visitor_says(api: httpx.AsyncClient, key: str, text: str, **extra: str) -> dict[str, Any]:
    response = await api.post(f"/v1/webchat/{key}/messages", json={"text": text, **extra})
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def _messages(
    api: httpx.AsyncClient, account: dict[str, str], conversation: str, **params: Any
) -> list[Any]:
    response = await api.get(
        f"/v1/conversations/{conversation}/messages", params=params, headers=_auth(account)
    )
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def _until_status(
    api: httpx.AsyncClient, account: dict[str, str], conversation: str, message_id: str, status: str
) -> dict[str, Any]:
    for _ in range(300):
        found = [m for m in await _messages(api, account, conversation) if m["message_id"] == message_id]
        if found and found[0]["status"] == status:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} never became {status}: {found}")


async def _visitor_socket(api: httpx.AsyncClient, key: str) -> ClientConnection:
    url = str(api.base_url).replace("http://", "ws://") + f"/v1/webchat/{key}/ws"
    return await ws_connect(url)


async def _next(socket: ClientConnection, op: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if frame["op"] == op:
            return frame  # type: ignore[no-any-return]
        assert frame["op"] in ("heartbeat", "sent", "message"), frame


async def test_visitor_message_reaches_the_inbox_and_the_reply_reaches_the_visitor(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "shop@example.com")
    widget = await _widget(api, owner)
    assert widget["widget_key"].startswith("wk_")
    assert (await _widget(api, owner))["widget_key"] == widget["widget_key"]  # one per tenant

    first = await _visitor_says(api, widget["widget_key"], "Do you ship to Lisbon?", name="Rita")
    conversations = await api.get("/v1/conversations", params={"min_seq": first["seq"]}, headers=_auth(owner))
    [conversation] = conversations.json()["items"]
    assert conversation["conversation_id"] == first["conversation_id"]
    assert conversation["channel"] == "webchat"
    assert conversation["unread_count"] == 1
    assert conversation["title"] == "Rita (website)"
    # The same visitor again: same conversation, no second one.
    again = await _visitor_says(
        api,
        widget["widget_key"],
        "And to Porto?",
        visitor_token=first["visitor_token"],
        client_message_id="c-2",
    )
    assert again["conversation_id"] == first["conversation_id"]
    # A retried post (same client_message_id) is stored once.
    retried = await _visitor_says(
        api,
        widget["widget_key"],
        "And to Porto?",
        visitor_token=first["visitor_token"],
        client_message_id="c-2",
    )
    assert retried["message_id"] == again["message_id"]
    inbox = await _messages(api, owner, first["conversation_id"], min_seq=retried["seq"])
    assert [m["text"] for m in inbox] == ["And to Porto?", "Do you ship to Lisbon?"]
    assert {m["direction"] for m in inbox} == {"in"}

    channels = (await api.get("/v1/channels", params={"min_seq": owner["seq"]}, headers=_auth(owner))).json()
    assert [(c["channel"], c["state"]) for c in channels] == [("webchat", "connected")]

    # The visitor's socket replays the conversation, then carries the reply live.
    socket = await _visitor_socket(api, widget["widget_key"])
    async with socket:
        await socket.send(json.dumps({"op": "hello", "visitor_token": first["visitor_token"]}))
        welcome = await _next(socket, "welcome")
        assert welcome["conversation_id"] == first["conversation_id"]
        replayed = [await _next(socket, "message") for _ in range(2)]
        assert [m["message"]["text"] for m in replayed] == ["Do you ship to Lisbon?", "And to Porto?"]

        body = {"conversation_id": first["conversation_id"], "text": "Yes, both, in 2 days."}
        headers = _auth(owner) | {"Idempotency-Key": "reply-1"}
        answers = [await api.post("/v1/messages", json=body, headers=headers) for _ in range(3)]
        assert {a.status_code for a in answers} == {202}
        assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1  # same answer each time
        accepted = answers[0].json()

        reply = await _next(socket, "message")
        assert reply["message"]["from"] == "business"
        assert reply["message"]["text"] == "Yes, both, in 2 days."
        assert reply["seq"] > accepted["seq"]

    sent = await _until_status(api, owner, first["conversation_id"], accepted["message_id"], "sent")
    assert sent["direction"] == "out"
    # One request, one confirmation in the log, whatever the retries.
    log = [e async for e in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")]
    kinds = [s.event.type for s in log if getattr(s.event.data, "message_id", None) == accepted["message_id"]]
    assert [k for k in kinds if k.startswith("message.")] == ["message.send_requested", "message.sent"]
    assert kinds.count("conversation.agent_paused") == 1  # a person answered: the agent steps back
    assert [s.event.id for s in log if s.seq == accepted["seq"]] == [accepted["event_id"]]

    reused = await api.post("/v1/messages", json=body | {"text": "something else"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"


async def test_visitor_socket_sends_resumes_and_refuses_unknown_keys(api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "socket-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    async with await _visitor_socket(api, key) as socket:
        await socket.send(json.dumps({"op": "hello", "name": "Sam"}))
        welcome = await _next(socket, "welcome")
        assert welcome["visitor_token"].startswith("vt_")
        for n in range(3):
            await socket.send(
                json.dumps({"op": "send", "text": f"message {n}", "client_message_id": f"k{n}"})
            )
        seen = [await _next(socket, "message") for _ in range(3)]
        await socket.send(json.dumps({"op": "ping"}))
        assert (await _next(socket, "pong"))["op"] == "pong"
        await socket.send(json.dumps({"op": "send", "text": "   "}))
        error = await _next(socket, "error")
        assert "characters" in error["detail"]
    assert [m["message"]["text"] for m in seen] == ["message 0", "message 1", "message 2"]
    assert all(m["message"]["sender_name"] == "Sam" for m in seen)

    # Reconnect after the first message: exactly the rest, no duplicate.
    async with await _visitor_socket(api, key) as socket:
        hello = {"op": "hello", "visitor_token": welcome["visitor_token"], "since": seen[0]["seq"] + 1}
        await socket.send(json.dumps(hello))
        assert (await _next(socket, "welcome"))["conversation_id"] == welcome["conversation_id"]
        resumed = [await _next(socket, "message") for _ in range(2)]
    assert [m["seq"] for m in resumed] == [m["seq"] for m in seen[1:]]

    async with await _visitor_socket(api, "wk_nothing_here") as socket:
        await socket.send(json.dumps({"op": "hello"}))
        error = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert error["op"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404


async def test_send_and_webchat_errors_say_what_to_fix(api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "errors-shop@example.com")
    other = await _signup(api, "other-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    visitor = await _visitor_says(api, key, "hello")
    conversation = visitor["conversation_id"]

    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"conversation_id": conversation, "text": "  "}, _auth(owner), 400, "text"),
        ({"conversation_id": conversation, "text": "x" * 4001}, _auth(owner), 400, "text"),
        ({"conversation_id": conversation, "text": "hi", "extra": 1}, _auth(owner), 400, ""),
        ({"conversation_id": "c_missing", "text": "hi"}, _auth(owner), 404, "conversation_id"),
        ({"conversation_id": conversation, "text": "hi"}, _auth(other), 404, "conversation_id"),  # not theirs
        (
            {"conversation_id": conversation, "text": "hi"},
            _auth(owner) | {"Idempotency-Key": "x" * 201},
            400,
            "Idempotency-Key",
        ),
    ]
    for body, headers, status, field in cases:
        response = await api.post("/v1/messages", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        error = response.json()
        assert error["detail"]
        if field:
            assert error["field"] == field
    assert (
        await api.post("/v1/messages", json={"conversation_id": conversation, "text": "hi"})
    ).status_code == 401

    bad_posts: list[tuple[str, dict[str, Any], int, str]] = [
        ("wk_unknown", {"text": "hi"}, 404, "key"),
        (key, {"text": ""}, 400, "text"),
        (key, {"text": "hi", "visitor_token": "short"}, 400, "visitor_token"),
        (key, {"text": "hi", "visitor_token": "vt_has.a.dot.in.it"}, 400, "visitor_token"),
    ]
    for widget_key, body, status, field in bad_posts:
        response = await api.post(f"/v1/webchat/{widget_key}/messages", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field


async def test_widget_page_is_served(api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "page-shop@example.com")
    widget = await _widget(api, owner)
    page = await api.get(widget["widget_url"])
    assert page.status_code == 200
    assert '<script src="/static/webchat.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = await api.get("/static/webchat.js")
    assert "/v1/webchat/" in script.text
