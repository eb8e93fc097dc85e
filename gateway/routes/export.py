"""``GET /v1/export`` (owners): the inbox's own archive, a zip of JSON lines with its media
and a README (``gateway/export.py``), sent as it is written to a temporary file and
deleted once sent. ``moltbot export --out FILE`` downloads it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from litestar import Router, get
from litestar.di import Provide
from litestar.response import Stream

from gateway import export
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError

_READ = 1 << 20


@get("/export", cache=False)
async def export_inbox(ctx: Ctx, who: Who) -> Stream:
    """The inbox's archive: conversations, messages, contacts, agents, usage and media."""
    if who.role != "owner":
        raise ApiError(403, "forbidden", "Only the inbox's owners can export it.")
    await ctx.limiter.check(
        "exports_per_tenant", who.tenant_id, "Your inbox was exported several times just now."
    )
    folder = Path(tempfile.mkdtemp(prefix="moltbot-export-"))
    path = folder / "export.zip"
    try:
        async with ctx.tenant(who.tenant_id) as conn:
            await export.write_archive(conn, who.tenant_id, ctx.media, path)
    except BaseException:
        _remove(folder)
        raise
    name = f"moltbot-export-{datetime.now(UTC):%Y%m%d-%H%M%S}.zip"
    return Stream(
        _sent_then_removed(path),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(path.stat().st_size),
        },
    )


async def _sent_then_removed(path: Path) -> AsyncIterator[bytes]:
    try:
        with path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, _READ):
                yield chunk
    finally:
        _remove(path.parent)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


export_router = Router(
    path="/v1", route_handlers=[export_inbox], dependencies={"who": Provide(caller)}, tags=["inbox"]
)
