"""The agent over the whole product (gateway, projections, outbox, connectors, agent) with
the built-in offline model: a visitor's message gets one streamed reply, a burst gets
one answer, the rules and the budget are respected, and runs are recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from psycopg.rows import dict_row

from adapters.agent.orchestrator import CONSUMER as AGENT_CONSUMER
from adapters.nats.event_store import EVENTS_STREAM
from domain import events as ev
from domain.agent import BUDGET_REPLY
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.integration.conftest import Stack, member_token
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages, _next, _visitor_says, _visitor_socket, _widget


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about agents; the limits: test_plan_limits.py


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
    return [m for m in await _agent_messages(api, owner, conversation) if m["status"] == "sent"]


async def _agent_messages(
    api: httpx.AsyncClient, owner: dict[str, str], conversation: str
) -> list[dict[str, Any]]:
    """What the agent wrote in the conversation, sent or not yet."""
    return [m for m in await _messages(api, owner, conversation) if m["agent_run_id"]]


async def _decided(stack: Stack, nc: Client, trigger_seq: int) -> None:
    """Wait until the agent has decided on every trigger up to ``trigger_seq`` and the read
    models hold what it recorded: it acks a trigger only after skipping it or after recording
    its run, so its consumer's ack floor passing the trigger is the decision made."""
    jetstream = nc.jetstream()

    async def acked() -> bool:
        with contextlib.suppress(NotFoundError):  # streams.yaml has not created the consumer yet
            info = await jetstream.consumer_info(EVENTS_STREAM, AGENT_CONSUMER)
            return info.ack_floor.stream_seq >= trigger_seq
        return False

    await _until(acked, f"the agent's decision on seq {trigger_seq}")
    await stack.wait_caught_up()


async def test_a_visitor_gets_one_streamed_offline_reply(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
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
    await _decided(stack, nc, next(f["seq"] for f in frames if f["op"] == "sent"))
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
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "burst-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    first = await _visitor_says(api, key, "hello")
    token = first["visitor_token"]
    last = first
    for text in ("I have a question", "what time is it?"):
        last = await _visitor_says(api, key, text, visitor_token=token)
    conversation = first["conversation_id"]
    [reply] = await _until(lambda: _replies(api, owner, conversation), "one reply")
    assert '"what time is it?"' in reply["text"]  # the answer covers the latest message
    assert "It is " in reply["text"]  # the offline model used the current_time tool
    await _decided(stack, nc, last["seq"])  # all three triggers decided: nothing more comes
    assert len(await _agent_messages(api, owner, conversation)) == 1
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
    await _decided(stack, nc, quiet["seq"])
    assert len(await _runs(stack, owner["tenant_id"])) == 1
    assert len(await _agent_messages(api, owner, conversation)) == 1
    assert quiet["conversation_id"] == conversation


async def test_an_exhausted_budget_gets_one_polite_reply_and_no_model_call(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
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
    await _decided(stack, nc, first["seq"])
    assert len(await _agent_messages(api, owner, first["conversation_id"])) == 1
    [run] = await _runs(stack, owner["tenant_id"])
    assert (run["status"], run["error_code"], run["model"]) == ("failed", "budget_exhausted", None)


async def _sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:])))
    return events


async def test_agents_are_configured_through_the_api(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    owner = await _signup(api, "config-shop@example.com")
    listed = await api.get("/v1/agents", params={"min_seq": owner["seq"]}, headers=_auth(owner))
    [default] = listed.json()
    assert (default["name"], default["template"], default["enabled"]) == (
        "Moltbot",
        "personal_assistant",
        True,
    )
    templates = (await api.get("/v1/agents/templates", headers=_auth(owner))).json()
    assert {t["template"] for t in templates} == {"personal_assistant", "customer_support", "creative_writer"}

    change = {
        "name": "Ada's helper",
        "rules": {"channels": ["webchat"], "quiet_hours": [22, 7]},
        "tools": ["current_time"],
    }
    updated = await api.put(f"/v1/agents/{default['agent_id']}", json=change, headers=_auth(owner))
    assert updated.status_code == 202, updated.text
    [agent] = (
        await api.get("/v1/agents", params={"min_seq": updated.json()["seq"]}, headers=_auth(owner))
    ).json()
    assert agent["name"] == "Ada's helper"
    assert agent["tools"] == ["current_time"]
    assert agent["rules"]["quiet_hours"] == [22, 7]
    assert agent["system_prompt"] == default["system_prompt"]  # left out: unchanged

    created = await api.post("/v1/agents", json={"template": "customer_support"}, headers=_auth(owner))
    assert created.status_code == 202
    agents = (
        await api.get("/v1/agents", params={"min_seq": created.json()["seq"]}, headers=_auth(owner))
    ).json()
    assert [a["template"] for a in agents] == ["personal_assistant", "customer_support"]

    bad: list[tuple[str, str, dict[str, Any], int, str | None]] = [
        ("PUT", default["agent_id"], {"tools": ["send_bitcoin"]}, 400, "tools"),
        ("PUT", default["agent_id"], {"rules": {"quiet_hours": [25, 3]}}, 400, "rules"),
        ("PUT", default["agent_id"], {"name": ""}, 400, "name"),
        ("PUT", default["agent_id"], {"colour": "blue"}, 400, None),
        ("PUT", "ag_missing", {"name": "x"}, 404, "id"),
        ("POST", "", {"template": "pirate"}, 400, "template"),
    ]
    for method, agent_id, body, status, field in bad:
        path = f"/v1/agents/{agent_id}" if agent_id else "/v1/agents"
        response = await api.request(method, path, json=body, headers=_auth(owner))
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"]
        if field:
            assert response.json()["field"] == field

    member = await member_token(stack, tmp_path / "jwt.pem", owner["tenant_id"], "member")
    refused = await api.put(
        f"/v1/agents/{default['agent_id']}",
        json={"name": "mine"},
        headers={"Authorization": f"Bearer {member}"},
    )
    assert refused.status_code == 403


async def test_an_agent_is_tried_out_with_a_streamed_dry_run(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "preview-shop@example.com")
    [agent] = (await api.get("/v1/agents", params={"min_seq": owner["seq"]}, headers=_auth(owner))).json()
    last_seq = await stack.store.last_seq()
    url = f"/v1/agents/{agent['agent_id']}/test"
    async with api.stream("POST", url, json={"text": "what time is it?"}, headers=_auth(owner)) as response:
        assert response.status_code == 200
        events = await _sse(response)
    deltas = [data["text"] for name, data in events if name == "delta"]
    (name, done) = events[-1]
    assert name == "done"
    assert len(deltas) > 3
    assert "".join(deltas) == done["text"]
    assert done["offline"] is True
    assert [c["name"] for c in done["tool_calls"]] == ["current_time"]

    # Unsaved settings are previewed as given: without the clock tool it cannot tell the time.
    body = {"text": "what time is it?", "config": {"tools": []}}
    async with api.stream("POST", url, json=body, headers=_auth(owner)) as response:
        preview = await _sse(response)
    assert preview[-1][1]["tool_calls"] == []
    log = stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
    stored = [s.event.type async for s in log if s.seq > last_seq]
    assert stored == ["usage.recorded"] * 6  # a dry run sends nothing; its usage: tokens in, out, cost
    empty = await api.post(url, json={"text": " "}, headers=_auth(owner))
    assert empty.status_code == 400
