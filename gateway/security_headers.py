"""Response headers that close browser-side holes, on every HTTP answer (404s included).

- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere;
- ``X-Frame-Options: DENY`` (and the pages' ``frame-ancestors 'none'``) everywhere but the
  website-chat widget page, which websites embed in an iframe;
- ``Strict-Transport-Security`` when the gateway is reached over TLS (its public URL is
  https, or the request came in as https).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import Message, Scope

FRAMEABLE_PREFIX = "/webchat/"  # the widget page; its API lives under /v1/webchat
HSTS = "max-age=31536000; includeSubDomains"


def security_headers(*, https: bool) -> Callable[[Message, Scope], Awaitable[None]]:
    """A Litestar ``before_send`` hook adding the headers above (``https``: the public URL is)."""

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
            return
        headers = MutableScopeHeaders.from_message(message)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        if not scope["path"].startswith(FRAMEABLE_PREFIX):
            headers["X-Frame-Options"] = "DENY"
        if https or scope.get("scheme") == "https":
            headers["Strict-Transport-Security"] = HSTS

    return add_headers
