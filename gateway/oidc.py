"""Access tokens from an external OpenID Connect identity provider.

Off unless configured (``MOLTBOT_OIDC_JWKS_URL``, ``MOLTBOT_OIDC_ISSUER``,
``MOLTBOT_OIDC_AUDIENCE``). When on, the gateway accepts — next to its own Ed25519
tokens — JWT access tokens signed by one of the keys the provider publishes at its JWKS
URL, issued by the configured issuer for the configured audience. Access tokens only: a
token whose ``typ`` header, or ``typ`` / ``token_use`` claim, names another kind (an ID
token, a refresh token) is refused, and so is one carrying an ID token's ``at_hash``.

Who the caller is comes from us, never from the token's claims: its ``(iss, sub)`` must be
linked to one of our users (``gateway.identities``), and the role is that user's role in
the members read model now. A signed-in user links an identity with
``POST /v1/me/identities`` (an access token of that identity, and the account's
password); a token of an identity nobody linked is ``401 identity_not_linked``.

Keys are fetched on first use and kept by ``kid``; a token naming a key the cache does
not hold makes the verifier fetch the set again, at most once per ``refetch_interval``
(30 s), so key rotation at the provider is picked up without a restart while a stream of
tokens with made-up key ids cannot turn the gateway into a load generator against it.

Every refusal is ``401 invalid_token`` with a detail saying what is wrong. A key set that
cannot be fetched (provider down, not JSON, no signing keys) is ``503 jwks_unavailable``
with ``Retry-After``: the token may well be good, the gateway just cannot check it now.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt
import msgspec
import structlog
from psycopg_pool import AsyncConnectionPool

from gateway.auth import Caller, Tokens, member_role
from gateway.errors import ApiError

log = structlog.get_logger()

IDENTITIES_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.identities (
    issuer    text NOT NULL,  -- the provider's 'iss'
    subject   text NOT NULL,  -- its 'sub' for the person
    user_id   text NOT NULL,  -- the user of ours the identity signs in as
    tenant_id text NOT NULL,
    linked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT ON gateway.identities TO moltbot_gateway;
"""

# The 'typ' header of a JWT access token (RFC 9068), or the generic one many providers send.
ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt", "jwt"})
# Claims some providers use to name a token's kind (Keycloak 'typ', Cognito 'token_use').
ACCESS_KIND_CLAIMS: Final = {"typ": frozenset({"bearer", "at+jwt"}), "token_use": frozenset({"access"})}
# Claims defined for ID tokens only (OpenID Connect Core 3.1.3.6, 3.3.2.11).
ID_TOKEN_CLAIMS: Final = ("at_hash", "c_hash")
# Public-key algorithms only: a JWKS is public, so a symmetric (HS*) key in it is no secret.
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_JWKS_BYTES: Final = 1024 * 1024
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class OidcConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Which provider to trust: its keys, its issuer, and the audience of its tokens for us."""

    jwks_url: str
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    leeway: float = 30.0  # seconds of clock difference tolerated on exp / nbf / iat
    refetch_interval: float = 30.0  # at most one JWKS fetch per this many seconds
    fetch_timeout: float = 5.0

    def __post_init__(self) -> None:
        url = urlsplit(self.jwks_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"The OIDC JWKS URL must be an https:// URL, not {self.jwks_url!r}.")
        if url.scheme == "http" and url.hostname not in _LOOPBACK:
            raise ValueError(
                f"The OIDC JWKS URL must use https (plain http only on loopback): {self.jwks_url!r}."
            )
        if not self.issuer:
            raise ValueError("OIDC needs the issuer its tokens carry in 'iss'.")
        if self.issuer == Tokens.ISSUER:
            raise ValueError(f"The OIDC issuer cannot be {Tokens.ISSUER!r}: that is the gateway's own.")
        if not self.audience:
            raise ValueError("OIDC needs the audience ('aud') its tokens are issued for.")
        unsupported = sorted(set(self.algorithms) - ASYMMETRIC_ALGORITHMS)
        if unsupported or not self.algorithms:
            raise ValueError(
                f"OIDC algorithms must be among {', '.join(sorted(ASYMMETRIC_ALGORITHMS))};"
                f" not {', '.join(unsupported) or 'none'}."
            )


def _invalid(detail: str) -> ApiError:
    return ApiError(401, "invalid_token", detail)


def _quoted(value: object, limit: int = 64) -> str:
    """A value from an unverified token, safe to echo in an error detail."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def peek_issuer(token: str) -> str | None:
    """The unverified ``iss`` of a JWT ("" when it has none); ``None`` when not a JWT.

    Only for routing a token to the verifier that can check it — never trust it.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else ""


class ExternalIdentity(msgspec.Struct, frozen=True):
    """A person at the identity provider: its ``iss`` and their ``sub`` there."""

    issuer: str
    subject: str


def check_access_token(header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    """Refuse, with ``401 invalid_token``, a token that says it is not an access token."""
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
        raise _invalid(f"The token's 'typ' header is {_quoted(typ)}: not an access token (at+jwt).")
    for claim, accepted in ACCESS_KIND_CLAIMS.items():
        kind = claims.get(claim)
        if kind is not None and (not isinstance(kind, str) or kind.lower() not in accepted):
            raise _invalid(f"The token's {claim!r} claim is {_quoted(kind)}: not an access token.")
    for claim in ID_TOKEN_CLAIMS:
        if claim in claims:
            raise _invalid(f"The token carries {claim!r}: it is an ID token, not an access token.")


def identity_from_claims(claims: Mapping[str, Any]) -> ExternalIdentity:
    """The identity verified claims name, or ``401 invalid_token`` for a bad ``sub``."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > 255:
        raise _invalid("The token's 'sub' claim must be a non-empty string of at most 255 characters.")
    return ExternalIdentity(issuer=str(claims["iss"]), subject=sub)


class IdentityLinks:
    """Which user of ours each linked external identity signs in as (``gateway.identities``)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def caller(self, identity: ExternalIdentity) -> Caller:
        """The linked user with their role now; 401 when not linked or no longer a member."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, tenant_id FROM gateway.identities WHERE issuer = %s AND subject = %s",
                (identity.issuer, identity.subject),
            )
            row: dict[str, Any] | None = await cur.fetchone()
        if row is None:
            raise not_linked(identity)
        role = await member_role(self._pool, row["tenant_id"], row["user_id"])
        if role is None:
            raise ApiError(
                401,
                "not_a_member",
                "This identity is linked to an account that is no longer a member of its inbox.",
            )
        return Caller(user_id=row["user_id"], tenant_id=row["tenant_id"], role=role)

    async def link(self, identity: ExternalIdentity, who: Caller) -> bool:
        """Link ``identity`` to ``who`` (again: a no-op); ``False`` when another user has it."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO gateway.identities (issuer, subject, user_id, tenant_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (issuer, subject) DO NOTHING RETURNING user_id",
                (identity.issuer, identity.subject, who.user_id, who.tenant_id),
            )
            if await cur.fetchone() is not None:
                return True
            cur = await conn.execute(
                "SELECT user_id FROM gateway.identities WHERE issuer = %s AND subject = %s",
                (identity.issuer, identity.subject),
            )
            row: dict[str, Any] | None = await cur.fetchone()
        return row is not None and row["user_id"] == who.user_id


def not_linked(identity: ExternalIdentity) -> ApiError:
    return ApiError(
        401,
        "identity_not_linked",
        f"The identity {_quoted(identity.subject)} of {_quoted(identity.issuer, 200)} is not linked to an"
        " inbox: sign in with e-mail and password and link it (POST /v1/me/identities).",
    )


class _FetchError(Exception):
    pass


class OidcVerifier:
    """Verifies access tokens against the provider's JWKS, fetched with httpx and cached by
    ``kid``, and maps them to callers through ``links`` (without links, nobody is linked)."""

    def __init__(
        self,
        config: OidcConfig,
        *,
        links: IdentityLinks | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.links = links
        self._client = client or httpx.AsyncClient(timeout=config.fetch_timeout, follow_redirects=False)
        self._owns_client = client is None
        self._jwks: dict[str, dict[str, Any]] = {}  # kid ("" when the JWK has none) -> JWK
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}  # (kid, alg) -> parsed key
        self._fetched_at: float | None = None  # monotonic time of the last attempt
        self._fetch_error: str | None = None  # why the last attempt failed, if it did
        self._lock = asyncio.Lock()
        self.fetches = 0  # JWKS requests made so far

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._jwks)

    async def verify(self, token: str) -> Caller:
        """The caller of a valid access token of a linked identity; ``ApiError`` 401 (or 503,
        see module doc) otherwise."""
        identity = await self.identity(token)
        if self.links is None:
            raise not_linked(identity)
        return await self.links.caller(identity)

    async def identity(self, token: str) -> ExternalIdentity:
        """The identity of a valid access token; ``ApiError`` 401 (or 503) otherwise."""
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _invalid(f"The token is not valid: {exc}.") from None
        # Checked again, verified, below; first so a stranger's token gets the real reason
        # and does not make us fetch keys.
        if unverified.get("iss") != config.issuer:
            raise _invalid(f"The token was not issued by {config.issuer!r} (wrong issuer).")
        check_access_token(header, unverified)
        alg = header.get("alg")
        if alg not in config.algorithms:
            raise _invalid(
                f"The token is signed with {_quoted(alg)}; accepted: {', '.join(config.algorithms)}."
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("The token's 'kid' header must be a string.")
        key = await self._key(kid, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("The token has expired: get a new one from the identity provider.") from None
        except jwt.InvalidAudienceError:
            raise _invalid(
                f"The token is not for this API (wrong audience): its 'aud' does not include"
                f" {config.audience!r}."
            ) from None
        except jwt.InvalidIssuerError:
            raise _invalid(f"The token was not issued by {config.issuer!r} (wrong issuer).") from None
        except jwt.InvalidSignatureError:
            raise _invalid(
                f"The token's signature does not verify with the identity provider's key {_quoted(kid)}."
            ) from None
        except jwt.ImmatureSignatureError:
            raise _invalid("The token is not valid yet ('nbf' or 'iat' is in the future).") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"The token has no {exc.claim!r} claim.") from None
        except jwt.PyJWTError as exc:
            raise _invalid(f"The token is not valid: {exc}.") from None
        return identity_from_claims(claims)

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:  # no kid: acceptable only when the provider publishes a single key
            return next(iter(self._jwks.values())) if len(self._jwks) == 1 else None
        return self._jwks.get(kid)

    async def _key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        jwk = self._lookup(kid)
        if jwk is None:
            await self._refresh(kid)
            jwk = self._lookup(kid)
        if jwk is None:
            if kid is None:
                raise _invalid(
                    "The token names no signing key ('kid' header) and the identity provider does"
                    " not publish exactly one."
                )
            raise _invalid(
                f"The token's signing key {_quoted(kid)} is unknown: it is not in the identity"
                " provider's key set (JWKS)."
            )
        cache_key = (kid or "", alg)
        key = self._keys.get(cache_key)
        if key is None:
            if jwk.get("alg") not in (None, alg):
                raise _invalid(f"The token says {alg} but key {_quoted(kid)} is for {jwk['alg']}.")
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError:
                raise _invalid(f"Key {_quoted(kid)} cannot verify {alg} signatures.") from None
            self._keys[cache_key] = key
        return key

    async def _refresh(self, kid: str | None) -> None:
        """Fetch the key set again for ``kid``, unless fetched less than ``refetch_interval`` ago."""
        async with self._lock:
            if self._lookup(kid) is not None:  # fetched meanwhile by another request
                return
            now = time.monotonic()
            if self._fetched_at is not None and now - self._fetched_at < self.config.refetch_interval:
                if self._fetch_error is not None:
                    wait = self.config.refetch_interval - (now - self._fetched_at)
                    raise self._unavailable(self._fetch_error, wait)
                return
            self.fetches += 1
            try:
                jwks = await self._fetch()
            except _FetchError as exc:
                self._fetched_at = now
                self._fetch_error = str(exc)
                log.warning("oidc_jwks_unavailable", url=self.config.jwks_url, error=str(exc))
                raise self._unavailable(str(exc), self.config.refetch_interval) from None
            # Recorded only once the attempt ends: a request cancelled mid-fetch leaves no mark.
            self._fetched_at = now
            self._fetch_error = None
            self._jwks = jwks
            self._keys.clear()
            log.info("oidc_jwks_fetched", url=self.config.jwks_url, kids=sorted(jwks))

    def _unavailable(self, reason: str, retry_after: float) -> ApiError:
        return ApiError(
            503,
            "jwks_unavailable",
            f"The identity provider's signing keys could not be fetched from {self.config.jwks_url}"
            f" ({reason}); retry shortly.",
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        body = bytearray()
        try:
            async with self._client.stream(
                "GET", self.config.jwks_url, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(f"HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise _FetchError(f"larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise _FetchError(str(exc) or type(exc).__name__) from None
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchError("not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise _FetchError("no 'keys' list")
        jwks: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("kty") not in ("RSA", "EC", "OKP"):  # never a symmetric ("oct") key
                continue
            if entry.get("alg") is not None and entry["alg"] not in self.config.algorithms:
                continue
            kid = entry.get("kid", "")
            if isinstance(kid, str):
                jwks.setdefault(kid, entry)
        if not jwks:
            raise _FetchError(f"no signing keys for {', '.join(self.config.algorithms)}")
        return jwks
