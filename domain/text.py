"""What text the read models can hold.

PostgreSQL text and jsonb cannot hold U+0000. The gateway refuses it at the door, but a
connector may carry it in from a channel, and the event log keeps what arrived. Where an
event is folded into a read model its NULs become U+FFFD (the replacement character), so
the message shows in the inbox instead of the whole event being refused.
"""

from __future__ import annotations

import re

# A JSON string's \u0000 escape: an odd run of backslashes (an even one is escaped backslashes).
# JSON has no other way to carry U+0000: control characters inside strings must be escaped.
JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def has_nul(raw_json: bytes) -> bool:
    return b"\\u0000" in raw_json and JSON_NUL.search(raw_json) is not None


def replace_nul(raw_json: bytes) -> bytes:
    """``raw_json`` with every U+0000 in its strings turned into U+FFFD."""
    if b"\\u0000" not in raw_json:
        return raw_json
    return JSON_NUL.sub(rb"\1\\ufffd", raw_json)
