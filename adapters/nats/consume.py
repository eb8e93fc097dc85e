"""A durable pull consumer read one message at a time, for workers whose effects are
per message (the outbox, connectors): handle, then ack — surviving NATS outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import nats.errors
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
    consumer restarts the pull after a backoff; unacked messages come back by ack_wait.
    """
    backoff = 0.2
    while True:
        pull = PullStream(nc, stream, consumer, batch=batch)
        try:
            await pull.start()
            while True:
                for msg in await pull.next_batch(1.0):
                    await handle(msg)
                    raise_if_cancelled()
                    backoff = 0.2
        except RECOVERABLE as exc:
            raise_if_cancelled()
            log.warning("consumer_restarting", stream=stream, consumer=consumer, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            with contextlib.suppress(Exception):
                await pull.close()
