"""Sortable identifiers: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32).

Aggregate ids carry a short prefix naming what they identify (``t_`` tenant, ``c_``
conversation, ...), so an id read in a log or a subject says what it is.
"""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

TENANT = "t"
USER = "u"
CONNECTION = "cn"
CONVERSATION = "c"
MESSAGE = "m"
RUN = "r"
DEVICE = "d"
MEDIA = "md"
AGENT = "ag"
DRAFT = "dr"
FACT = "fa"  # a fact the agent remembers
FOLLOW_UP = "fu"
AWAY = "aw"  # an away period


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def ulid(at_ms: int | None = None, randomness: bytes | None = None) -> str:
    """A 26-character ULID; lexical order follows creation time (to the millisecond)."""
    ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    rand = os.urandom(10) if randomness is None else randomness
    return _encode(ms, 10) + _encode(int.from_bytes(rand, "big"), 16)


def new_id(prefix: str) -> str:
    """A new prefixed id such as ``c_01JD3V5W3Q8Z6Y1T0N4X2M7K9B``."""
    return f"{prefix}_{ulid()}"


def stable_id(prefix: str, key: str) -> str:
    """An id derived from a natural key: the same key always gives the same id.

    Used for inbound messages, whose identity is the provider's message id: a webhook
    retried after the duplicate window still lands on the same read-model row.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return f"{prefix}_{_encode(int.from_bytes(digest, 'big'), 26)}"


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp encoded in a ULID (prefixed or bare)."""
    body = value.rsplit("_", 1)[-1][:10]
    ms = 0
    for char in body:
        ms = ms * 32 + _ALPHABET.index(char)
    return ms
