"""Serving a local fake of a provider (an ASGI app) on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


@contextlib.asynccontextmanager
async def serving(app: Any, name: str, **options: Any) -> AsyncIterator[int]:
    """Serve ``app`` for the block's duration; yields its port. ``name`` says which fake
    failed to start; ``options`` are more ``uvicorn.Config`` settings (WebSockets…)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1, **options
    )
    server = uvicorn.Server(config)
    served = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if served.done():
                served.result()
                raise RuntimeError(f"the fake {name} stopped while starting")
            await asyncio.sleep(0.01)
        yield int(listener.getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await served
        listener.close()


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
