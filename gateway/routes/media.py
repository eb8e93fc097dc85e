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
from projections import inbox_queries

_INLINE = ("image/jpeg", "image/png", "image/gif", "image/webp")


@get("/media/{media_id:str}")
async def media(ctx: Ctx, who: Who, media_id: FromPath[str]) -> Response[bytes]:
    """A photo or document from a conversation (``?access_token=`` works for <img>)."""
    async with ctx.tenant(who.tenant_id) as conn:
        stored = await inbox_queries.media_file(conn, who.tenant_id, media_id)
    content = (
        await ctx.media.get(stored.storage_key) if stored is not None and ctx.media is not None else None
    )
    if stored is None or content is None:
        raise ApiError(404, "not_found", f"No media {media_id} in your inbox.", field="id")
    inline = stored.mime in _INLINE
    return Response(
        content,
        media_type=stored.mime if inline else "application/octet-stream",
        headers={
            "Cache-Control": "no-store",  # a private attachment: kept by no cache
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline" if inline else f'attachment; filename="{media_id}"',
        },
    )


media_router = Router(
    path="/v1", route_handlers=[media], tags=["inbox"], dependencies={"who": Provide(caller)}
)
