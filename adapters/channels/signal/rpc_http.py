"""signal-cli's JSON-RPC over its HTTP daemon (``signal-cli daemon --http``): each request is
``POST /api/v1/rpc``, and the ``receive`` notifications come as server-sent events from
``GET /api/v1/events`` (``event: receive``, ``data:`` the notification's params; a comment
line every 15 s keeps the stream alive)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from adapters.channels.signal.rpc import REQUEST_TIMEOUT, Closed, OnNotification, answer_of, request_line

EVENTS_SILENCE = 60.0  # seconds without even a keep-alive before the stream counts as gone


class HttpRpc:
    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._ids = itertools.count(1)

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, within: float | None = REQUEST_TIMEOUT
    ) -> bytes:
        body = request_line(method, params, next(self._ids))
        try:
            answer = await self._http.post(
                f"{self._base}/api/v1/rpc", content=body, headers={"Content-Type": "application/json"},
                timeout=httpx.Timeout(10.0, read=within),
            )  # fmt: skip
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"signal-cli did not answer {method}") from exc
        except httpx.HTTPError as exc:
            raise Closed(f"signal-cli at {self._base}: {exc}") from exc
        if answer.status_code == 201:  # nothing to answer
            return b"null"
        if answer.status_code != 200:
            raise Closed(f"signal-cli at {self._base} answered {answer.status_code} to {method}")
        return answer_of(answer.content)

    async def pump(self, on_notification: OnNotification) -> None:
        url = f"{self._base}/api/v1/events"
        try:
            async with aconnect_sse(
                self._http, "GET", url, timeout=httpx.Timeout(10.0, read=EVENTS_SILENCE)
            ) as source:
                if source.response.status_code != 200:
                    raise Closed(
                        f"signal-cli at {self._base} answered {source.response.status_code} for events"
                    )
                async for event in source.aiter_sse():
                    if event.event == "receive" and event.data:
                        await on_notification("receive", event.data.encode())
        except httpx.HTTPError as exc:
            raise Closed(f"signal-cli at {self._base}: {exc!r}") from exc
        raise Closed(f"signal-cli at {self._base} ended its events")
