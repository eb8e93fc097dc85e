"""Password hashes: argon2id, with the scrypt hashes of earlier releases still accepted.

New hashes are argon2id at the OWASP minimum (19 MiB, 2 passes, 1 lane): every concurrent
sign-in costs that much memory on a small replica, and sign-ins are rate-limited anyway. A
scrypt hash (``scrypt$n$r$p$salt$digest``) still verifies; :func:`needs_rehash` then tells
the caller to store a fresh argon2id hash of the password it has just checked.
Hashes live in ``gateway.credentials``, never in the event log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER: Final = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_SCRYPT_MAXMEM = 64 * 1024 * 1024

# Verified in place of a stored hash when the e-mail is unknown: the same argon2id work, so
# the answer's timing does not tell which addresses have an account. It matches nothing.
DUMMY_HASH: Final = _HASHER.hash("no account has this password: it is only ever compared")


def hash_password(password: str) -> str:
    """A new argon2id hash (``$argon2id$…``) of ``password``; 24 ms here (a check: 19 ms)."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (argon2id, or a legacy scrypt hash)."""
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` should be replaced by a fresh hash (scrypt, or weaker argon2 settings)."""
    if stored.startswith("scrypt$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, base64.b64decode(digest))
