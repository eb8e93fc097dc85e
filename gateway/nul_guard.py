"""Requests carrying a NUL character are refused before any route sees them.

PostgreSQL text cannot hold U+0000: in a query parameter it fails the gateway's own SQL
(a 500), and inside an appended event every read model that stores the text refuses it,
so a message would be accepted (202) and then never show in the inbox.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from gateway.errors import ApiError

# A JSON string's \u0000 escape: an odd run of backslashes (an even one is escaped backslashes).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook: 400 when the path, query or JSON body holds a NUL."""
    query = request.scope["query_string"]
    in_url = "\x00" in request.scope["path"] or b"%00" in query or b"\x00" in query
    # The body is read once here and kept on the request for the route's own decoding.
    if in_url or (request.method in _WITH_BODY and _JSON_NUL.search(await request.body())):
        raise ApiError(400, "invalid_request", "Text cannot contain NUL (U+0000) characters.")
