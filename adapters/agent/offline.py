"""The built-in offline model: answers without a network or an API key.

It lets a new inbox show the whole agent path (a run, streamed text, tool calls, token
accounting) before anyone has connected Anthropic, and gives tests a model whose
answers are a pure function of the request: the same request always gets the same
reply, delivered in the same word-sized deltas. Its replies are labelled ``offline``.

Two phrasings exercise the tools deterministically: a question about the time (it
contains "time" and a "?") calls ``current_time``, and a turn starting with
``search:`` calls ``search_history`` with the rest as the query.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
import structlog

from domain.agent import unwrapped
from domain.models import (
    OFFLINE_MODEL,
    ChatTurn,
    ModelReply,
    ModelRequest,
    OnDelta,
    ToolCall,
    ToolFailed,
    ToolRunner,
)

log = structlog.get_logger()

MAX_RECORDED_OUTPUT = 2000  # characters of a tool's output kept on its ToolCall
_QUOTE_LIMIT = 120  # characters of the question repeated back
_SEARCH_PREFIX = "search:"
_CHUNK = re.compile(r"\S+\s*|\s+")  # a word with the space after it; joins back to the text
_SIGN_OFF = (
    "I'm the offline assistant, so this is only a placeholder answer until a language model is connected."
)


class OfflineModel:
    """A deterministic stand-in for a language model (a ``domain.models.Model``)."""

    def __init__(self) -> None:
        self.name = OFFLINE_MODEL

    async def complete(self, request: ModelRequest, tools: ToolRunner, on_delta: OnDelta) -> ModelReply:
        question = _last_user_text(request.turns)
        calls: list[ToolCall] = []
        finding = await _use_tools(question, tools, calls)
        text = _compose(question, finding)
        for chunk in _CHUNK.findall(text):
            await on_delta(chunk)
            await asyncio.sleep(0)  # let the listener run between deltas, like a real stream
        prompt = request.system + "".join(turn.text for turn in request.turns)
        log.info("model_message_done", model=OFFLINE_MODEL, tool_calls=len(calls))
        return ModelReply(
            text=text,
            model=OFFLINE_MODEL,
            tokens_in=estimate_tokens(prompt),
            tokens_out=estimate_tokens(text),
            tool_calls=tuple(calls),
            offline=True,
        )


def estimate_tokens(text: str) -> int:
    """About four characters a token, as for English with Claude's tokenizer."""
    return (len(text) + 3) // 4


def _last_user_text(turns: tuple[ChatTurn, ...]) -> str:
    return next((unwrapped(turn.text).strip() for turn in reversed(turns) if turn.role == "user"), "")


def asks_for_time(question: str) -> bool:
    return "time" in question.lower() and "?" in question


async def _use_tools(question: str, tools: ToolRunner, calls: list[ToolCall]) -> str | None:
    """One sentence about what a tool said, or None when the question needs no tool."""
    available = {spec.name for spec in tools.specs()}
    if question.lower().startswith(_SEARCH_PREFIX) and "search_history" in available:
        query = question[len(_SEARCH_PREFIX) :].strip()
        call = await _run(tools, "search_history", {"query": query}, calls)
        if call.is_error:
            return f"I tried to search your history but it failed: {call.output}"
        count = count_results(call.output)
        noun = "message" if count == 1 else "messages"
        return f'I searched your history for "{query}" and found {count} matching {noun}.'
    if asks_for_time(question) and "current_time" in available:
        call = await _run(tools, "current_time", {}, calls)
        if call.is_error:
            return f"I tried to read the clock but it failed: {call.output}"
        return f"It is {call.output}."
    return None


async def _run(tools: ToolRunner, name: str, arguments: dict[str, Any], calls: list[ToolCall]) -> ToolCall:
    try:
        output, is_error = await tools.run(name, arguments), False
    except ToolFailed as exc:
        output, is_error = str(exc) or "The tool failed.", True
    call = ToolCall(name, arguments, output[:MAX_RECORDED_OUTPUT], is_error)
    calls.append(call)
    return call


def count_results(output: str) -> int:
    """How many hits a search returned: a JSON list (or {"results": [...]}), else its lines."""
    try:
        decoded = msgspec.json.decode(output)
    except msgspec.DecodeError:
        return sum(1 for line in output.splitlines() if line.strip())
    if isinstance(decoded, dict):
        decoded = decoded.get("results", [])
    return len(decoded) if isinstance(decoded, list) else 0


def _compose(question: str, finding: str | None) -> str:
    if not question:
        return f"Hello! {_SIGN_OFF}"
    parts = [f'Thanks for your message: "{_quote(question)}".']
    if finding is not None:
        parts.append(finding)
    parts.append(_SIGN_OFF)
    return " ".join(parts)


def _quote(question: str) -> str:
    flat = " ".join(question.split())
    if len(flat) <= _QUOTE_LIMIT:
        return flat
    return flat[: _QUOTE_LIMIT - 1].rstrip() + "…"
