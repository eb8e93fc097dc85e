"""The web inbox: one HTML page and its static assets, using only the public API."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.static_files import create_static_files_router

WEB = Path(__file__).resolve().parent.parent / "web"


def page_headers(*, frameable: bool = False) -> dict[str, str]:
    """Our own script and styles only (the API is same-origin); no other site may frame the
    page, except the website-chat widget, which websites embed. Images may also be data URLs:
    the QR codes the API draws for linking WhatsApp."""
    policy = "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:"
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": policy if frameable else f"{policy}; frame-ancestors 'none'",
    }


@get("/", include_in_schema=False)
async def index() -> Response[bytes]:
    return Response(
        (WEB / "index.html").read_bytes(), media_type="text/html; charset=utf-8", headers=page_headers()
    )


@get("/sw.js", include_in_schema=False)
async def service_worker() -> Response[bytes]:
    """The service worker, from the root so its scope is the whole inbox: it shows push
    notifications and opens the inbox where a click says."""
    return Response(
        (WEB / "sw.js").read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": "default-src 'self'"},
    )


@get("/manifest.webmanifest", include_in_schema=False)
async def manifest() -> Response[bytes]:
    """What installing the inbox as an app reads: its name, colours and icons."""
    return Response(
        (WEB / "manifest.webmanifest").read_bytes(),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


static_router = create_static_files_router(path="/static", directories=[WEB])
