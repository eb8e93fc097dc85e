"""The agent with Anthropic: the real ``anthropic`` client against a local fake of the
Messages API (streaming, a tool round, a 429 first), over the whole product; and an
agent process killed in the middle of a run, whose conversation still gets exactly one
reply after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from adapters.agent.choice import ModelChoice
from adapters.nats.streams import ConsumerSpec, StreamsFile, apply_streams
from domain import events as ev
from domain import ids
from moltbot.roles import run_agent
from tests.fakes.anthropic_api import FakeAnthropic, Stall, error, fake_anthropic, text, tool_use
from tests.integration.conftest import REPO_ROOT, Stack
from tests.integration.test_agent import _replies, _runs, _until
from tests.integration.test_gateway import _signup
from tests.integration.test_webchat import _visitor_says, _widget


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with fake_anthropic() as server:
        yield server


@pytest.fixture
async def agent_models(fake: FakeAnthropic) -> AsyncIterator[ModelChoice]:
    models = ModelChoice("sk-test-key", base_url=fake.base_url)
    yield models
    await models.aclose()


async def test_streamed_reply_with_a_tool_round_after_a_429(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, assistant: None
) -> None:
    fake.add(
        error(429),
        tool_use("current_time", {}, say="Let me check the clock."),
        text("It is noon, so yes: we are open until six today."),
    )
    owner = await _signup(api, "claude-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    async with ws_connect(url) as socket:
        subscribe = {"op": "subscribe", "token": owner["token"], "topics": ["agent.delta", "message.sent"]}
        await socket.send(json.dumps(subscribe))
        assert json.loads(await socket.recv())["op"] == "subscribed"
        visitor = await _visitor_says(api, key, "Are you open now?")
        frames: list[dict[str, Any]] = []
        while not any(
            f.get("event", {}).get("type") == "message.sent" and f["event"]["data"]["agent_run_id"]
            for f in frames
        ):
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), 20)))
    deltas = [f["data"] for f in frames if f["op"] == "live"]
    sent = frames[-1]["event"]["data"]
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    assert "".join(d["delta"] for d in deltas) == sent["text"]
    assert sent["text"].startswith("Let me check the clock.")
    assert sent["text"].endswith("we are open until six today.")

    # The model saw the conversation and got the tool's answer back.
    assert len(fake.requests) == 3  # the 429, the tool round, the answer
    first, second = fake.requests[1], fake.requests[2]
    assert "Are you open now?" in json.dumps(first["messages"])
    assert {t["name"] for t in first["tools"]} == {"search_history", "current_time"}
    tool_result = second["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert "UTC" in json.dumps(tool_result["content"])

    [run] = await _runs(stack, owner["tenant_id"])
    assert run["status"] == "completed"
    assert run["offline"] is False
    assert run["tokens_in"] > 0 and run["tokens_out"] > 0
    assert [c["name"] for c in run["tool_calls"]] == ["current_time"]
    assert run["conversation_id"] == visitor["conversation_id"]


async def _slow_ack_agent_consumer(stack: Stack) -> None:
    """The agent consumer with a 3 s ack wait, so a killed agent's trigger comes back soon."""
    consumers = [
        ConsumerSpec(c.stream, c.config | {"ack_wait": 3_000_000_000}) if c.name == "agent" else c
        for c in stack.spec.consumers
    ]
    await apply_streams(stack.store.nc, StreamsFile(streams=stack.spec.streams, consumers=consumers))


@pytest.mark.slow
async def test_an_agent_killed_mid_run_replies_exactly_once_after_restart(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, agent_models: ModelChoice, tmp_path: Path
) -> None:
    await _slow_ack_agent_consumer(stack)
    fake.add(Stall(seconds=60))  # the first agent waits on the model until it is killed
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | {
        "MOLTBOT_NATS_URL": stack.nats_url,
        "MOLTBOT_DATABASE_URL": stack.database_url,
        "MOLTBOT_ANTHROPIC_API_KEY": "sk-test-key",
        "MOLTBOT_ANTHROPIC_BASE_URL": fake.base_url,
        "MOLTBOT_AGENT_DEBOUNCE": "0.2",
        "MOLTBOT_LOG_FORMAT": "json",
    }
    agent_log = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [sys.executable, "-m", "moltbot", "agent"], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=agent_log.open("wb"),
    )  # fmt: skip
    try:
        owner = await _signup(api, "crash-shop@example.com")
        key = (await _widget(api, owner))["widget_key"]
        visitor = await _visitor_says(api, key, "Is my order shipped?")

        async def model_called() -> bool:
            return len(fake.requests) == 1

        try:  # a cold start on a loaded machine can take a while
            await _until(model_called, "the first agent to call the model", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{agent_log.read_text()[-3000:]}") from None
        [run] = await _runs(stack, owner["tenant_id"])
        assert run["status"] == "started"
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        if agent.poll() is None:
            agent.kill()

    fake.add(text("Yes, it left the warehouse this morning."))
    restarted = asyncio.create_task(run_agent(stack.nats_url, stack.database_url, agent_models))
    try:
        conversation = visitor["conversation_id"]
        [reply] = await _until(
            lambda: _replies(api, owner, conversation), "the reply after the restart", timeout=40
        )
        await asyncio.sleep(4)  # past another ack wait: no second reply comes
        assert len(await _replies(api, owner, conversation)) == 1
    finally:
        restarted.cancel()
        await asyncio.gather(restarted, return_exceptions=True)
    assert reply["text"] == "Yes, it left the warehouse this morning."
    [run] = await _runs(stack, owner["tenant_id"])
    assert run["status"] == "completed"
    assert reply["agent_run_id"] == run["run_id"]
    requested = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if s.event.type == "message.send_requested"
    ]
    assert len(requested) == 1


async def test_a_long_history_is_summarized_for_the_model(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, assistant: None
) -> None:
    fake.add(text("Noted, all of it."))
    owner = await _signup(api, "long-talk@example.com")
    key = (await _widget(api, owner))["widget_key"]
    first = await _visitor_says(api, key, "Message 0. It starts here.", name="Rosa")
    conversation = first["conversation_id"]
    # Twenty long messages at once (one answer for the burst), far past the 12k-char context.
    later = [
        ev.new_event(
            ev.MessageReceived,
            tenant_id=owner["tenant_id"],
            aggregate_id=conversation,
            actor="test",
            data=ev.MessageReceivedData(
                message_id=ids.new_id(ids.MESSAGE),
                connection_id="cn_x",
                channel="webchat",
                provider_message_id=f"long-{n}",
                sender=ev.Sender(id="v", name="Rosa"),
                text=f"Message {n + 1}. " + "blah " * 200,
                sent_at=datetime.now(UTC),
            ),
        )
        for n in range(20)
    ]
    await stack.store.append_many(later)
    [reply] = await _until(lambda: _replies(api, owner, conversation), "the reply")
    assert reply["text"] == "Noted, all of it."
    [request] = fake.requests
    assert "Earlier in this conversation" in request["system"]
    assert "Rosa: Message 0." in request["system"]
    assert "Message 20." in json.dumps(request["messages"])  # the latest is sent as is
    assert "Message 0." not in json.dumps(request["messages"])
    summaries = [
        s.event
        async for s in stack.store.read_events(
            subject=f"ev.{owner['tenant_id']}.conversation.{conversation}.>"
        )
        if isinstance(s.event, ev.ConversationSummarized)
    ]
    assert len(summaries) == 1
    assert summaries[0].data.messages == request["system"].count("Rosa: ")
