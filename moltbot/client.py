"""The CLI's API client: talks to the gateway like any other client.

The session (gateway URL and tokens) is kept in ``$XDG_CONFIG_HOME/moltbot/session.json``
(mode 0600); an expired access token is refreshed once, transparently. A refresh token
works once (the gateway rotates it), so the new one is saved at once, refreshes never run
side by side, and one another process already made (same session file) is taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import stamina
import structlog
from httpx_sse import EventSource, ServerSentEvent, SSEError, aconnect_sse

log = structlog.get_logger()


class ClientError(Exception):
    """The gateway said no, or could not be reached; the message says what to do."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the gateway answered
        self.code = code  # its error code ("not_caught_up", ...), when it gave one


class Session(msgspec.Struct):
    gateway_url: str
    access_token: str
    refresh_token: str
    tenant_id: str
    user_id: str
    email: str


def session_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "moltbot" / "session.json"


def load_session(path: Path) -> Session:
    if not path.exists():
        raise ClientError("Not logged in: run `moltbot login` first.")
    return msgspec.json.decode(path.read_bytes(), type=Session)


def save_session(path: Path, session: Session) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(msgspec.json.encode(session))


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    code = None
    try:
        body = response.json()
        code = body.get("error")
        message = f"{body.get('detail')} ({code})"
    except ValueError:
        message = response.text[:200]
    raise ClientError(
        f"{response.request.method} {response.request.url.path}: {response.status_code} {message}",
        status=response.status_code,
        code=code,
    )


class OtpRequired(ClientError):
    """The account has two-factor sign-in: log in again with its code."""


async def login(
    gateway_url: str, email: str, password: str, *, signup: bool = False, otp: str | None = None
) -> Session:
    path = "/v1/auth/signup" if signup else "/v1/auth/login"
    body: dict[str, str] = {"email": email, "password": password}
    if otp and not signup:
        body["otp"] = otp
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        try:
            response = await http.post(path, json=body)
        except httpx.TransportError as exc:
            raise ClientError(f"Cannot reach the gateway at {gateway_url}: {exc}") from None
    if response.status_code == 401 and response.json().get("error") == "otp_required":
        raise OtpRequired(response.json()["detail"])
    _raise_for(response)
    answer = response.json()
    return Session(
        gateway_url=gateway_url,
        access_token=answer["tokens"]["access_token"],
        refresh_token=answer["tokens"]["refresh_token"],
        tenant_id=answer["tenant_id"],
        user_id=answer["user_id"],
        email=email,
    )


class Api:
    """Authenticated calls; refreshes the access token once when it has expired."""

    def __init__(self, session: Session, path: Path) -> None:
        self.session = session
        self._path = path
        self._http = httpx.AsyncClient(base_url=session.gateway_url, timeout=30)
        self._refreshing = asyncio.Lock()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session.access_token}"}

    async def _refresh(self, expired_access_token: str) -> None:
        """Replace ``expired_access_token`` (and the refresh token) unless that is done already."""
        async with self._refreshing:
            if self.session.access_token != expired_access_token:
                return  # another call of this client refreshed while this one waited
            with contextlib.suppress(ClientError, OSError, msgspec.DecodeError):
                saved = load_session(self._path)
                ours = self.session
                if saved.user_id == ours.user_id and saved.refresh_token != ours.refresh_token:
                    self.session = saved  # another process refreshed: its tokens are the live ones
                    return
            await self._exchange_refresh_token()

    async def _exchange_refresh_token(self) -> None:
        response = await self._http.post(
            "/v1/auth/refresh", json={"refresh_token": self.session.refresh_token}
        )
        if not response.is_success:
            raise ClientError("The session has expired: run `moltbot login` again.")
        tokens = response.json()
        self.session.access_token = tokens["access_token"]
        self.session.refresh_token = tokens["refresh_token"]
        save_session(self._path, self.session)

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return await self._call("GET", path, params=query)

    async def post(self, path: str, body: Any, *, headers: dict[str, str] | None = None) -> Any:
        return await self._call("POST", path, json=body, extra_headers=headers or {})

    async def download(self, path: str, out: Path, on_bytes: Callable[[int, int | None], None]) -> int:
        """Save ``path``'s body to ``out`` (through ``out``.part, renamed once whole);
        ``on_bytes(received, total)`` as it comes. The number of bytes."""
        await self.get("/v1/me")  # an expired access token is refreshed here, before the long call
        partial = out.with_name(out.name + ".part")
        received = 0
        try:
            async with self._http.stream("GET", path, headers=self._headers(), timeout=None) as response:
                if not response.is_success:
                    await response.aread()
                    _raise_for(response)
                length = response.headers.get("content-length")
                with partial.open("wb") as handle:
                    async for chunk in response.aiter_bytes():
                        await asyncio.to_thread(handle.write, chunk)
                        received += len(chunk)
                        on_bytes(received, int(length) if length else None)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ClientError(f"Cannot reach the gateway at {self.session.gateway_url}: {exc}") from None
        partial.replace(out)
        return received

    async def put(self, path: str, body: Any) -> Any:
        return await self._call("PUT", path, json=body)

    async def _call(
        self, method: str, path: str, *, extra_headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        try:
            sent_token = self.session.access_token
            response = await self._http.request(
                method, path, headers=self._headers() | (extra_headers or {}), **kw
            )
            if response.status_code == 401 and response.json().get("error") == "token_expired":
                await self._refresh(sent_token)
                response = await self._http.request(
                    method, path, headers=self._headers() | (extra_headers or {}), **kw
                )
        except httpx.TransportError as exc:
            raise ClientError(f"Cannot reach the gateway at {self.session.gateway_url}: {exc}") from None
        _raise_for(response)
        return response.json()

    async def events(self, since: int | None, types: str | None) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """Follow ``/v1/events`` forever; after a disconnect, resume after the last event seen.

        Reconnects wait 0.5 s doubling to 5 s (stamina), started over once the gateway
        answers with an event stream; a stream that ends is the first failure of the next round.
        """
        last_seen = since - 1 if since else None
        stream_ended = False
        while True:
            async with contextlib.AsyncExitStack() as opened:
                source: EventSource | None = None
                async for attempt in stamina.retry_context(
                    on=(httpx.TransportError, _StreamEnded),
                    attempts=None,
                    timeout=None,
                    wait_initial=0.5,
                    wait_max=5.0,
                    wait_jitter=0.0,
                ):
                    with attempt:
                        if stream_ended:
                            stream_ended = False
                            raise _StreamEnded
                        try:
                            source = await opened.enter_async_context(self._event_source(last_seen, types))
                        except httpx.TransportError as exc:
                            log.info("events_reconnecting", after_seq=last_seen, error=str(exc))
                            raise
                assert source is not None
                try:
                    async for message in source.aiter_sse():
                        seq = _logged_seq(message, after=last_seen)
                        if seq is not None:
                            last_seen = seq
                            yield seq, message.json()
                except SSEError as exc:  # answered, but not with an event stream (a proxy's page?)
                    raise ClientError(f"{self.session.gateway_url} sent no event stream: {exc}") from None
                except httpx.TransportError as exc:
                    log.info("events_reconnecting", after_seq=last_seen, error=str(exc))
            stream_ended = True

    @contextlib.asynccontextmanager
    async def _event_source(self, last_seen: int | None, types: str | None) -> AsyncIterator[EventSource]:
        """``/v1/events`` answered with success (an expired access token refreshed on the way)."""
        while True:
            sent_token = self.session.access_token
            headers = self._headers()
            params: dict[str, str] = {}
            if last_seen is not None:
                headers["Last-Event-ID"] = str(last_seen)
            if types:
                params["types"] = types
            async with aconnect_sse(
                self._http,
                "GET",
                "/v1/events",
                params=params,
                headers=headers,
                timeout=httpx.Timeout(30, read=60),
            ) as source:
                response = source.response
                if response.status_code == 401:
                    await self._refresh(sent_token)
                    continue
                if not response.is_success:
                    await response.aread()
                    _raise_for(response)
                yield source
                return


class _StreamEnded(Exception):
    """The event stream ended (the gateway closed it): reconnect after a wait."""


def _logged_seq(message: ServerSentEvent, *, after: int | None) -> int | None:
    """The sequence of a logged event newer than ``after``; None for the rest: a keep-alive
    or a live agent delta, which set no id of their own (SSE repeats the last one)."""
    if not message.data or not message.id.isdigit():
        return None
    seq = int(message.id)
    return seq if after is None or seq > after else None
