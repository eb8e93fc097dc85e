"""Requests carrying a NUL character are refused before any route sees them.

PostgreSQL text cannot hold U+0000: in a query parameter it would fail the gateway's own
SQL, and inside an appended event the read models would show it as U+FFFD
(domain/text.py), not what the client sent. A 400 that says so is the clearer answer.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from domain.text import has_nul
from gateway.errors import ApiError

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook: 400 when the path, query or JSON body holds a NUL."""
    query = request.scope["query_string"]
    in_url = "\x00" in request.scope["path"] or b"%00" in query or b"\x00" in query
    # The body is read once here and kept on the request for the route's own decoding.
    if in_url or (request.method in _WITH_BODY and has_nul(await request.body())):
        raise ApiError(400, "invalid_request", "Text cannot contain NUL (U+0000) characters.")
