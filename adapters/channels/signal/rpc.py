"""signal-cli's JSON-RPC 2.0 over a line stream: one JSON object per line, both ways, on the
daemon's UNIX socket or TCP port or on the standard input and output of ``signal-cli
jsonRpc``.

The daemon answers requests in any order (it works on several at once, and ``finishLink``
waits for a phone) and writes its ``receive`` notifications on the same stream, so one
reader (:meth:`LineRpc.pump`) routes each line: an ``id`` answers the request of that id, a
``method`` is a notification. A request made while nobody pumps waits for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
import structlog

log = structlog.get_logger()

REQUEST_TIMEOUT = 60.0  # seconds a request waits for its answer unless told otherwise
# A line can hold a whole attachment (getAttachment answers in base64): up to the media limit.
MAX_LINE_BYTES = 64 * 1024 * 1024

OnNotification = Callable[[str, bytes], Awaitable[None]]  # (method, its params' JSON)


class RpcError(Exception):
    """The daemon refused a request: signal-cli's error ``code`` (-1 user error, -3 I/O
    error, -4 untrusted identity, -5 rate limited; -326xx JSON-RPC's own), its ``message``,
    and its ``data`` (for a failed send, ``{"response": {"timestamp", "results"}}``)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code, self.message, self.data = code, message, data


class Closed(ConnectionError):
    """The daemon's stream ended (it stopped, or closed the connection)."""


class SignalRpc(Protocol):
    """A connection to signal-cli's daemon."""

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, within: float | None = REQUEST_TIMEOUT
    ) -> bytes:
        """The JSON of the answer's ``result``; :class:`RpcError` when the daemon refuses,
        :class:`Closed` when it went away, TimeoutError after ``within`` seconds (None: no limit)."""
        ...

    async def pump(self, on_notification: OnNotification) -> None:
        """Read the daemon until it goes away (then raise :class:`Closed`), answering requests
        and handing each notification to ``on_notification``, in order."""
        ...


class LineStream(Protocol):
    """Lines both ways (a socket, a process's pipes)."""

    async def read_line(self) -> bytes:
        """The next line with its newline; b"" when the stream ended."""
        ...

    async def write_line(self, line: bytes) -> None: ...


class _ErrorBody(msgspec.Struct, frozen=True):
    code: int
    message: str = ""
    data: Any = None


class _Incoming(msgspec.Struct, frozen=True):
    id: int | str | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    error: _ErrorBody | None = None


_incoming = msgspec.json.Decoder(_Incoming)
_encoder = msgspec.json.Encoder()


def request_line(method: str, params: Mapping[str, Any] | None, request_id: int) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        body["params"] = dict(params)
    return _encoder.encode(body) + b"\n"


def answer_of(raw: bytes) -> bytes:
    """The ``result`` JSON of one answer (an HTTP daemon's body); RpcError for an error."""
    incoming = _incoming.decode(raw)
    if incoming.error is not None:
        raise RpcError(incoming.error.code, incoming.error.message, incoming.error.data)
    return bytes(incoming.result) or b"null"


class LineRpc:
    def __init__(self, stream: LineStream, *, name: str = "signal-cli") -> None:
        self._stream = stream
        self._name = name
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._write_lock = asyncio.Lock()
        self._closed: Closed | None = None

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, within: float | None = REQUEST_TIMEOUT
    ) -> bytes:
        if self._closed is not None:
            raise self._closed
        request_id = next(self._ids)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        try:
            async with self._write_lock:
                try:
                    await self._stream.write_line(request_line(method, params, request_id))
                except OSError as exc:  # the daemon went away: as when reading finds it gone
                    raise Closed(f"{self._name}: {exc}") from None
            async with asyncio.timeout(within):
                return await answer
        finally:
            self._waiting.pop(request_id, None)

    async def pump(self, on_notification: OnNotification) -> None:
        try:
            while True:
                line = await self._stream.read_line()
                if not line:
                    raise Closed(f"{self._name} closed the connection")
                if not line.strip():
                    continue
                await self._route(line, on_notification)
        except (ConnectionError, OSError) as exc:
            closed = exc if isinstance(exc, Closed) else Closed(f"{self._name}: {exc}")
            self._fail_all(closed)
            raise closed from None
        except BaseException:
            self._fail_all(Closed(f"no longer reading {self._name}"))
            raise

    async def _route(self, line: bytes, on_notification: OnNotification) -> None:
        try:
            incoming = _incoming.decode(line)
        except msgspec.DecodeError as exc:  # not ours to fix: say so and read on
            log.warning("signal_rpc_unreadable", error=str(exc)[:200])
            return
        if incoming.method is not None:
            await on_notification(incoming.method, bytes(incoming.params) or b"null")
            return
        answer = self._waiting.get(incoming.id) if isinstance(incoming.id, int) else None
        if answer is None or answer.done():
            if incoming.error is not None:
                log.warning(
                    "signal_rpc_error_unasked", code=incoming.error.code, message=incoming.error.message
                )
            return
        if incoming.error is not None:
            answer.set_exception(RpcError(incoming.error.code, incoming.error.message, incoming.error.data))
        else:
            answer.set_result(bytes(incoming.result) or b"null")

    def _fail_all(self, closed: Closed) -> None:
        self._closed = closed
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(closed)
                with contextlib.suppress(BaseException):
                    answer.exception()  # retrieved: nobody may be waiting any more
