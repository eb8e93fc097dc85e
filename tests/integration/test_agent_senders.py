"""Who the agent answers in direct messages (a connection's DM policy), over the whole
product: under ``pairing`` a stranger gets their code once and no answer until the owner
approves them (by the code or from the inbox); under ``allowlist`` they get nothing; a
blocked sender is never answered; every message is stored either way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.integration.conftest import Stack
from tests.integration.test_agent import _conversation, _decided, _drafts, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages, _visitor_says, _widget


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


async def _webchat_channel(api: httpx.AsyncClient, owner: dict[str, str]) -> str:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    return str(next(c["connection_id"] for c in channels if c["channel"] == "webchat"))


async def _set_policy(api: httpx.AsyncClient, owner: dict[str, str], channel: str, dm_policy: str) -> int:
    changed = await api.patch(f"/v1/channels/{channel}", json={"dm_policy": dm_policy}, headers=_auth(owner))
    assert changed.status_code == 202, changed.text
    seq: int = changed.json()["seq"]
    return seq


async def _outbound(api: httpx.AsyncClient, owner: dict[str, str], conversation: str) -> list[Any]:
    return [m for m in await _messages(api, owner, conversation) if m["direction"] == "out"]


async def _senders(
    api: httpx.AsyncClient, owner: dict[str, str], channel: str, status: str, seq: int = 0
) -> list[Any]:
    response = await api.get(
        f"/v1/channels/{channel}/senders", params={"status": status, "min_seq": seq}, headers=_auth(owner)
    )
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()
    return found


async def test_a_stranger_gets_a_code_and_an_answer_only_once_the_owner_approves_it(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "pairing-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    channel = await _webchat_channel(api, owner)
    shown = (await api.get("/v1/channels", headers=_auth(owner))).json()
    assert next(c for c in shown if c["connection_id"] == channel)["dm_policy"] is None  # open until set
    await _set_policy(api, owner, channel, "pairing")

    first = await _visitor_says(api, key, "Hello, are you open today?")
    conversation, token = first["conversation_id"], first["visitor_token"]
    [code_reply] = await _until(lambda: _outbound(api, owner, conversation), "the reply with the code")
    await _decided(stack, nc, first["seq"])
    assert code_reply["sender_name"] == "Moltbot" and code_reply["agent_run_id"] is None
    assert await _drafts(api, owner, conversation) == []  # the agent itself did not answer
    [waiting] = await _senders(api, owner, channel, "pending")
    assert waiting["code"] in code_reply["text"]
    assert (waiting["conversation_id"], waiting["sender_name"]) == (conversation, "Visitor")
    view = await _conversation(api, owner, conversation, first["seq"])
    assert (view["sender_id"], view["sender_status"]) == (waiting["sender_id"], "pending")

    # They write again before anyone approves them: stored, no second code, no answer.
    again = await _visitor_says(api, key, "Hello? Anyone?", visitor_token=token)
    await _decided(stack, nc, again["seq"])
    assert len(await _outbound(api, owner, conversation)) == 1
    assert await _drafts(api, owner, conversation) == []
    assert len(await _messages(api, owner, conversation)) == 3

    # The owner approves them with the code they passed on, typed loosely.
    typed = waiting["code"].lower().replace("-", " ")
    wrong = await api.post("/v1/pairing/approve", json={"code": "ZZZZ-ZZZZ"}, headers=_auth(owner))
    assert wrong.status_code == 404 and "code" in wrong.json()["detail"]
    approved = await api.post("/v1/pairing/approve", json={"code": typed}, headers=_auth(owner))
    assert approved.status_code == 202, approved.text
    assert approved.json()["status"] == "approved"
    view = await _conversation(api, owner, conversation, approved.json()["seq"])
    assert view["sender_status"] == "approved"

    # Now the agent answers them (the offline model: a draft for the owner to send).
    third = await _visitor_says(api, key, "Great, what time do you close?", visitor_token=token)
    [draft] = await _until(lambda: _drafts(api, owner, conversation), "the agent's draft")
    assert '"Great, what time do you close?"' in draft["text"]
    await _decided(stack, nc, third["seq"])
    assert len(await _outbound(api, owner, conversation)) == 1  # still only the code


async def test_an_allowlist_sends_no_code_and_a_blocked_sender_is_never_answered(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "allowlist-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    channel = await _webchat_channel(api, owner)
    await _set_policy(api, owner, channel, "allowlist")

    first = await _visitor_says(api, key, "Hi there")
    conversation, token = first["conversation_id"], first["visitor_token"]
    await _decided(stack, nc, first["seq"])
    [waiting] = await _senders(api, owner, channel, "pending")
    assert waiting["code"] is None
    assert await _outbound(api, owner, conversation) == []

    sender = waiting["sender_id"]
    blocked = await api.post(f"/v1/channels/{channel}/senders/{sender}/block", headers=_auth(owner))
    assert blocked.status_code == 202, blocked.text
    assert [
        s["sender_id"] for s in await _senders(api, owner, channel, "blocked", blocked.json()["seq"])
    ] == [sender]
    # Even with the policy opened up again, a blocked sender stays unanswered.
    await _set_policy(api, owner, channel, "pairing")
    again = await _visitor_says(api, key, "Please answer", visitor_token=token)
    await _decided(stack, nc, again["seq"])
    assert await _outbound(api, owner, conversation) == []
    assert await _drafts(api, owner, conversation) == []
    assert len(await _messages(api, owner, conversation)) == 2  # both stored

    # Approving from the inbox lifts it.
    path = f"/v1/channels/{channel}/senders/{sender}/approve"
    assert (await api.post(path, headers=_auth(owner))).status_code == 202
    third = await _visitor_says(api, key, "Hello again", visitor_token=token)
    await _until(lambda: _drafts(api, owner, conversation), "the agent's draft")
    await _decided(stack, nc, third["seq"])
    await stack.verify_read_models()  # requests, approvals and blocks replay identically


async def test_bad_dm_policy_requests_are_refused_with_what_to_fix(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "policy-errors@example.com")
    channel = await _webchat_channel(api, owner)
    wrong = await api.patch(f"/v1/channels/{channel}", json={"dm_policy": "friends"}, headers=_auth(owner))
    assert wrong.status_code == 400 and "dm_policy" in wrong.text
    missing = await api.post("/v1/channels/cn_nope/senders/x/approve", headers=_auth(owner))
    assert missing.status_code == 404
    unknown = await api.get(f"/v1/channels/{channel}/senders?status=maybe", headers=_auth(owner))
    assert unknown.status_code == 400
    stranger = await _signup(api, "policy-stranger@example.com")  # another tenant's channel
    assert (await api.get(f"/v1/channels/{channel}/senders", headers=_auth(stranger))).status_code == 404
