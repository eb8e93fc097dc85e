"""Tokens and callers.

Access and refresh tokens are JWTs signed with Ed25519; each refresh token carries a unique
``jti`` so the server can keep its digest and accept it once. Both carry ``sid``, the
session (``gateway.sessions``) they belong to, so ending a session ends its access tokens
too (``gateway/context.py`` checks it on every request). Password hashes: ``gateway/passwords.py``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any, Final, Literal, cast

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import AsyncConnectionPool

from adapters.postgres import tenancy
from gateway.errors import ApiError
from projections import tenants_queries

Role = Literal["owner", "admin", "member"]
ROLES: Final = ("owner", "admin", "member")
TokenKind = Literal["access", "refresh"]


def token_digest(token: str) -> str:
    """What the server keeps of a refresh token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


async def member_role(pool: AsyncConnectionPool[Any], tenant_id: str, user_id: str) -> Role | None:
    """The user's role in the tenant from the members read model (read in a transaction
    confined to ``tenant_id``), or ``None`` when not a member."""
    async with tenancy.tenant_transaction(pool, tenant_id) as conn:
        role = await tenants_queries.member_role(conn, tenant_id, user_id)
    if role is None or role not in ROLES:
        return None
    return cast(Role, role)


class Caller(msgspec.Struct, frozen=True):
    """Who is calling: every query is scoped to ``tenant_id``."""

    user_id: str
    tenant_id: str
    role: Role
    session_id: str | None = None  # the sign-in these tokens belong to; None: an OIDC token
    # The EVENTS seq of the membership's event when the tokens were issued before the members
    # read model had it (a sign-up): until the read model reaches it, the role claimed stands.
    membership_seq: int = 0


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = 900


class Tokens:
    """Issues and verifies Ed25519-signed JWTs."""

    ISSUER = "moltbot"

    def __init__(
        self, private_key: Ed25519PrivateKey, *, access_ttl: int = 900, refresh_ttl: int = 30 * 86400
    ) -> None:
        self._private = private_key
        self._public = private_key.public_key()
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl

    @property
    def refresh_ttl(self) -> int:
        return self._refresh_ttl

    @classmethod
    def from_pem_file(cls, path: Path) -> Tokens:
        """Load the signing key, creating it (mode 0600) on first use."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)

    def issue(self, caller: Caller) -> TokenPair:
        return TokenPair(
            access_token=self._encode(caller, "access", self._access_ttl),
            refresh_token=self._encode(caller, "refresh", self._refresh_ttl),
            expires_in=self._access_ttl,
        )

    def _encode(self, caller: Caller, kind: TokenKind, ttl: int) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.ISSUER,
            "sub": caller.user_id,
            "tid": caller.tenant_id,
            "role": caller.role,
            "typ": kind,
            "iat": now,
            "exp": now + ttl,
        }
        if caller.session_id is not None:
            claims["sid"] = caller.session_id
        if caller.membership_seq:
            claims["mseq"] = caller.membership_seq
        if kind == "refresh":  # unique, so two refreshes in one second still differ
            claims["jti"] = secrets.token_urlsafe(16)
        return jwt.encode(claims, self._private, algorithm="EdDSA")

    def verify(self, token: str, kind: TokenKind = "access") -> Caller:
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["EdDSA"],
                issuer=self.ISSUER,
                options={"require": ["exp", "iat", "sub", "tid", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(
                401, "token_expired", "The token has expired: log in again or refresh it."
            ) from None
        except jwt.PyJWTError as exc:
            raise ApiError(401, "invalid_token", f"The token is not valid: {exc}.") from None
        if claims.get("typ") != kind:
            raise ApiError(401, "invalid_token", f"Expected an {kind} token.")
        return Caller(
            user_id=claims["sub"],
            tenant_id=claims["tid"],
            role=claims.get("role", "member"),
            session_id=claims.get("sid"),
            membership_seq=int(claims.get("mseq", 0)),
        )
