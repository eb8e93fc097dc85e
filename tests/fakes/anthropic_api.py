"""A scripted fake of Anthropic's Messages API, served on 127.0.0.1.

The real ``anthropic`` SDK talks to it over HTTP, so tests exercise the SDK's request
building, SSE parsing, stream accumulation, retries and error classes, not a mock of
them. The test hands it a queue of responses, one per request, in order:

- :class:`TextReply`: a message with one text block, streamed as word-sized
  ``text_delta`` events (or returned as JSON when the request does not stream);
- :class:`ToolUseReply`: optional text, then ``tool_use`` blocks whose input arrives
  as ``input_json_delta`` pieces, stopping with ``tool_use``;
- :class:`ErrorReply`: an HTTP error status with Anthropic's error body (and a
  ``retry-after`` header, so the SDK retries at once);
- :class:`Stall`: no answer for a while, to make the client time out.

Every request body (and its headers) is recorded, in order, for assertions. A request
with nothing left in the queue gets a 400 that says so, which the SDK does not retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec

from tests.fakes.serving import serving

DEFAULT_MODEL = "claude-sonnet-4-6"
_WORD = re.compile(r"\S+\s*|\s+")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class TextReply(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    input_tokens: int = 10
    output_tokens: int | None = None  # None: about a token per four characters
    model: str = DEFAULT_MODEL
    stop_reason: str = "end_turn"
    error_after_deltas: str | None = None  # an error type sent as an SSE `error` event mid-stream
    delta_every: float = 0.0  # seconds between two streamed pieces (a model writing slowly)


class ToolUse(msgspec.Struct, frozen=True):
    name: str
    input: dict[str, Any]


class ToolUseReply(msgspec.Struct, frozen=True, kw_only=True):
    uses: tuple[ToolUse, ...]
    text: str = ""  # said before the tool calls, e.g. "Let me check."
    input_tokens: int = 10
    output_tokens: int = 20
    model: str = DEFAULT_MODEL


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    retry_after: str | None = "0"  # the header's value; None sends none
    message: str = "scripted error"


class Stall(msgspec.Struct, frozen=True, kw_only=True):
    seconds: float


Scripted = TextReply | ToolUseReply | ErrorReply | Stall

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def text(value: str, **options: Any) -> TextReply:
    return TextReply(text=value, **options)


def tool_use(name: str, arguments: dict[str, Any], *, say: str = "", **options: Any) -> ToolUseReply:
    return ToolUseReply(uses=(ToolUse(name, arguments),), text=say, **options)


def error(status: int, **options: Any) -> ErrorReply:
    return ErrorReply(status=status, **options)


class FakeAnthropic:
    """The scripted server's state: what is left to answer and what was asked."""

    def __init__(self, script: Iterable[Scripted] = (), *, otherwise: Scripted | None = None) -> None:
        self.base_url = ""
        self.otherwise = otherwise  # the answer once the script is done (None: a 400 says so)
        self.requests: list[dict[str, Any]] = []  # the JSON bodies, in arrival order
        self.headers: list[dict[str, str]] = []
        self._script: deque[Scripted] = deque(script)
        self._ids = 0

    def add(self, *responses: Scripted) -> None:
        self._script.extend(responses)

    @property
    def remaining(self) -> int:
        return len(self._script)

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_fake{self._ids:04d}"

    # --- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        if scope["method"] != "POST" or scope["path"] != "/v1/messages":
            await _json(send, 404, _error_body("not_found_error", f"no route {scope['path']}"))
            return
        request = json.loads(body)
        self.requests.append(request)
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if not self._script and self.otherwise is not None:
            await self._answer(self.otherwise, request, send)
            return
        if not self._script:
            await _json(send, 400, _error_body("invalid_request_error", "fake_anthropic: script exhausted"))
            return
        await self._answer(self._script.popleft(), request, send)

    async def _answer(self, scripted: Scripted, request: dict[str, Any], send: Send) -> None:
        if isinstance(scripted, Stall):
            await asyncio.sleep(scripted.seconds)
            await _json(send, 500, _error_body("api_error", "stalled"))
        elif isinstance(scripted, ErrorReply):
            extra = {"retry-after": scripted.retry_after} if scripted.retry_after is not None else {}
            error_type = ERROR_TYPES.get(scripted.status, "api_error")
            await _json(send, scripted.status, _error_body(error_type, scripted.message), extra)
        elif request.get("stream"):
            await self._stream(scripted, send)
        else:
            await _json(send, 200, self._message(scripted))

    def _message(self, scripted: TextReply | ToolUseReply) -> dict[str, Any]:
        """The whole message, as the non-streaming API returns it."""
        blocks = [block for block, _ in self._blocks(scripted)]
        stop_reason = scripted.stop_reason if isinstance(scripted, TextReply) else "tool_use"
        usage = {"input_tokens": scripted.input_tokens, "output_tokens": _output_tokens(scripted)}
        head = _message_head(self._next_id("msg"), scripted.model, usage)
        return {**head, "content": blocks, "stop_reason": stop_reason}

    def _blocks(self, scripted: TextReply | ToolUseReply) -> list[tuple[dict[str, Any], list[str]]]:
        """Each content block (complete) with the deltas that build it."""
        blocks: list[tuple[dict[str, Any], list[str]]] = []
        if scripted.text:
            blocks.append(({"type": "text", "text": scripted.text}, _WORD.findall(scripted.text)))
        if isinstance(scripted, ToolUseReply):
            for use in scripted.uses:
                block = {
                    "type": "tool_use",
                    "id": self._next_id("toolu"),
                    "name": use.name,
                    "input": use.input,
                }
                blocks.append((block, _halves(json.dumps(use.input))))
        return blocks

    async def _stream(self, scripted: TextReply | ToolUseReply, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"request-id", b"req_fake")],
            }
        )
        usage = {"input_tokens": scripted.input_tokens, "output_tokens": 1}
        head = _message_head(self._next_id("msg"), scripted.model, usage)
        await _event(send, "message_start", {"message": {**head, "content": [], "stop_reason": None}})
        await _event(send, "ping", {})
        for index, (block, deltas) in enumerate(self._blocks(scripted)):
            every = scripted.delta_every if isinstance(scripted, TextReply) else 0.0
            await _stream_block(send, index, block, deltas, every)
            if isinstance(scripted, TextReply) and scripted.error_after_deltas:
                await _event(send, "error", _error_body(scripted.error_after_deltas, "scripted mid-stream"))
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        stop_reason = scripted.stop_reason if isinstance(scripted, TextReply) else "tool_use"
        await _event(
            send,
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": _output_tokens(scripted)},
            },
        )
        await _event(send, "message_stop", {})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _stream_block(
    send: Send, index: int, block: dict[str, Any], deltas: list[str], every: float = 0.0
) -> None:
    start: dict[str, Any]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        pieces = [{"type": "text_delta", "text": piece} for piece in deltas]
    else:
        start = {**block, "input": {}}
        pieces = [{"type": "input_json_delta", "partial_json": piece} for piece in deltas]
    await _event(send, "content_block_start", {"index": index, "content_block": start})
    for piece in pieces:
        await _event(send, "content_block_delta", {"index": index, "delta": piece})
        if every:
            await asyncio.sleep(every)
    await _event(send, "content_block_stop", {"index": index})


def _message_head(message_id: str, model: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_sequence": None,
        "usage": usage,
    }


def _output_tokens(scripted: TextReply | ToolUseReply) -> int:
    if scripted.output_tokens is not None:
        return scripted.output_tokens
    return max(1, len(scripted.text) // 4)


def _halves(value: str) -> list[str]:
    middle = len(value) // 2
    return [part for part in (value[:middle], value[middle:]) if part]


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fake"}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"request-id", b"req_fake")]
    raw += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _event(send: Send, name: str, data: dict[str, Any]) -> None:
    payload = json.dumps({"type": name, **data})
    frame = f"event: {name}\ndata: {payload}\n\n".encode()
    await send({"type": "http.response.body", "body": frame, "more_body": True})


@contextlib.asynccontextmanager
async def fake_anthropic(
    script: Iterable[Scripted] = (), *, otherwise: Scripted | None = None
) -> AsyncIterator[FakeAnthropic]:
    """Serve a :class:`FakeAnthropic` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeAnthropic(script, otherwise=otherwise)
    async with serving(fake, "Anthropic API") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake
