"""The model adapters: the real ``anthropic`` SDK against a scripted fake of the Messages
API on 127.0.0.1 (streaming, tool rounds, retries, error mapping), and the offline model.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anthropic
import pytest

from adapters.agent.anthropic_model import MAX_TOOL_ROUNDS, AnthropicModel
from adapters.agent.offline import OfflineModel
from domain.models import ChatTurn, ModelReply, ModelRequest, ModelUnavailable, ToolCall, ToolFailed, ToolSpec
from tests.fakes.anthropic_api import (
    DEFAULT_MODEL,
    FakeAnthropic,
    Scripted,
    Stall,
    error,
    fake_anthropic,
    text,
    tool_use,
)

CLOCK = "Monday 01 January 2024, 12:00 UTC"
TIME_SPEC = ToolSpec("current_time", "The current date and time (UTC).", {"type": "object", "properties": {}})
SEARCH_SPEC = ToolSpec(
    "search_history",
    "Search every message in this inbox by words.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


class FixedTools:
    """A ToolRunner with canned outputs; a name in ``failing`` raises ToolFailed."""

    def __init__(
        self,
        outputs: dict[str, str] | None = None,
        *,
        specs: tuple[ToolSpec, ...] = (TIME_SPEC, SEARCH_SPEC),
        failing: dict[str, str] | None = None,
    ) -> None:
        self.outputs = outputs if outputs is not None else {"current_time": CLOCK}
        self.failing = failing or {}
        self._specs = specs
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def specs(self) -> tuple[ToolSpec, ...]:
        return self._specs

    async def run(self, name: str, arguments: dict[str, Any]) -> str:
        self.ran.append((name, arguments))
        if name in self.failing:
            raise ToolFailed(self.failing[name])
        return self.outputs[name]


def ask(question: str, *, tools: tuple[ToolSpec, ...] = (), system: str = "Be brief.") -> ModelRequest:
    return ModelRequest(
        model="claude-sonnet-4-6", system=system, turns=(ChatTurn("user", question),), tools=tools
    )


async def complete(
    model: AnthropicModel | OfflineModel, request: ModelRequest, tools: FixedTools | None = None
) -> tuple[ModelReply, list[str]]:
    deltas: list[str] = []

    async def on_delta(delta: str) -> None:
        deltas.append(delta)

    reply = await model.complete(request, tools or FixedTools(), on_delta)
    return reply, deltas


def claude(base_url: str, **options: Any) -> AnthropicModel:
    return AnthropicModel("sk-ant-test", base_url=base_url, **options)


@contextlib.asynccontextmanager
async def claude_on(
    script: Iterable[Scripted], **options: Any
) -> AsyncIterator[tuple[FakeAnthropic, AnthropicModel]]:
    """The fake API serving ``script``, and a model pointed at it."""
    async with fake_anthropic(script) as api, claude(api.base_url, **options) as model:
        yield api, model


# --- streaming -----------------------------------------------------------------------------


async def test_deltas_stream_in_order_and_join_to_the_reply() -> None:
    answer = "Hello there, how can I help you today?"
    async with claude_on([text(answer, input_tokens=12, output_tokens=9)]) as (api, model):
        reply, deltas = await complete(model, ask("hi"))

    assert deltas == ["Hello ", "there, ", "how ", "can ", "I ", "help ", "you ", "today?"]
    assert reply == ModelReply(text=answer, model=DEFAULT_MODEL, tokens_in=12, tokens_out=9)
    assert model.name == "claude-sonnet-4-6"
    (body,) = api.requests
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-4-6"
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 1024
    assert "tools" not in body
    headers = api.headers[0]
    assert "sk-ant-test" in (
        headers.get("x-api-key"),
        headers.get("authorization", "").removeprefix("Bearer "),
    )


async def test_turns_alternate_and_start_with_the_user() -> None:
    turns = (
        ChatTurn("assistant", "Welcome! I'm the assistant."),  # a greeting before anyone wrote
        ChatTurn("user", "Are you open"),
        ChatTurn("user", "on Sunday?"),
        ChatTurn("assistant", "Yes, 10 to 4."),
        ChatTurn("user", "   "),
        ChatTurn("user", "Thanks!"),
    )
    request = ModelRequest(
        model="claude-haiku-4-5", system="", turns=turns, tools=(TIME_SPEC,), max_tokens=300
    )
    reported = "claude-haiku-4-5-20251001"
    async with (
        fake_anthropic([text("You're welcome.", model=reported)]) as api,
        claude(api.base_url) as model,
    ):
        reply, _ = await complete(model, request)

    assert reply.model == reported
    (body,) = api.requests
    assert body["messages"] == [
        {"role": "user", "content": "Are you open\n\non Sunday?"},
        {"role": "assistant", "content": "Yes, 10 to 4."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert body["model"] == "claude-haiku-4-5"
    assert body["max_tokens"] == 300
    assert "system" not in body
    assert body["tools"] == [
        {"name": "current_time", "description": TIME_SPEC.description, "input_schema": TIME_SPEC.input_schema}
    ]
    assert "tool_choice" not in body


# --- tools ---------------------------------------------------------------------------------


async def test_a_tool_round_runs_the_tool_and_sends_the_result_back() -> None:
    tools = FixedTools()
    script: list[Scripted] = [
        tool_use("current_time", {}, say="Let me check.", input_tokens=30, output_tokens=15),
        text("It is noon.", input_tokens=50, output_tokens=5),
    ]
    async with claude_on(script) as (api, model):
        reply, deltas = await complete(model, ask("What time is it?", tools=(TIME_SPEC,)), tools)

    assert tools.ran == [("current_time", {})]
    assert reply.text == "Let me check.\n\nIt is noon."
    assert "".join(deltas) == reply.text
    assert reply.tool_calls == (ToolCall("current_time", {}, CLOCK),)
    assert (reply.tokens_in, reply.tokens_out) == (80, 20)
    first, second = api.requests
    assert second["messages"][0] == first["messages"][0] == {"role": "user", "content": "What time is it?"}
    assistant, results = second["messages"][1:]
    assert assistant["role"] == "assistant"
    said, use = assistant["content"]
    assert said == {"type": "text", "text": "Let me check."}
    assert use["type"] == "tool_use"
    assert (use["name"], use["input"]) == ("current_time", {})
    assert results == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": CLOCK}],
    }


async def test_a_failing_tool_goes_back_as_an_error_and_long_output_is_recorded_truncated() -> None:
    tools = FixedTools(
        {"current_time": "x" * 5000}, failing={"search_history": "give a query: the words to look for"}
    )
    script: list[Scripted] = [
        tool_use("search_history", {"query": ""}),
        tool_use("current_time", {}),
        text("Sorry, I could not search."),
    ]
    async with claude_on(script) as (api, model):
        reply, _ = await complete(model, ask("find it", tools=(TIME_SPEC, SEARCH_SPEC)), tools)

    failed, clock = reply.tool_calls
    assert failed == ToolCall("search_history", {"query": ""}, "give a query: the words to look for", True)
    assert clock.output == "x" * 2000
    assert not clock.is_error
    error_result = api.requests[1]["messages"][-1]["content"][0]
    assert error_result["is_error"] is True
    assert error_result["content"] == "give a query: the words to look for"
    assert api.requests[2]["messages"][-1]["content"][0]["content"] == "x" * 5000  # the model sees it all


async def test_tool_rounds_are_capped_and_the_last_request_forbids_tools() -> None:
    tools = FixedTools()
    script = [tool_use("current_time", {}) for _ in range(MAX_TOOL_ROUNDS + 1)]
    async with claude_on(script) as (api, model):
        reply, _ = await complete(model, ask("loop", tools=(TIME_SPEC,)), tools)

    assert MAX_TOOL_ROUNDS == 5
    assert len(tools.ran) == len(reply.tool_calls) == 5
    assert len(api.requests) == 6
    assert [body.get("tool_choice") for body in api.requests] == [None] * 5 + [{"type": "none"}]
    assert (reply.tokens_in, reply.tokens_out) == (60, 120)


# --- retries and errors --------------------------------------------------------------------


async def test_a_429_is_retried_and_the_answer_arrives() -> None:
    async with claude_on([error(429, retry_after="0"), text("Here you go.")]) as (api, model):
        reply, deltas = await complete(model, ask("hi"))

    assert reply.text == "".join(deltas) == "Here you go."
    assert len(api.requests) == 2
    assert api.requests[0] == api.requests[1]


async def test_an_overloaded_server_is_retried_then_succeeds() -> None:
    async with claude_on([error(529), error(500), text("Back.")], max_retries=2) as (api, model):
        reply, _ = await complete(model, ask("hi"))

    assert reply.text == "Back."
    assert len(api.requests) == 3


async def test_a_rejected_key_is_invalid_api_key_without_retrying() -> None:
    async with claude_on([error(401, message="invalid x-api-key")]) as (api, model):
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "invalid_api_key"
    assert "API key" in raised.value.reason
    assert len(api.requests) == 1


async def test_persistent_rate_limiting_is_rate_limited_after_retries() -> None:
    async with claude_on([error(429), error(429)], max_retries=1) as (api, model):
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "rate_limited"
    assert len(api.requests) == 2


async def test_persistent_overload_is_unavailable_after_retries() -> None:
    async with claude_on([error(529), error(529)], max_retries=1) as (api, model):
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "provider_unavailable"
    assert len(api.requests) == 2


async def test_a_refused_request_is_a_provider_error_with_the_reason() -> None:
    async with claude_on([error(400, message="max_tokens: too large")]) as (api, model):
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "provider_error"
    assert "max_tokens: too large" in raised.value.reason
    assert len(api.requests) == 1


async def test_an_error_in_the_middle_of_a_stream_is_unavailable() -> None:
    script = [text("Partial answer", error_after_deltas="overloaded_error")]
    async with claude_on(script) as (api, model):
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "provider_unavailable"
    assert len(api.requests) == 1  # the SDK does not retry a stream that has started


async def test_a_server_that_does_not_answer_in_time_is_unavailable() -> None:
    async with claude_on([Stall(seconds=0.5)], timeout=0.1, max_retries=0) as (api, model):
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "provider_unavailable"
    assert len(api.requests) == 1


async def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with claude(f"http://127.0.0.1:{port}", max_retries=0) as model:
        with pytest.raises(ModelUnavailable) as raised:
            await complete(model, ask("hi"))

    assert raised.value.code == "provider_unavailable"


async def test_the_fake_also_answers_without_streaming() -> None:
    script = [tool_use("current_time", {"tz": "UTC"}, say="Checking.")]
    async with (
        fake_anthropic(script) as api,
        anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=api.base_url) as client,
    ):
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "time?"}]
        )

    assert message.stop_reason == "tool_use"
    said, use = message.content
    assert said.type == "text"
    assert said.text == "Checking."
    assert use.type == "tool_use"
    assert (use.name, use.input) == ("current_time", {"tz": "UTC"})
    assert "stream" not in api.requests[0]


# --- the offline model ---------------------------------------------------------------------


async def test_offline_replies_are_deterministic_labelled_and_streamed() -> None:
    model = OfflineModel()
    request = ask("Can you summarise my week?")
    first, first_deltas = await complete(model, request)
    second, second_deltas = await complete(model, request)

    assert first == second
    assert first_deltas == second_deltas
    assert len(first_deltas) > 5
    assert "".join(first_deltas) == first.text
    assert first.offline
    assert first.model == model.name == "offline-1"
    assert "Can you summarise my week?" in first.text
    assert "offline assistant" in first.text  # it says what it is
    assert first.tool_calls == ()
    assert first.tokens_out == (len(first.text) + 3) // 4
    prompt = request.system + request.turns[0].text
    assert first.tokens_in == (len(prompt) + 3) // 4


async def test_offline_asks_the_clock_for_the_time() -> None:
    tools = FixedTools()
    reply, _ = await complete(OfflineModel(), ask("What time is it?"), tools)

    assert tools.ran == [("current_time", {})]
    assert reply.tool_calls == (ToolCall("current_time", {}, CLOCK),)
    assert CLOCK in reply.text


async def test_offline_does_not_use_a_tool_the_agent_lacks() -> None:
    tools = FixedTools(specs=(SEARCH_SPEC,))
    reply, _ = await complete(OfflineModel(), ask("What time is it?"), tools)

    assert tools.ran == []
    assert reply.tool_calls == ()


async def test_offline_searches_history_and_counts_the_hits() -> None:
    hits = json.dumps([{"from": "Ana", "text": "invoice sent"}, {"from": "Bo", "text": "invoice paid"}])
    tools = FixedTools({"search_history": hits})
    reply, _ = await complete(OfflineModel(), ask("search: invoice"), tools)

    assert tools.ran == [("search_history", {"query": "invoice"})]
    assert reply.tool_calls == (ToolCall("search_history", {"query": "invoice"}, hits),)
    assert 'for "invoice" and found 2 matching messages' in reply.text


async def test_offline_reports_a_failing_search() -> None:
    tools = FixedTools(failing={"search_history": "give a query: the words to look for"})
    reply, _ = await complete(OfflineModel(), ask("search:"), tools)

    (call,) = reply.tool_calls
    assert call.is_error
    assert "failed: give a query" in reply.text
