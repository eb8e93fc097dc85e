"""A read model's batch committed, as a signal: every live checkpoint move sends
``NOTIFY moltbot_applied, '<read model> <last_seq>'`` (``projections/engine.py``, in the
batch's transaction, so it is delivered at its commit), and a waiter for ``?min_seq=`` or
the agent's catch-up wakes on it instead of polling the checkpoints.

The payloads tell a waiter when looking is pointless: while a notification said a read
model it waits for is still below the seq it needs, it waits for the next one without
reading the checkpoints. A read model not heard from since the listener (re)connected is
looked up; the checkpoints in PostgreSQL always have the last word.

One listening connection per process; each notification wakes every waiter, which then
reads the checkpoints once. The signal is only a hint: a waiter also looks again every
:data:`RECHECK` seconds, so a listener that lost its connection (it reconnects by itself)
slows waiters down and never misleads them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import psycopg
import structlog

from adapters.nats.pull import raise_if_cancelled

log = structlog.get_logger()

CHANNEL = "moltbot_applied"
RECHECK = 0.5  # seconds a waiter waits for a signal before it looks anyway
RECONNECT_PAUSE = 1.0


class AppliedSignal:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._moved = asyncio.Event()
        self._heard: dict[str, int] = {}  # read model → the highest live checkpoint notified
        self._task: asyncio.Task[None] | None = None

    def current(self) -> asyncio.Event:
        """The event the next checkpoint move sets: take it before looking at the checkpoints,
        then wait on it, and a move between the look and the wait is not missed."""
        return self._moved

    def may_have_applied(self, needed: Mapping[str, int]) -> bool:
        """False when a notification said one of the read models is below the seq it needs
        (read model → seq): looking at the checkpoints now would find it is not there yet."""
        return all(self._heard.get(name, seq) >= seq for name, seq in needed.items())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="applied-signal")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._heard.clear()  # what was notified while nobody listened is unknown
                    self._wake()
                    async for notify in conn.notifies():
                        self._hear(notify.payload)
                        self._wake()
            except psycopg.Error as exc:
                raise_if_cancelled()  # a listen cancelled mid-flight surfaces as a database error
                log.warning("applied_signal_reconnecting", error=type(exc).__name__)
                await asyncio.sleep(RECONNECT_PAUSE)

    def _hear(self, payload: str) -> None:
        name, _, seq = payload.partition(" ")
        if seq.isdigit():
            self._heard[name] = max(self._heard.get(name, 0), int(seq))

    def _wake(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
