"""Keeping one live session (a provider connection: long polling, a gateway socket) per
channel connection, across any number of connector replicas.

The manager lists the connections of its kind that should be live, and for each one
tries to hold its lease (``adapters/channels/leases.py``); the replica that holds it runs
the session and renews the lease, the others wait and take over if the holder dies.
A session that ends by itself (token revoked) is not restarted until the connection
changes; one that crashes is restarted after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from nats.js.kv import KeyValue

from adapters.channels.leases import TTL_SECONDS, Lease
from adapters.nats.pull import raise_if_cancelled

log = structlog.get_logger()

ListLive = Callable[[], Awaitable[set[str]]]  # ids of the connections that should be live
RunSession = Callable[[str], Coroutine[Any, Any, None]]  # runs one connection's session until it ends


class SessionManager:
    def __init__(
        self,
        kv: KeyValue,
        kind: str,
        holder: str,
        list_live: ListLive,
        run_session: RunSession,
        *,
        poll_every: float = 2.0,
        renew_every: float = TTL_SECONDS / 3,
    ) -> None:
        self._kv = kv
        self._kind = kind
        self._holder = holder
        self._list_live = list_live
        self._run_session = run_session
        self._poll_every = poll_every
        self._renew_every = renew_every
        self._holders: dict[str, asyncio.Task[None]] = {}
        self.running: set[str] = set()  # connections whose session runs here now

    async def run(self) -> None:
        try:
            while True:
                try:
                    live = await self._list_live()
                except Exception as exc:  # the database restarting, the read model not built yet
                    raise_if_cancelled()
                    log.warning("sessions_list_failed", kind=self._kind, error=repr(exc))
                    await asyncio.sleep(self._poll_every)
                    continue
                # The pool's wait for a connection can swallow a cancellation (the list comes
                # back, or fails, as if nothing happened): a stop asked for then is still a stop.
                raise_if_cancelled()
                for connection_id in live - self._holders.keys():
                    self._holders[connection_id] = asyncio.create_task(self._hold(connection_id))
                for connection_id in self._holders.keys() - live:
                    self._holders.pop(connection_id).cancel()
                await asyncio.sleep(self._poll_every)
        finally:
            for task in self._holders.values():
                task.cancel()
            await asyncio.gather(*self._holders.values(), return_exceptions=True)

    async def _hold(self, connection_id: str) -> None:
        lease = Lease(self._kv, f"{self._kind}.{connection_id}", self._holder)
        try:
            while True:
                acquired = await lease.acquire()
                raise_if_cancelled()  # a KV write can swallow the cancellation
                if acquired:
                    ended = await self._run_while_held(connection_id, lease)
                    if ended:
                        return  # the session ended by itself: wait for the connection to change
                await asyncio.sleep(self._renew_every)
        finally:
            await lease.release()

    async def _run_while_held(self, connection_id: str, lease: Lease) -> bool:
        """Run the session while the lease is renewed; True if the session ended by itself."""
        session = asyncio.create_task(self._run_session(connection_id))
        self.running.add(connection_id)
        try:
            while not session.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._renew_every):
                        await asyncio.shield(session)
                renewed = session.done() or await lease.renew()
                raise_if_cancelled()
                if not renewed:
                    return False  # another replica holds it now
            if session.exception() is not None:
                log.warning(
                    "session_crashed",
                    kind=self._kind,
                    connection_id=connection_id,
                    error=repr(session.exception()),
                )
                await lease.release()
                return False
            return True
        finally:
            self.running.discard(connection_id)
            session.cancel()
            with contextlib.suppress(BaseException):
                await session
