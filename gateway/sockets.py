"""What the API's WebSocket and the website chat's share: sends serialized and bounded in
time, and a close with a code and a reason that the client is told before it goes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect


class Closed(Exception):
    """Ends a socket with ``code``; the farewell frame and the close carry ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Outbox:
    """Serializes a socket's sends (several tasks write to it) and bounds each one in time:
    a client that does not read for ``send_timeout`` seconds is closed with code 4008."""

    def __init__(self, socket: WebSocket[Any, Any, Any], send_timeout: float) -> None:
        self._socket = socket
        self._send_timeout = send_timeout
        self._lock = asyncio.Lock()

    async def send(self, message: bytes | str) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[bytes | str]) -> None:
        """Frames in order, none of another task's between them; each within the timeout."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                async with asyncio.timeout(None) as deadline:
                    for message in messages:
                        deadline.reschedule(loop.time() + self._send_timeout)
                        await self._socket.send_text(
                            message if isinstance(message, str) else message.decode()
                        )
            except TimeoutError:
                raise Closed(4008, f"client did not read for {self._send_timeout:.0f}s") from None


def error_frame(error: str, detail: str) -> str:
    return json.dumps({"op": "error", "error": error, "detail": detail})


@contextlib.asynccontextmanager
async def closing_with_reason(
    socket: WebSocket[Any, Any, Any], farewell_timeout: float
) -> AsyncIterator[None]:
    """Around a socket's conversation: :class:`Closed` ends it with an error frame and a
    close naming the reason; a client that went away ends it quietly."""
    try:
        yield
    except* Closed as closed:
        reason = closed.exceptions[0]
        assert isinstance(reason, Closed)
        # Bounded too: a client that does not read would hold the farewell (and its handler)
        # forever; past the bound the server drops the connection.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(farewell_timeout):
                await socket.send_text(error_frame("closed", reason.reason))
                await socket.close(code=reason.code, reason=reason.reason[:120])
    except* (WebSocketDisconnect, ConnectionError):
        pass
