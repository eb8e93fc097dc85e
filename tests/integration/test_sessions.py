"""One live session per connection across replicas: two session managers on one
connection run it once; when the holder goes, the other takes over; a session that
ends by itself is not restarted."""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client

from adapters.channels.leases import BUCKET, Lease
from adapters.channels.sessions import SessionManager


async def _wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_two_replicas_run_one_session_and_hand_over(nc: Client) -> None:
    kv = await nc.jetstream().key_value(BUCKET)
    started: list[str] = []

    def manager(holder: str) -> SessionManager:
        async def live() -> set[str]:
            return {"cn_1"}

        async def session(connection_id: str) -> None:
            started.append(holder)
            await asyncio.Event().wait()  # a long-polling loop: runs until cancelled

        return SessionManager(kv, "telegram", holder, live, session, poll_every=0.05, renew_every=0.2)

    first, second = manager("replica-a"), manager("replica-b")
    tasks = {"replica-a": asyncio.create_task(first.run()), "replica-b": asyncio.create_task(second.run())}
    try:
        await _wait_for(lambda: len(started) == 1)
        await asyncio.sleep(1.0)  # several renewals later: still one
        assert len(started) == 1
        holder = started[0]
        assert (first.running | second.running) == {"cn_1"}
        tasks[holder].cancel()  # the holder stops (and lets go of the lease)
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[holder]
        await _wait_for(lambda: len(started) == 2)
        assert started[1] != holder
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_a_session_that_ends_by_itself_is_not_restarted(nc: Client) -> None:
    kv = await nc.jetstream().key_value(BUCKET)
    runs = 0

    async def live() -> set[str]:
        return {"cn_revoked"}

    async def session(connection_id: str) -> None:
        nonlocal runs
        runs += 1  # e.g. the provider revoked the token: reported, then the session stops

    manager = SessionManager(kv, "telegram", "replica-a", live, session, poll_every=0.05, renew_every=0.1)
    task = asyncio.create_task(manager.run())
    try:
        await _wait_for(lambda: runs == 1)
        await asyncio.sleep(0.8)
        assert runs == 1
        # The lease is free again for whoever reconnects the channel.
        other = Lease(kv, "telegram.cn_revoked", "replica-b")
        assert await other.acquire()
        await other.release()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_lease_cannot_be_taken_while_held_and_a_lost_one_does_not_renew(nc: Client) -> None:
    kv = await nc.jetstream().key_value(BUCKET)
    mine, theirs = Lease(kv, "slack.cn_2", "a"), Lease(kv, "slack.cn_2", "b")
    assert await mine.acquire()
    assert not await theirs.acquire()
    assert await mine.renew()
    await kv.purge("slack.cn_2")  # as if it had expired
    assert await theirs.acquire()
    assert not await mine.renew()  # lost: the holder must stop its session
    assert not mine.held
    await theirs.release()
