"""The Bot Connector's token on a Teams delivery, checked without a network: tokens signed
with the fake's own RSA keys (tests/fakes/teams_api.py mints them as the Bot Connector does),
checked against its published keys. Valid tokens pass; each way a token can be wrong is a
BadSignature naming it. Also when the signing keys are fetched again, and the app token's
cache (one fetch until shortly before it expires)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from adapters.channels.errors import BadRequest, BadSignature, ProviderUnreachable
from adapters.channels.teams.auth import (
    REFRESH_AT_MOST_EVERY,
    RETRY_FIRST_FETCH_AFTER,
    SigningKeys,
    authenticate,
    bearer,
    key_id,
)
from adapters.channels.teams.client import RENEW_BEFORE, App, AppTokens, Token
from tests.fakes.teams_api import FakeTeams, headers, published_keys

SERVICE_URL = "https://smba.trafficmanager.net/amer/"
FAKE = FakeTeams()  # only its token minting and Activity builders: nothing is served here
APP = FAKE.add_app()


def _body(**fields: Any) -> bytes:
    return json.dumps(FAKE.message(APP, "hello", service_url=SERVICE_URL, **fields)).encode()


def _keys() -> SigningKeys:
    async def fetch() -> dict[str, Any]:
        return published_keys()

    return SigningKeys(fetch)


async def _check(token: str, body: bytes | None = None) -> str:
    posted = await authenticate(headers(token), body or _body(), _keys(), app_id=APP.app_id)
    return posted.text


async def test_a_token_the_bot_connector_signed_for_this_bot_lets_the_activity_in() -> None:
    assert await _check(FAKE.mint(APP, service_url=SERVICE_URL)) == "hello"
    for algorithm in ("RS384", "RS512"):
        assert await _check(FAKE.mint(APP, service_url=SERVICE_URL, algorithm=algorithm)) == "hello"
    # Five minutes of clock skew either way are allowed.
    assert await _check(FAKE.mint(APP, service_url=SERVICE_URL, expires_in=-240)) == "hello"
    assert await _check(FAKE.mint(APP, service_url=SERVICE_URL, valid_in=240)) == "hello"
    # Another channel of the same bot, with a key endorsed for it, passes the check.
    webchat = _body(channel_id="webchat")
    assert await _check(FAKE.mint(APP, service_url=SERVICE_URL, key="webchat"), webchat) == "hello"


@pytest.mark.parametrize(
    ("mint", "says"),
    [
        ({"app": "0c7f6f2a-0000-4000-8000-0000000000aa"}, "another bot"),
        ({"service_url": "https://smba.attacker.example/amer/"}, "another serviceUrl"),
        ({"key": "webchat"}, "not endorsed for the channel 'msteams'"),
        ({"expires_in": -400}, "expired"),
        ({"valid_in": 600}, "not valid yet"),
        ({"key": "unpublished"}, "key Microsoft does not publish"),
        ({"issuer": "https://sts.windows.net/72f988bf-86f1-41af-91ab/"}, "not issued by the Bot Connector"),
    ],
)
async def test_each_wrong_token_is_refused_saying_why(mint: dict[str, Any], says: str) -> None:
    options: dict[str, Any] = {"service_url": SERVICE_URL} | mint
    token = FAKE.mint(options.pop("app", APP), **options)
    with pytest.raises(BadSignature, match=says):
        await _check(token)


async def test_a_token_signed_another_way_is_refused() -> None:
    claims = {"serviceurl": SERVICE_URL, "iss": "https://api.botframework.com", "aud": APP.app_id,
              "exp": int(time.time()) + 600}  # fmt: skip
    shared_secret = jwt.encode(claims, "a" * 32, algorithm="HS256", headers={"kid": "fake-main-key"})
    with pytest.raises(BadSignature, match="not RS256"):
        await _check(shared_secret)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "fake-main-key"})
    with pytest.raises(BadSignature, match="not RS256"):
        await _check(unsigned)
    # A body changed after signing cannot be told apart (the token vouches for the serviceUrl,
    # not the body), but a signature that does not match its key can.
    good = FAKE.mint(APP, service_url=SERVICE_URL)
    other_signature = FAKE.mint(APP, service_url=SERVICE_URL, key="webchat").rsplit(".", 1)[1]
    forged = good.rsplit(".", 1)[0] + "." + other_signature
    with pytest.raises(BadSignature, match="not valid"):
        await _check(forged)
    with pytest.raises(BadSignature, match="kid"):
        await _check(FAKE.mint(APP, service_url=SERVICE_URL, named_key=False))


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer-token-without-scheme"],
)
def test_a_delivery_without_a_bearer_token_is_refused(authorization: str | None) -> None:
    given = {} if authorization is None else {"Authorization": authorization}
    with pytest.raises(BadSignature, match="no Authorization: Bearer token"):
        bearer(given)


def test_the_bearer_scheme_and_header_name_are_case_insensitive() -> None:
    assert bearer({"authorization": "bearer abc.def.ghi"}) == "abc.def.ghi"
    with pytest.raises(BadSignature, match="not a JWT"):
        key_id("abc.def.ghi")


async def test_a_well_signed_body_that_is_not_an_activity_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="Not a Bot Framework Activity"):
        await _check(FAKE.mint(APP, service_url=SERVICE_URL), b'{"type": "message"}')


# --- fetching the keys ------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Publisher:
    """What the jwks_uri publishes, counting the fetches (ProviderUnreachable while ``down``)."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.fetches = 0
        self.down = False

    async def __call__(self) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise ProviderUnreachable("the keys cannot be fetched")
        return dict(self.keys)


async def test_keys_are_fetched_once_then_again_for_an_unknown_kid_no_sooner_than_the_limit() -> None:
    published = published_keys()
    main = "fake-main-key"
    publisher, clock = _Publisher({main: published[main]}), _Clock()
    keys = SigningKeys(publisher, clock=clock)
    assert (await keys.key(main))["kid"] == main
    assert (await keys.key(main))["kid"] == main
    assert publisher.fetches == 1
    # Microsoft adds a key: a token naming it is refused until the keys may be fetched again.
    publisher.keys["fake-webchat-key"] = published["fake-webchat-key"]
    with pytest.raises(BadSignature, match="does not publish"):
        await keys.key("fake-webchat-key")
    with pytest.raises(BadSignature, match="does not publish"):
        await keys.key("made-up")
    assert publisher.fetches == 1  # made-up kids cannot make us hammer Microsoft
    clock.now += REFRESH_AT_MOST_EVERY
    assert (await keys.key("fake-webchat-key"))["kid"] == "fake-webchat-key"
    assert publisher.fetches == 2
    # Known kids are served from the cache until the keys are a day old.
    clock.now += 3600
    await keys.key(main)
    assert publisher.fetches == 2
    clock.now += 86400
    await keys.key(main)
    assert publisher.fetches == 3


async def test_keys_that_cannot_be_fetched_are_an_outage_not_a_bad_token() -> None:
    publisher, clock = _Publisher(published_keys()), _Clock()
    publisher.down = True
    keys = SigningKeys(publisher, clock=clock)
    with pytest.raises(ProviderUnreachable):  # 503: the Bot Connector tries again
        await keys.key("fake-main-key")
    publisher.down = False
    with pytest.raises(ProviderUnreachable):  # a burst of deliveries does not ask again at once
        await keys.key("fake-main-key")
    assert publisher.fetches == 1
    clock.now += RETRY_FIRST_FETCH_AFTER
    assert (await keys.key("fake-main-key"))["kid"] == "fake-main-key"
    # Once there are keys, a failed daily refresh keeps them.
    publisher.down = True
    clock.now += 86400
    assert (await keys.key("fake-main-key"))["kid"] == "fake-main-key"


# --- the app's token --------------------------------------------------------------------------


class _Login:
    """Stands in for BotFramework.fetch_token: each call issues a new token living ``lifetime``."""

    def __init__(self, lifetime: float = 3599) -> None:
        self.lifetime = lifetime
        self.issued: list[str] = []

    async def fetch_token(self, app: App, *, now: float) -> Token:
        self.issued.append(f"token-{len(self.issued) + 1}")
        return Token(self.issued[-1], now + self.lifetime)


async def test_the_app_token_is_kept_until_shortly_before_it_expires() -> None:
    login, clock = _Login(), _Clock()
    tokens = AppTokens(App(APP.app_id, APP.client_secret), login, clock=clock)  # type: ignore[arg-type]
    assert [await tokens.token() for _ in range(3)] == ["token-1"] * 3
    clock.now += 3599 - RENEW_BEFORE - 1
    assert await tokens.token() == "token-1"
    clock.now += 1
    assert await tokens.token() == "token-2"
    tokens.drop()  # the Bot Connector refused it
    assert await tokens.token() == "token-3"
    assert login.issued == ["token-1", "token-2", "token-3"]
