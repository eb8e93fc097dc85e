"""Steady traffic for the fault suite, and a record of what the product accepted.

- Website visitors post to the tenant's webchat at a steady pace. A post that fails is
  retried with the same ``client_message_id`` until it is accepted, as the widget does;
  only a 202 counts as accepted.
- A second tenant's traffic is appended straight to the log (``moltbot.loadgen``
  events), each append retried until acknowledged; only acknowledged events count.
- A follower reads the webchat tenant's events over SSE with the product's own client,
  resuming after the last sequence it saw whenever the line drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog

from adapters.nats.event_store import EventStore
from domain import events as ev
from moltbot.client import Api, ClientError, Session

log = structlog.get_logger()


@dataclass
class Accepted:
    """What the product said yes to while the load ran."""

    visitor_messages: dict[str, str] = field(default_factory=dict)  # message id -> conversation id
    visitor_posts: list[dict[str, str]] = field(default_factory=list)  # the accepted bodies
    appended: dict[str, ev.Event] = field(default_factory=dict)  # event id -> event (direct appends)
    refused: int = 0  # posts or appends abandoned when the load stopped (never acknowledged)
    answers: Counter[int] = field(default_factory=Counter)  # statuses of the posts that failed


@dataclass
class Pace:
    visitors: int
    visitor_interval: float  # seconds between one visitor's messages
    appends_per_second: float


class Load:
    def __init__(
        self,
        gateway_url: str,
        widget_key: str,
        store: EventStore,
        direct: Iterator[ev.Event],
        pace: Pace,
    ) -> None:
        self._gateway_url = gateway_url
        self._widget_key = widget_key
        self._store = store
        self._direct = direct
        self._pace = pace
        self.accepted = Accepted()
        self._running = True
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._visitor(n)) for n in range(self._pace.visitors)]
        self._tasks.append(asyncio.create_task(self._appender()))

    async def stop(self) -> None:
        """Stop new work; wait for what is in flight to be accepted or abandoned."""
        self._running = False
        await asyncio.gather(*self._tasks)

    async def _visitor(self, n: int) -> None:
        token = f"vt_{secrets.token_urlsafe(18)}"
        sent = 0
        async with httpx.AsyncClient(base_url=self._gateway_url, timeout=5) as http:
            while self._running:
                sent += 1
                body = {
                    "text": f"Visitor {n} asks question {sent}: when do you open?",
                    "visitor_token": token,
                    "name": f"Visitor {n}",
                    "client_message_id": f"q{sent}",
                }
                await self._post_until_accepted(http, body)
                await asyncio.sleep(self._pace.visitor_interval)

    async def _post_until_accepted(self, http: httpx.AsyncClient, body: dict[str, str]) -> None:
        path = f"/v1/webchat/{self._widget_key}/messages"
        while True:
            try:
                response = await http.post(path, json=body)
                if response.status_code == 202:
                    answer = response.json()
                    self.accepted.visitor_messages[answer["message_id"]] = answer["conversation_id"]
                    self.accepted.visitor_posts.append(body)
                    return
                self.accepted.answers[response.status_code] += 1
            except httpx.TransportError:
                pass
            if not self._running:
                self.accepted.refused += 1
                return
            await asyncio.sleep(0.2)

    async def repeat_accepted(self, n: int) -> None:
        """Post ``n`` accepted messages again, as a widget retrying after a lost answer."""
        async with httpx.AsyncClient(base_url=self._gateway_url, timeout=5) as http:
            for body in self.accepted.visitor_posts[:n]:
                response = await http.post(f"/v1/webchat/{self._widget_key}/messages", json=body)
                assert response.status_code == 202, response.text
                assert response.json()["message_id"] in self.accepted.visitor_messages

    async def _appender(self) -> None:
        interval = 1 / self._pace.appends_per_second
        next_at = time.monotonic()
        for event in self._direct:
            if not self._running:
                return
            while True:
                try:
                    await self._store.append(event)
                    self.accepted.appended[event.id] = event
                    break
                except Exception as exc:
                    if not self._running:
                        self.accepted.refused += 1
                        return
                    log.debug("append_retry", error=repr(exc))
                    await asyncio.sleep(0.2)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


class Follower:
    """A client on ``/v1/events`` that resumes after the last event it saw."""

    def __init__(self, session: Session, work: Path) -> None:
        self._api = Api(session, work / "follower-session.json")
        self.seqs: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            try:
                async for seq, _ in self._api.events(since=self.seqs[-1] + 1 if self.seqs else 1, types=None):
                    self.seqs.append(seq)
            except ClientError as exc:  # e.g. 503 while the database restarts: resume
                log.info("follower_resuming", error=str(exc))
                await asyncio.sleep(0.5)

    async def wait_for(self, seq: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (not self.seqs or self.seqs[-1] < seq) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._api.__aexit__()
