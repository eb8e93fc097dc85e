"""What the connector tests share: run a session for a block, read one tenant's log, and
wait for the log (or anything) to reach a state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from adapters.nats.event_store import EventStore
from domain import events as ev


class Runnable(Protocol):
    async def run(self) -> None: ...


@contextlib.asynccontextmanager
async def running(session: Runnable) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def tenant_events(store: EventStore, tenant_id: str) -> list[ev.Event]:
    return [stored.event async for stored in store.read_events(subject=f"ev.{tenant_id}.>")]


async def wait_for_events(
    store: EventStore, tenant_id: str, check: Callable[[list[ev.Event]], bool], timeout: float = 10.0
) -> list[ev.Event]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await tenant_events(store, tenant_id)
        if check(events):
            return events
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; the log has {[e.type for e in events]}")
        await asyncio.sleep(0.05)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def of(events: list[ev.Event], kind: type[ev.E]) -> list[ev.E]:
    return [e for e in events if isinstance(e, kind)]


def states(events: list[ev.Event]) -> list[tuple[str, str]]:
    return [(e.data.state, e.data.code) for e in of(events, ev.ConnectionStateChanged)]


def received(count: int) -> Callable[[list[ev.Event]], bool]:
    return lambda events: len(of(events, ev.MessageReceived)) >= count
