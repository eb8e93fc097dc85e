"""The agent over the whole product (gateway, projections, outbox, connectors, agent) with
the built-in offline model: a visitor's message gets one streamed reply, a burst gets
one answer, the rules and the budget are respected, and runs are recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from domain import events as ev
from domain.agent import BUDGET_REPLY
from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages, _next, _visitor_says, _visitor_socket, _widget


async def _runs(stack: Stack, tenant_id: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(
        stack.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT * FROM rm_agents.agent_runs WHERE tenant_id = %s ORDER BY requested_at", (tenant_id,)
        )
        return await cur.fetchall()


async def _until(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _replies(api: httpx.AsyncClient, owner: dict[str, str], conversation: str) -> list[dict[str, Any]]:
    return [
        m for m in await _messages(api, owner, conversation) if m["agent_run_id"] and m["status"] == "sent"
    ]


async def test_a_visitor_gets_one_streamed_offline_reply(
    api: httpx.AsyncClient, stack: Stack, assistant: None
) -> None:
    owner = await _signup(api, "agent-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    async with await _visitor_socket(api, key) as socket:
        await socket.send(json.dumps({"op": "hello", "name": "Lea"}))
        welcome = await _next(socket, "welcome")
        await socket.send(json.dumps({"op": "send", "text": "Are you open on Sunday?"}))
        frames: list[dict[str, Any]] = []
        while not any(f["op"] == "message" and f["message"]["from"] == "business" for f in frames):
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), 20)))
    typing = [f for f in frames if f["op"] == "typing"]
    reply = next(f for f in frames if f["op"] == "message" and f["message"]["from"] == "business")
    assert len(typing) > 3  # streamed in pieces before the message was sent
    assert [t["index"] for t in typing] == list(range(len(typing)))
    assert "".join(t["delta"] for t in typing) == reply["message"]["text"]
    assert '"Are you open on Sunday?"' in reply["message"]["text"]
    assert reply["message"]["sender_name"] == "Moltbot"

    conversation = welcome["conversation_id"]
    [sent] = await _until(lambda: _replies(api, owner, conversation), "the reply in the inbox")
    [run] = await _runs(stack, owner["tenant_id"])
    assert run["status"] == "completed"
    assert run["offline"] is True
    assert run["model"] == "offline-1"
    assert run["reply_message_id"] == sent["message_id"]
    assert sent["agent_run_id"] == run["run_id"]
    usage = (await api.get("/v1/usage", headers=_auth(owner))).json()
    metrics = {(u["metric"], u["quantity"]) for u in usage}
    assert ("agent_runs", 1) in metrics


async def test_a_burst_gets_one_answer_and_rules_are_respected(
    api: httpx.AsyncClient, stack: Stack, assistant: None
) -> None:
    owner = await _signup(api, "burst-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    first = await _visitor_says(api, key, "hello")
    token = first["visitor_token"]
    for text in ("I have a question", "what time is it?"):
        await _visitor_says(api, key, text, visitor_token=token)
    conversation = first["conversation_id"]
    [reply] = await _until(lambda: _replies(api, owner, conversation), "one reply")
    assert '"what time is it?"' in reply["text"]  # the answer covers the latest message
    assert "It is " in reply["text"]  # the offline model used the current_time tool
    await asyncio.sleep(1.0)  # nothing more comes
    runs = await _runs(stack, owner["tenant_id"])
    assert len(runs) == 1
    assert json.loads(json.dumps(runs[0]["tool_calls"]))[0]["name"] == "current_time"

    # Switched off for this conversation: the next message gets no run.
    patch = await api.patch(
        f"/v1/conversations/{conversation}", json={"agent_enabled": False}, headers=_auth(owner)
    )
    assert patch.status_code == 202
    await api.get("/v1/conversations", params={"min_seq": patch.json()["seq"]}, headers=_auth(owner))
    quiet = await _visitor_says(api, key, "anyone there?", visitor_token=token)
    await asyncio.sleep(1.5)
    assert len(await _runs(stack, owner["tenant_id"])) == 1
    assert len(await _replies(api, owner, conversation)) == 1
    assert quiet["conversation_id"] == conversation


async def test_an_exhausted_budget_gets_one_polite_reply_and_no_model_call(
    api: httpx.AsyncClient, stack: Stack, assistant: None
) -> None:
    owner = await _signup(api, "budget-shop@example.com")
    spent = ev.new_event(
        ev.UsageRecorded, tenant_id=owner["tenant_id"], aggregate_id=owner["tenant_id"], actor="test",
        data=ev.UsageRecordedData(metric="cost_micros", quantity=2_000_000, source_id="earlier-runs"),
    )  # fmt: skip
    await stack.store.append(spent)
    key = (await _widget(api, owner))["widget_key"]
    first = await _visitor_says(api, key, "Can you help me?")
    [reply] = await _until(lambda: _replies(api, owner, first["conversation_id"]), "the budget reply")
    assert reply["text"] == BUDGET_REPLY
    [run] = await _runs(stack, owner["tenant_id"])
    assert (run["status"], run["error_code"], run["model"]) == ("failed", "budget_exhausted", None)
