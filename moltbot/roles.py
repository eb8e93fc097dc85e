"""Process roles: the long-running parts of the product, each runnable on its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import structlog
import uvicorn
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from adapters.nats.connection import connection
from adapters.nats.event_store import EventStore
from adapters.nats.streams import StreamsFile
from domain.codec import EventCodec
from gateway.app import create_app
from gateway.auth import Tokens
from gateway.context import GatewayContext
from gateway.routes.accounts import CREDENTIALS_SQL
from projections.base import Projection
from projections.engine import ensure_core
from projections.worker import DEFAULT_BATCH, ProjectionWorker

log = structlog.get_logger()


class GatewayStartError(Exception):
    """The gateway could not start serving (usually: the port is taken)."""


async def run_projections(
    nats_url: str,
    database_url: str,
    spec: StreamsFile,
    projections: Sequence[Projection],
    *,
    batch_size: int = DEFAULT_BATCH,
) -> None:
    """Run one live worker per read model until cancelled."""
    template = spec.consumer_templates["projection"]
    codec = EventCodec()
    async with connection(nats_url, name="moltbot-projections") as nc, asyncio.TaskGroup() as tasks:
        for projection in projections:
            worker = ProjectionWorker(
                nc=nc,
                database_url=database_url,
                projection=projection,
                consumer_template=template,
                codec=codec,
                batch_size=batch_size,
            )
            tasks.create_task(worker.run(), name=worker.consumer)
        log.info("projections_running", read_models=[p.name for p in projections])


@contextlib.asynccontextmanager
async def gateway_context(nats_url: str, database_url: str, key_file: Path) -> AsyncIterator[GatewayContext]:
    """The gateway's connections: NATS, a PostgreSQL pool, the token signing key."""
    tokens = Tokens.from_pem_file(key_file)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # The role and schemas the gateway's queries run under (row-level security).
        await ensure_core(conn)  # type: ignore[arg-type]
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.gateway.schema'))")
            await conn.execute(CREDENTIALS_SQL)

    async def as_gateway_role(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SET ROLE moltbot_gateway")

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=10,
        open=False,
        configure=as_gateway_role,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
    )
    await pool.open()
    try:
        async with connection(nats_url, name="moltbot-gateway") as nc:
            yield GatewayContext(store=EventStore(nc), pool=pool, tokens=tokens)
    finally:
        await pool.close()


async def run_gateway(
    nats_url: str,
    database_url: str,
    *,
    key_file: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    started: asyncio.Event | None = None,
) -> None:
    """Serve the HTTP API until cancelled."""
    async with gateway_context(nats_url, database_url, key_file) as ctx:
        config = uvicorn.Config(
            create_app(ctx),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            # Event streams never end by themselves: give them this long, then close them.
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            # Bound here, not by uvicorn: it answers a taken port with sys.exit.
            listener.bind((host, port))
        except OSError as exc:
            listener.close()
            raise GatewayStartError(
                f"The gateway cannot listen on {host}:{port} ({exc.strerror})."
                " Choose another port with MOLTBOT_GATEWAY_PORT or --port."
            ) from None
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            while not server.started:
                if serving.done():
                    serving.result()
                    raise GatewayStartError(f"The gateway stopped while starting on {host}:{port}.")
                await asyncio.sleep(0.02)
            log.info("gateway_listening", url=f"http://{host}:{port}")
            if started is not None:
                started.set()
            await asyncio.shield(serving)
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
