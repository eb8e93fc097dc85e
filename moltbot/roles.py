"""Process roles: the long-running parts of the product, each runnable on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from adapters.nats.connection import connection
from adapters.nats.streams import StreamsFile
from domain.codec import EventCodec
from projections.base import Projection
from projections.worker import ProjectionWorker

log = structlog.get_logger()


async def run_projections(
    nats_url: str,
    database_url: str,
    spec: StreamsFile,
    projections: Sequence[Projection],
    *,
    batch_size: int = 1000,
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
