"""A durable pull consumer read one message at a time, for workers whose effects are
per message (the outbox, connectors): handle, then ack — surviving NATS outages."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable

import nats.errors
import stamina
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError

from adapters.nats.errors import EventStoreError
from adapters.nats.pull import ConsumerGone, PullStream, raise_if_cancelled

log = structlog.get_logger()

RECOVERABLE = (
    nats.errors.Error,
    APIError,
    EventStoreError,
    ConsumerGone,
    ConnectionError,
    asyncio.TimeoutError,
)

Handler = Callable[[Msg], Awaitable[None]]


async def consume(nc: Client, stream: str, consumer: str, handle: Handler, *, batch: int = 100) -> None:
    """Feed every message of ``stream``/``consumer`` to ``handle`` until cancelled.

    ``handle`` acks (or naks, or terms) each message itself. A NATS outage or a deleted
    consumer restarts the pull after a backoff (stamina: 0.2 s doubling to 5 s, never giving
    up) that starts over once a message is handled; unacked messages come back by ack_wait.
    """
    pull: PullStream | None = None
    batch_left: collections.deque[Msg] = collections.deque()
    try:
        while True:  # a retry context per batch (or, after a restart, per message) handled
            async for attempt in stamina.retry_context(
                on=RECOVERABLE, attempts=None, timeout=None, wait_initial=0.2, wait_max=5.0, wait_jitter=0.0
            ):
                with attempt:
                    try:
                        if pull is None:
                            pull = PullStream(nc, stream, consumer, batch=batch)
                            await pull.start()
                        while not batch_left:
                            batch_left.extend(await pull.next_batch(1.0))
                            raise_if_cancelled()  # a pull request (a publish) can swallow it
                        while batch_left:
                            await handle(batch_left.popleft())
                            raise_if_cancelled()
                            if attempt.num > 1:
                                break  # a message handled after a restart: the backoff starts over
                    except RECOVERABLE as exc:
                        raise_if_cancelled()
                        log.warning("consumer_restarting", stream=stream, consumer=consumer, error=repr(exc))
                        batch_left.clear()  # unacked: redelivered after ack_wait
                        await _close(pull)
                        pull = None
                        raise
    finally:
        await _close(pull)


async def _close(pull: PullStream | None) -> None:
    if pull is not None:
        with contextlib.suppress(Exception):
            await pull.close()
