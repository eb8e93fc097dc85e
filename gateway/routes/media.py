"""Serving stored media (``GET /v1/media/{media_id}``) to the tenant it belongs to.

Images and other files are served with their recorded type, never sniffed, and anything
that is not an image downloads as an attachment rather than rendering in the page.
"""

from __future__ import annotations

from litestar import Response, Router, get
from litestar.di import Provide
from litestar.params import FromPath

from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError

_INLINE = ("image/jpeg", "image/png", "image/gif", "image/webp")


@get("/media/{media_id:str}")
async def media(ctx: Ctx, who: Who, media_id: FromPath[str]) -> Response[bytes]:
    """A photo or document from a conversation (``?access_token=`` works for <img>)."""
    async with ctx.tenant(who.tenant_id) as conn:
        cur = await conn.execute(
            "SELECT mime, storage_key FROM rm_inbox.media WHERE media_id = %s AND tenant_id = %s",
            (media_id, who.tenant_id),
        )
        row = await cur.fetchone()
    content = await ctx.media.get(row["storage_key"]) if row is not None and ctx.media is not None else None
    if row is None or content is None:
        raise ApiError(404, "not_found", f"No media {media_id} in your inbox.", field="id")
    inline = row["mime"] in _INLINE
    return Response(
        content,
        media_type=row["mime"] if inline else "application/octet-stream",
        headers={
            "Cache-Control": "no-store",  # a private attachment: kept by no cache
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline" if inline else f'attachment; filename="{media_id}"',
        },
    )


media_router = Router(
    path="/v1", route_handlers=[media], tags=["inbox"], dependencies={"who": Provide(caller)}
)
