"""A local stand-in for signal-cli's JSON-RPC daemon (``signal-cli daemon``, 0.13.19): the
same wire format on a TCP port of 127.0.0.1, on a UNIX socket, and over HTTP.

- Lines of JSON-RPC 2.0 both ways; requests are worked on at once, each answered when done
  (``finishLink`` waits for the phone), so answers come in any order; ``receive``
  notifications are written on every connection between the answers.
- Multi-account mode (the default): ``version``, ``listAccounts``, ``startLink`` /
  ``finishLink``; ``send`` and ``getAttachment`` take an ``account`` (optional while the
  daemon has exactly one). With ``single=`` it is a daemon of one account: no
  ``listAccounts`` nor linking (``Method not implemented``), as ``signal-cli -a … daemon``.
- Errors as signal-cli writes them: ``{"jsonrpc":"2.0","error":{"code","message","data":null},"id"}``
  with its messages; a send no one got answers ``-1``/``-4``/``-5`` with the results in
  ``data.response``.
- HTTP (``--http``): ``POST /api/v1/rpc`` (415 without a JSON content type, 201 for a
  notification), ``GET /api/v1/events`` (server-sent ``receive`` events), ``GET /api/v1/check``.

The test is the phone and Signal together: :meth:`scan` a linking code, :meth:`deliver`
envelopes (``tests/fakes/signal_envelopes.py``), :meth:`unlink` the device, queue failures
for sends, read what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.serving import read_body, serving
from tests.fakes.signal_envelopes import Json, Person, address, notification

VERSION = "0.13.19"
TIMED_OUT = "Link request timed out, please try again."
SEND_NOT_EMPTY = (
    "Sending empty message is not allowed, either a message, attachment or sticker must be given."
)


class _Refusal(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass
class FakeSignal:
    single: str | None = None  # the one account of a single-account daemon
    accounts: dict[str, Person] = field(default_factory=dict)
    sent: list[Json] = field(default_factory=list)  # the params of each successful send
    requests: list[tuple[str, Json]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # attachment id -> its bytes
    link_failure: tuple[int, str] | None = None  # what startLink answers instead of a code
    # the errors the next sends answer: (code, message, the results of data.response)
    send_failures: list[tuple[int, str, list[Json] | None]] = field(default_factory=list)
    connections: int = 0  # connections made, over any transport
    # As Signal's servers do for a linked device that is offline: a message delivered while no
    # signal-cli is connected waits, and the next one to connect gets it (line transports).
    hold_while_away: bool = False
    _held: list[bytes] = field(default_factory=list)
    _links: dict[str, asyncio.Future[Person]] = field(default_factory=dict)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _events: set[asyncio.Queue[bytes]] = field(default_factory=set)
    _stamps: itertools.count[int] = field(default_factory=lambda: itertools.count(1_767_225_700_000, 1000))
    tcp_port: int = 0
    socket_path: str = ""
    http_port: int = 0

    def __post_init__(self) -> None:
        if self.single is not None:
            self.accounts[self.single] = Person(self.single, "5e1f0000-4444-4444-8444-444444444444")

    # --- what the test does ------------------------------------------------------------------

    @property
    def tcp_address(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def http_address(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def connected(self) -> int:
        """How many line connections (signal-cli programs) are open now."""
        return len(self._writers)

    async def waiting_link(self, timeout: float = 20.0) -> str:
        """The device link address a ``finishLink`` waits on, once one does."""
        async with asyncio.timeout(timeout):
            while True:
                waiting = [uri for uri, scanned in self._links.items() if not scanned.done()]
                if waiting and any(m == "finishLink" for m, _ in self.requests):
                    return waiting[-1]
                await asyncio.sleep(0.02)

    def scan(self, uri: str, person: Person) -> None:
        """The phone of ``person`` scans the code of ``uri``: its ``finishLink`` answers."""
        self._links[uri].set_result(person)

    def time_out_links(self) -> None:
        """Every waiting ``finishLink`` answers that the link timed out."""
        for waiting in self._links.values():
            if not waiting.done():
                waiting.set_exception(_Refusal(-1, TIMED_OUT))

    def unlink(self, number: str) -> None:
        """The phone removes this linked device: signal-cli drops the account."""
        self.accounts.pop(number, None)

    async def deliver(self, account: str, found: Json) -> None:
        """A ``receive`` notification of ``found`` to every connection (signal-cli's on-start mode)."""
        line = json.dumps(notification(account, found)).encode() + b"\n"
        if self.hold_while_away and not self._writers:
            self._held.append(line)
            return
        for writer in list(self._writers):
            with contextlib.suppress(ConnectionError):
                writer.write(line)
                await writer.drain()
        for queue in list(self._events):
            queue.put_nowait(json.dumps(notification(account, found)["params"]).encode())

    def fail_next_send(self, code: int, message: str, results: list[Json] | None = None) -> None:
        self.send_failures.append((code, message, results))

    def called(self, method: str) -> list[Json]:
        return [params for m, params in self.requests if m == method]

    # --- the methods -------------------------------------------------------------------------

    async def answer(self, request: Any) -> Json | None:
        """The answer to one request (None for a notification, which gets none)."""
        if not isinstance(request, dict):
            return _error(-32600, "Invalid request", None)
        request_id = request.get("id")
        method = request.get("method")
        if not isinstance(method, str):
            return _error(-32600, "method field must be set", request_id)
        params = request.get("params") or {}
        self.requests.append((method, dict(params)))
        try:
            result = await self._call(method, params)
        except _Refusal as refusal:
            return (
                None
                if request_id is None
                else _error(refusal.code, refusal.message, request_id, refusal.data)
            )
        return None if request_id is None else {"jsonrpc": "2.0", "result": result, "id": request_id}

    async def _call(self, method: str, params: Json) -> Any:
        if method == "version":
            return {"version": VERSION}
        if method in ("listAccounts", "startLink", "finishLink"):
            if self.single is not None:
                raise _Refusal(-32601, "Method not implemented")
            return await getattr(self, f"_{method}")(params)
        if method in ("send", "getAttachment"):
            account = self._account(params)
            return await getattr(self, f"_{method}")(account, params)
        raise _Refusal(-32601, "Method not implemented")

    def _account(self, params: Json) -> Person:
        if self.single is not None:
            return self.accounts[self.single]
        if params.get("account") is not None:
            found = self.accounts.get(params["account"])
            if found is None:
                raise _Refusal(-32602, "Specified account does not exist")
            return found
        if len(self.accounts) == 1:
            return next(iter(self.accounts.values()))
        raise _Refusal(-32602, "Method requires valid account parameter")

    async def _listAccounts(self, params: Json) -> Any:
        return [{"number": number} for number in self.accounts]

    async def _startLink(self, params: Json) -> Any:
        if self.link_failure is not None:
            raise _Refusal(*self.link_failure)
        uri = f"sgnl://linkdevice?uuid={secrets.token_urlsafe(16)}&pub_key={secrets.token_urlsafe(33)}"
        self._links[uri] = asyncio.get_running_loop().create_future()
        return {"deviceLinkUri": uri}

    async def _finishLink(self, params: Json) -> Any:
        uri = params.get("deviceLinkUri")
        if uri is None:
            raise _Refusal(-1, "Missing deviceLinkUri.")
        waiting = self._links.get(uri)
        if waiting is None:
            raise _Refusal(-1, "Unknown device link uri.")
        person = await asyncio.shield(waiting)
        assert person.number is not None
        self.accounts[person.number] = person
        return {"number": person.number}

    async def _send(self, account: Person, params: Json) -> Any:
        if not params.get("message") and not params.get("attachment") and not params.get("attachments"):
            raise _Refusal(-1, SEND_NOT_EMPTY)
        group = params.get("groupId")
        recipients = params.get("recipient") or []
        if isinstance(recipients, str):
            recipients = [recipients]
        stamp = next(self._stamps)
        if self.send_failures:
            code, message, results = self.send_failures.pop(0)
            data = {"response": {"timestamp": stamp, "results": results}} if results is not None else None
            raise _Refusal(code, message, data)
        self.sent.append(dict(params))
        targets = [
            Person(r if r.startswith("+") else None, r if not r.startswith("+") else "") for r in recipients
        ]
        results = [
            {"recipientAddress": address(p), **({"groupId": group} if group else {}), "type": "SUCCESS"}
            for p in targets or [account]
        ]
        return {"timestamp": stamp, "results": results}

    async def _getAttachment(self, account: Person, params: Json) -> Any:
        found = self.files.get(params.get("id", ""))
        if found is None:
            raise _Refusal(-1, f"Could not find attachment with ID: {params.get('id')}")
        return {"data": base64.b64encode(found).decode()}

    # --- the line transports -----------------------------------------------------------------

    async def serve_lines(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        held, self._held = self._held, []
        for line in held:
            writer.write(line)
        lock = asyncio.Lock()
        working: set[asyncio.Task[None]] = set()

        async def work(line: bytes) -> None:
            answer = await self._answer_line(line)
            if answer is not None:
                async with lock:
                    with contextlib.suppress(ConnectionError):
                        writer.write(json.dumps(answer).encode() + b"\n")
                        await writer.drain()

        try:
            while line := await reader.readline():
                task = asyncio.create_task(work(line))
                working.add(task)
                task.add_done_callback(working.discard)
        finally:
            self._writers.discard(writer)
            for task in working:
                task.cancel()
            writer.close()

    async def _answer_line(self, line: bytes) -> Json | None:
        if not line.strip():
            return _error(-32700, "Empty input line", None)
        try:
            request = json.loads(line)
        except ValueError as exc:
            return _error(-32700, str(exc), None)
        return await self.answer(request)

    # --- HTTP --------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/api/v1/check" and method == "GET":
            await _reply(send, 200, b"")
        elif path == "/api/v1/rpc" and method == "POST":
            kind = dict(scope["headers"]).get(b"content-type", b"")
            if not kind.startswith(b"application/json"):
                await _reply(send, 415, b"")
                return
            self.connections += 1
            answer = await self._answer_line(await read_body(receive))
            if answer is None:
                await _reply(send, 201, b"")
            else:
                await _reply(send, 200, json.dumps(answer).encode(), b"application/json")
        elif path == "/api/v1/events" and method == "GET":
            await self._event_stream(send)
        else:
            await _reply(send, 404, b"")

    async def _event_stream(self, send: Any) -> None:
        self.connections += 1
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._events.add(queue)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    await send({"type": "http.response.body", "body": b":\n", "more_body": True})
                    continue
                event = b"event:receive\ndata:" + data + b"\n\n"
                await send({"type": "http.response.body", "body": event, "more_body": True})
        finally:
            self._events.discard(queue)


def _error(code: int, message: str, request_id: Any, data: Any = None) -> Json:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": request_id}


async def _reply(send: Any, status: int, body: bytes, kind: bytes | None = None) -> None:
    headers = [(b"content-type", kind)] if kind else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def fake_signal(
    single: str | None = None, *, hold_while_away: bool = False
) -> AsyncIterator[FakeSignal]:
    """The fake daemon on a TCP port, a UNIX socket and an HTTP port of its own."""
    fake = FakeSignal(single=single, hold_while_away=hold_while_away)
    folder = Path(tempfile.mkdtemp(prefix="sig", dir="/tmp"))  # a socket path must stay short
    fake.socket_path = str(folder / "socket")
    tcp = await asyncio.start_server(fake.serve_lines, "127.0.0.1", 0)
    unix = await asyncio.start_unix_server(fake.serve_lines, fake.socket_path)
    fake.tcp_port = tcp.sockets[0].getsockname()[1]
    try:
        async with serving(fake, "signal-cli daemon") as http_port:
            fake.http_port = http_port
            yield fake
    finally:
        for server in (tcp, unix):
            server.close()
        for writer in list(fake._writers):
            writer.close()
        Path(fake.socket_path).unlink(missing_ok=True)
        folder.rmdir()
