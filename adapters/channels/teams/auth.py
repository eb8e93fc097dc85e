"""Checking the Bot Connector's JWT on a delivery (``Authorization: Bearer <JWT>``), as
Microsoft's "Authentication with the Bot Connector API" describes it for channel → bot:

1. the signing key comes from the OpenID metadata's ``jwks_uri`` (:class:`SigningKeys`:
   cached; fetched again when a token names a key we do not have, at most every
   :data:`REFRESH_AT_MOST_EVERY`, and once a day anyway);
2. the signature is RS256, RS384 or RS512; ``iss`` is ``https://api.botframework.com``;
   ``aud`` is the connection's Microsoft App ID; ``exp`` / ``nbf`` hold within 5 minutes;
3. the key's ``endorsements`` include the Activity's ``channelId``;
4. the token's ``serviceurl`` claim is the Activity's ``serviceUrl``.

Anything else is :class:`~adapters.channels.errors.BadSignature` (401: nothing stored).
The checks of a token against a key are pure (:func:`verify`, :func:`vouches_for`); only
:func:`fetch_signing_keys` talks to Microsoft. The gateway's Teams webhook holds one set
(:func:`signing_keys`): every connection's deliveries are signed with the same keys.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import jwt
import structlog

from adapters.channels.errors import BadRequest, BadSignature, ProviderUnreachable
from adapters.channels.teams import DEFAULT_OPENID_URL, ISSUER
from adapters.channels.teams.normalize import Activity, activity

log = structlog.get_logger()

ALGORITHMS = ("RS256", "RS384", "RS512")
LEEWAY = 300.0  # seconds of clock skew allowed on exp and nbf
REFRESH_AT_MOST_EVERY = 300.0  # seconds: an unknown kid fetches the keys again no sooner
KEYS_LIVE_FOR = 86400.0  # seconds: the keys are fetched again daily, known kid or not
RETRY_FIRST_FETCH_AFTER = 10.0  # seconds: with no keys yet, a failed fetch is tried again no sooner
FETCH_TIMEOUT = 10.0

Jwk = Mapping[str, Any]
FetchKeys = Callable[[], Awaitable[dict[str, Jwk]]]  # kid -> the key, with its "endorsements"


def bearer(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer …`` header; BadSignature when there is none."""
    given = {key.lower(): value for key, value in headers.items()}.get("authorization", "").strip()
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadSignature(
            "The request carries no Authorization: Bearer token, so it is not from the Bot Connector."
        )
    return token.strip()


def key_id(token: str) -> str:
    """The ``kid`` a token names (checked to be signed with an allowed algorithm)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise BadSignature("The Bot Connector token is not a JWT.") from None
    if header.get("alg") not in ALGORITHMS:
        raise BadSignature(
            f"The Bot Connector token is signed with {header.get('alg')!r}, not RS256/384/512."
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise BadSignature("The Bot Connector token names no signing key (kid).")
    return kid


def verify(token: str, key: Jwk, *, app_id: str) -> dict[str, Any]:
    """The claims of ``token``, checked against ``key`` for the bot ``app_id``: signature,
    issuer, audience, expiry; BadSignature saying what is wrong otherwise."""
    try:
        public_key = jwt.PyJWK(dict(key)).key
    except jwt.PyJWTError:
        raise BadSignature("The Bot Connector's signing key cannot be read.") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token, public_key, algorithms=list(ALGORITHMS), audience=app_id, issuer=ISSUER,
            leeway=LEEWAY, options={"require": ["exp", "iss", "aud"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise BadSignature("The Bot Connector token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise BadSignature("The Bot Connector token is not valid yet.") from None
    except jwt.InvalidAudienceError:
        raise BadSignature(
            "The Bot Connector token is for another bot than this connection's Microsoft App ID."
        ) from None
    except jwt.InvalidIssuerError:
        raise BadSignature("The token was not issued by the Bot Connector (api.botframework.com).") from None
    except jwt.InvalidTokenError as exc:
        raise BadSignature(f"The Bot Connector token is not valid: {exc}.") from None
    return claims


def vouches_for(claims: Mapping[str, Any], key: Jwk, *, channel_id: str, service_url: str) -> None:
    """Refuse (BadSignature) a checked token that does not vouch for an Activity of
    ``channel_id`` from ``service_url``: its key must be endorsed for the channel, its
    ``serviceurl`` claim must be the Activity's."""
    endorsements = key.get("endorsements")
    if not isinstance(endorsements, list) or channel_id not in endorsements:
        raise BadSignature(f"The key that signed this token is not endorsed for the channel {channel_id!r}.")
    if claims.get("serviceurl") != service_url:
        raise BadSignature("The Bot Connector token was issued for another serviceUrl than the Activity's.")


class SigningKeys:
    """The Bot Connector's signing keys, by ``kid``: fetched on first use, again once a day,
    and when a token names a key we do not have (at most every ``refresh_every`` seconds,
    so tokens with made-up kids cannot make us hammer Microsoft)."""

    def __init__(
        self,
        fetch: FetchKeys,
        *,
        refresh_every: float = REFRESH_AT_MOST_EVERY,
        live_for: float = KEYS_LIVE_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refresh_every = refresh_every
        self._live_for = live_for
        self._clock = clock
        self._keys: dict[str, Jwk] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None  # the last fetch that failed while there were no keys

    async def key(self, kid: str) -> Jwk:
        """The key ``kid``; BadSignature when Microsoft does not publish it."""
        now = self._clock()
        failed_lately = self._failed_at is not None and now - self._failed_at < RETRY_FIRST_FETCH_AFTER
        if self._fetched_at is None and failed_lately:
            raise ProviderUnreachable("The Bot Framework's signing keys cannot be fetched just now.")
        stale = self._fetched_at is None or now - self._fetched_at >= self._live_for
        unknown = kid not in self._keys
        may_refresh = self._fetched_at is None or now - self._fetched_at >= self._refresh_every
        if stale or (unknown and may_refresh):
            await self._refresh(now)
        found = self._keys.get(kid)
        if found is None:
            raise BadSignature("The Bot Connector token is signed with a key Microsoft does not publish.")
        return found

    async def _refresh(self, now: float) -> None:
        try:
            keys = await self._fetch()
        except ProviderUnreachable:
            if not self._keys:
                self._failed_at = now
                raise  # nothing to check with: the Bot Connector retries a 503
            log.warning("teams_signing_keys_refresh_failed", keys=len(self._keys))
            self._fetched_at = now  # keep the keys we have; ask again after refresh_every
            return
        self._keys, self._fetched_at = keys, now
        log.info("teams_signing_keys_fetched", keys=len(keys))


async def fetch_signing_keys(openid_url: str) -> dict[str, Jwk]:
    """The keys the OpenID metadata's ``jwks_uri`` publishes, by kid; ProviderUnreachable when
    they cannot be had. A fresh client each time: this runs a few times a day."""
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT) as http:
        try:
            metadata = (await http.get(openid_url)).raise_for_status().json()
            jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise ProviderUnreachable("The Bot Framework's OpenID metadata names no jwks_uri.")
            published = (await http.get(jwks_uri)).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnreachable(
                f"The Bot Framework's signing keys cannot be fetched: {exc!r}"
            ) from None
    entries = published.get("keys") if isinstance(published, dict) else None
    return {
        key["kid"]: key for key in entries or () if isinstance(key, dict) and isinstance(key.get("kid"), str)
    }


def signing_keys(openid_url: str | None) -> SigningKeys:
    """The published keys behind ``openid_url`` (None: Microsoft's), fetched on first use."""
    url = openid_url or DEFAULT_OPENID_URL
    return SigningKeys(lambda: fetch_signing_keys(url))


async def authenticate(
    headers: Mapping[str, str], body: bytes, keys: SigningKeys, *, app_id: str
) -> Activity:
    """The Activity of a delivery whose token checks out end to end (see the module):
    BadSignature (401) when it does not, BadRequest (400) for a well-signed body that is
    not an Activity."""
    token = bearer(headers)
    key = await keys.key(key_id(token))
    claims = verify(token, key, app_id=app_id)
    try:
        posted = activity(body)
    except ValueError as exc:  # msgspec's DecodeError and ValidationError among them
        raise BadRequest(f"Not a Bot Framework Activity: {exc}") from None
    vouches_for(claims, key, channel_id=posted.channel_id, service_url=posted.service_url)
    return posted
