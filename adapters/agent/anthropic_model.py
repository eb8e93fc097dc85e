"""The :class:`domain.models.Model` port on Anthropic's Messages API.

One ``complete`` is a short conversation with the API: stream a message, forwarding each
text delta as it arrives; if it stops for ``tool_use``, run every requested tool through
the :class:`ToolRunner`, send the results back as the next user turn and stream again,
at most :data:`MAX_TOOL_ROUNDS` times. Tokens are summed over all the messages.

Retries of 429/5xx (honouring ``retry-after``) are the SDK's own (``max_retries``);
what is left after them is mapped once, here, to :class:`ModelUnavailable` with a code
the agent can record and a sentence a person can read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import structlog
from anthropic.types import (
    MessageParam,
    TextBlockParam,
    ToolChoiceParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
    ToolUseBlockParam,
)
from anthropic.types.parsed_message import ParsedMessage

from adapters.closing import ClosesOnExit
from domain.models import (
    ChatTurn,
    ModelReply,
    ModelRequest,
    ModelUnavailable,
    OnDelta,
    ToolCall,
    ToolFailed,
    ToolRunner,
    ToolSpec,
)

log = structlog.get_logger()

MAX_TOOL_ROUNDS = 5
MAX_RECORDED_OUTPUT = 2000  # characters of a tool's output kept on its ToolCall
_ROUND_SEPARATOR = "\n\n"  # between the text before a tool round and the text after it


class AnthropicModel(ClosesOnExit):
    """Claude through the official SDK, streaming and running tools."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "claude-sonnet-4-6",
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
    ) -> None:
        self.name = model
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, request: ModelRequest, tools: ToolRunner, on_delta: OnDelta) -> ModelReply:
        """Answer ``request``, streaming text through ``on_delta`` and running tools as needed."""
        with _unavailable_on_api_errors(request.model or self.name):
            return await self._converse(request, tools, on_delta)

    async def _converse(self, request: ModelRequest, tools: ToolRunner, on_delta: OnDelta) -> ModelReply:
        messages = to_messages(request.turns)
        text = _TextSoFar(on_delta)
        calls: list[ToolCall] = []
        tokens_in = tokens_out = 0
        answered_by = request.model or self.name
        for round_no in range(MAX_TOOL_ROUNDS + 1):
            last_round = round_no == MAX_TOOL_ROUNDS
            message = await self._stream(request, messages, text, tools_allowed=not last_round)
            tokens_in += message.usage.input_tokens
            tokens_out += message.usage.output_tokens
            answered_by = message.model
            log.info(
                "model_message_done",
                model=message.model,
                round=round_no,
                stop_reason=message.stop_reason,
                tokens_in=message.usage.input_tokens,
                tokens_out=message.usage.output_tokens,
            )
            uses = [block for block in message.content if isinstance(block, ToolUseBlock)]
            if message.stop_reason != "tool_use" or not uses or last_round:
                break
            results = [await _run_tool(tools, use, calls) for use in uses]
            messages.append({"role": "assistant", "content": _assistant_content(message)})
            messages.append({"role": "user", "content": results})
            text.new_round()
        return ModelReply(
            text=text.value,
            model=answered_by,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tool_calls=tuple(calls),
        )

    async def _stream(
        self,
        request: ModelRequest,
        messages: list[MessageParam],
        text: _TextSoFar,
        *,
        tools_allowed: bool,
    ) -> ParsedMessage[None]:
        declared = [to_tool_param(spec) for spec in request.tools]
        async with self._client.messages.stream(
            model=request.model or self.name,
            max_tokens=request.max_tokens,
            messages=messages,
            system=request.system or anthropic.omit,
            tools=declared or anthropic.omit,
            # On the last round the history still holds tool_use blocks, so the tools stay
            # declared, but the model must answer in text.
            tool_choice=_NO_TOOLS if declared and not tools_allowed else anthropic.omit,
        ) as stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    await text.add(event.delta.text)
            return await stream.get_final_message()


_NO_TOOLS: ToolChoiceParam = {"type": "none"}


class _TextSoFar:
    """The reply's text, forwarded delta by delta; rounds are separated by a blank line."""

    def __init__(self, on_delta: OnDelta) -> None:
        self._on_delta = on_delta
        self._parts: list[str] = []
        self._separate = False

    @property
    def value(self) -> str:
        return "".join(self._parts)

    def new_round(self) -> None:
        self._separate = bool(self._parts) and not self._parts[-1][-1:].isspace()

    async def add(self, delta: str) -> None:
        if not delta:
            return
        if self._separate:
            self._separate = False
            await self._emit(_ROUND_SEPARATOR)
        await self._emit(delta)

    async def _emit(self, delta: str) -> None:
        self._parts.append(delta)
        await self._on_delta(delta)


# --- mapping to the API ----------------------------------------------------------------


def to_messages(turns: Sequence[ChatTurn]) -> list[MessageParam]:
    """Turns as API messages: roles alternate (same-role runs merged), the first is a user's."""
    merged: list[tuple[str, list[str]]] = []
    for turn in _answerable(turns):
        if merged and merged[-1][0] == turn.role:
            merged[-1][1].append(turn.text)
        else:
            merged.append((turn.role, [turn.text]))
    if not merged:
        raise ValueError("A model request needs at least one user turn.")
    return [_message(role, "\n\n".join(texts)) for role, texts in merged]


def _answerable(turns: Sequence[ChatTurn]) -> Iterator[ChatTurn]:
    started = False
    for turn in turns:
        if not turn.text.strip():
            continue  # the API rejects empty text blocks
        started = started or turn.role == "user"
        if started:
            yield turn


def _message(role: str, text: str) -> MessageParam:
    if role == "assistant":
        return {"role": "assistant", "content": text}
    return {"role": "user", "content": text}


def to_tool_param(spec: ToolSpec) -> ToolParam:
    return {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema}


def _assistant_content(message: ParsedMessage[None]) -> list[TextBlockParam | ToolUseBlockParam]:
    content: list[TextBlockParam | ToolUseBlockParam] = []
    for block in message.content:
        if block.type == "text" and block.text:
            content.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return content


async def _run_tool(tools: ToolRunner, use: ToolUseBlock, calls: list[ToolCall]) -> ToolResultBlockParam:
    arguments: dict[str, Any] = dict(use.input)
    try:
        output, is_error = await tools.run(use.name, arguments), False
    except ToolFailed as exc:
        output, is_error = str(exc) or "The tool failed.", True
    log.info("model_tool_ran", tool=use.name, is_error=is_error, output_chars=len(output))
    calls.append(ToolCall(use.name, arguments, output[:MAX_RECORDED_OUTPUT], is_error))
    result: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": use.id, "content": output}
    if is_error:
        result["is_error"] = True
    return result


# --- errors ------------------------------------------------------------------------------


@contextlib.contextmanager
def _unavailable_on_api_errors(model: str) -> Iterator[None]:
    try:
        yield
    except anthropic.APIError as exc:
        unavailable = to_unavailable(exc, model)
        log.warning("model_unavailable", model=model, code=unavailable.code, error=type(exc).__name__)
        raise unavailable from exc


def to_unavailable(exc: anthropic.APIError, model: str) -> ModelUnavailable:
    """What an SDK error (after the SDK's retries) means for the person waiting."""
    if isinstance(exc, anthropic.AuthenticationError):
        return ModelUnavailable(
            "invalid_api_key", "Anthropic rejected the API key; check the key in the agent's settings."
        )
    if isinstance(exc, anthropic.RateLimitError):
        return ModelUnavailable(
            "rate_limited", "Anthropic is rate-limiting this API key; the assistant will try again later."
        )
    if isinstance(exc, anthropic.APIConnectionError):  # includes APITimeoutError
        return ModelUnavailable(
            "provider_unavailable", "Anthropic could not be reached or did not answer in time."
        )
    if _is_overloaded(exc):
        return ModelUnavailable(
            "provider_unavailable",
            "Anthropic is overloaded or failing right now; try again in a few minutes.",
        )
    detail = exc.api_message if isinstance(exc, anthropic.APIStatusError) and exc.api_message else exc.message
    return ModelUnavailable("provider_error", f"Anthropic refused the request for {model}: {detail}")


def _is_overloaded(exc: anthropic.APIError) -> bool:
    # A 5xx after retries, or an error event in the middle of a stream (HTTP 200).
    if isinstance(exc, anthropic.InternalServerError):
        return True
    return isinstance(exc, anthropic.APIStatusError) and exc.type in ("overloaded_error", "api_error")
