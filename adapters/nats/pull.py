"""Reading a JetStream pull consumer as a stream of batches, at wire speed.

nats-py's ``fetch`` waits for each message of a batch in turn and issues a new pull
request only when asked, which caps replay at ~18k messages/s. Here one subscription
callback buffers deliveries and keeps pull requests ahead of the reader: whenever
fewer than one batch is requested-but-undelivered plus buffered, another batch is
requested. Memory stays bounded (at most ~two batches buffered), the reader takes
whatever has arrived, and a request lost to a server restart is re-issued once it has
been silent longer than its expiry.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger()

_STATUS = "Status"
_PENDING_MESSAGES = "Nats-Pending-Messages"


def ack_position(reply: str) -> tuple[int, int]:
    """(stream sequence, messages still pending) from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` or the
    newer form with domain and account hash after ``ACK`` and a random token at the end.
    Cheaper than nats-py's ``Msg.metadata``, which builds several objects per message.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    return int(tokens[7]), int(tokens[10])


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed.

    nats-py's publish path catches ``CancelledError`` while it waits for its flusher (and
    drops it); every publish (an ack, a pull request) can eat a cancellation. The task
    still counts the request, so loops check here and stop as they were asked to.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ConsumerGone(Exception):
    """The consumer was deleted (or replaced) while being read."""


class PullStream:
    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        *,
        batch: int = 1000,
        expires: float = 5.0,
    ) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._batch = batch
        self._expires = expires
        self._buffer: collections.deque[Msg] = collections.deque()
        self._arrived = asyncio.Event()
        self._outstanding = 0
        self._last_heard = time.monotonic()
        self._error: Exception | None = None
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._reconnects = nc.stats["reconnects"]

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        await self._request()
        raise_if_cancelled()  # the subscribe and the pull request are publishes

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def next_batch(self, timeout: float) -> list[Msg]:  # noqa: ASYNC109 - idle wait, not a deadline
        """Up to one batch of messages; waits at most ``timeout`` for the first one."""
        raise_if_cancelled()
        if not self._buffer:
            self._arrived.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that lands as the wait completes, and the reader never stops.
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()
            except TimeoutError:
                await self._reissue_if_silent()
        if self._error is not None:
            raise self._error
        size = min(len(self._buffer), self._batch)
        batch = [self._buffer.popleft() for _ in range(size)]
        await self._top_up()
        return batch

    async def _on_message(self, msg: Msg) -> None:
        self._last_heard = time.monotonic()
        headers = msg.headers
        if headers and _STATUS in headers and not msg.data:
            self._on_status(headers)
        else:
            self._outstanding -= 1
            self._buffer.append(msg)
            self._arrived.set()
        await self._top_up()

    def _on_status(self, headers: dict[str, str]) -> None:
        status = headers.get(_STATUS, "")
        description = headers.get("Description", "")
        if status in ("404", "408"):
            # The request ended; these many of it will never be delivered.
            undelivered = int(headers.get(_PENDING_MESSAGES, "0") or 0)
            self._outstanding = max(self._outstanding - undelivered, 0)
        elif status == "409":
            if "Consumer Deleted" in description or "push based" in description:
                self._error = ConsumerGone(description)
                self._arrived.set()
            else:  # leadership change, max waiting...: start the request window afresh
                self._outstanding = 0
        # 100 = idle heartbeat: only proves the server is there.

    async def _top_up(self) -> None:
        if self._sub is not None and self._outstanding + len(self._buffer) < self._batch:
            await self._request()

    async def _request(self) -> None:
        body = {"batch": self._batch, "expires": int(self._expires * 1e9)}
        self._outstanding += self._batch
        await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=self._inbox)

    async def _reissue_if_silent(self) -> None:
        # After a server restart the requests we count as outstanding no longer exist:
        # re-issue at once after a reconnect, else once they would have expired.
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects or time.monotonic() - self._last_heard > self._expires + 1.0:
            self._reconnects = reconnects
            log.info("pull_requests_reissued", subject=self._next_subject)
            self._outstanding = 0
            self._last_heard = time.monotonic()
            await self._request()
