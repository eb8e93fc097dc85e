"""Opening a NATS connection with the options every role shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import structlog
from nats.aio.client import Client

log = structlog.get_logger()


def server_urls(url: str) -> list[str]:
    """The servers of a URL that may name several, comma-separated (one per cluster node)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, *, name: str = "moltbot") -> Client:
    """Connect with unbounded reconnects: a nats-server restart is a pause, not an error.

    ``url`` may list a cluster's nodes, comma-separated; the client fails over between them.
    """

    client: list[Client] = []

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def on_disconnected() -> None:
        if client and not (client[0].is_closed or client[0].is_draining):
            log.warning("nats_disconnected", name=name)

    async def on_reconnected() -> None:
        log.info("nats_reconnected")

    nc = await nats.connect(
        servers=server_urls(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    client.append(nc)
    return nc


@asynccontextmanager
async def connection(url: str, *, name: str = "moltbot") -> AsyncIterator[Client]:
    nc = await connect(url, name=name)
    try:
        yield nc
    finally:
        # close, not drain: nats-py's drain waits up to 30 s for subscriptions and swallows
        # a cancellation meanwhile. Nothing is lost: every append was acked before this
        # point, and unacked deliveries are redelivered to the next consumer.
        await nc.close()
