"""Access tokens from an external OIDC identity provider, verified against its JWKS.

A real HTTP server on 127.0.0.1 plays the provider's JWKS endpoint with keys generated
here; tokens are signed with PyJWT; the gateway runs over real NATS and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from adapters.embedded.processes import free_port
from gateway.errors import ApiError
from gateway.oidc import OidcConfig, OidcVerifier, caller_from_claims, peek_issuer
from moltbot.roles import run_gateway
from moltbot.settings import Settings
from tests.integration.conftest import Stack

ISSUER = "https://idp.example.test/realms/acme"
AUDIENCE = "moltbot-api"
GATEWAY_REFETCH = 0.5  # seconds between JWKS fetches in the gateway under test


class SigningKey:
    """A key pair of the provider: signs tokens, publishes its public half as a JWK."""

    def __init__(self, kid: str, alg: str = "RS256") -> None:
        self.kid, self.alg = kid, alg
        self.private: Any
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algorithm: Any = jwt.algorithms.RSAAlgorithm
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            algorithm = jwt.algorithms.ECAlgorithm
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            algorithm = jwt.algorithms.OKPAlgorithm
        self._jwk = json.loads(algorithm.to_jwk(self.private.public_key()))

    def jwk(self, **extra: Any) -> dict[str, Any]:
        return {**self._jwk, "kid": self.kid, "use": "sig", "alg": self.alg, **extra}

    def sign(self, claims: dict[str, Any], *, kid: str | None = "same", alg: str | None = None) -> str:
        headers = {"kid": self.kid if kid == "same" else kid} if kid is not None else {}
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=headers)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for tenant ``t_acme``; a change to ``None`` removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "moltbot_tenant": "t_acme",
        "moltbot_role": "admin",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


class JwksServer:
    """A tiny HTTP server answering every GET with the current key set (or ``status``)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0  # seconds to wait before answering
        self.requests = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def __aenter__(self) -> JwksServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readline()  # request line
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            self.requests += 1
            await asyncio.sleep(self.delay)
            body = json.dumps({"keys": self.keys}).encode() if self.status == 200 else b'{"error":"down"}'
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (self.status, len(body), body)
            )
            await writer.drain()
            writer.close()
            await writer.wait_closed()


@pytest.fixture
async def idp() -> AsyncIterator[JwksServer]:
    async with JwksServer() as server:
        yield server


@pytest.fixture
def key_a(idp: JwksServer) -> SigningKey:
    key = SigningKey("key-a")
    idp.keys.append(key.jwk())
    return key


def config(idp: JwksServer, **changes: Any) -> OidcConfig:
    return OidcConfig(**({"jwks_url": idp.url, "issuer": ISSUER, "audience": AUDIENCE} | changes))


@pytest.fixture
async def api(stack: Stack, tmp_path: Path, idp: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway (as in test_gateway.py) with the OIDC provider ``idp`` configured."""
    port = free_port()
    started = asyncio.Event()
    server = asyncio.create_task(
        run_gateway(
            stack.nats_url,
            stack.database_url,
            key_file=tmp_path / "jwt.pem",
            port=port,
            started=started,
            oidc=config(idp, refetch_interval=GATEWAY_REFETCH),
        )
    )
    async with stack.projections():
        await asyncio.wait_for(started.wait(), 20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signup(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": "correct horse battery"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- through the gateway ----------------------------------------------------------------


async def test_oidc_token_reads_me_with_the_claimed_tenant_and_role(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    account = await signup(api, "owner@example.com")
    tenant = account["tenant_id"]

    me = await api.get(
        "/v1/me",
        params={"min_seq": account["seq"]},
        headers=bearer(key_a.sign(claims(moltbot_tenant=tenant, sub="alice-42"))),
    )
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == "oidc:alice-42"
    assert me.json()["tenant_id"] == tenant
    assert me.json()["role"] == "admin"
    assert me.json()["tenant_name"] == "Personal"  # the real tenant's read model
    assert me.json()["email"] is None  # not a password user of ours

    # No role claim: member. ?access_token= works as for our own tokens.
    member = await api.get(
        "/v1/me", params={"access_token": key_a.sign(claims(moltbot_tenant=tenant, moltbot_role=None))}
    )
    assert member.status_code == 200, member.text
    assert member.json()["role"] == "member"
    # Tenant-scoped reads run in the claimed tenant.
    listing = await api.get("/v1/conversations", headers=bearer(key_a.sign(claims(moltbot_tenant=tenant))))
    assert listing.status_code == 200, listing.text
    assert idp.requests == 1  # one fetch, then the cached key


async def test_oidc_tokens_are_refused_with_the_reason(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    impostor = SigningKey("key-a")  # another key pair under the same kid
    cases = {
        "expired": key_a.sign(claims(exp=int(time.time()) - 600, iat=int(time.time()) - 900)),
        "wrong audience": key_a.sign(claims(aud="someone-else")),
        "wrong issuer": key_a.sign(claims(iss="https://evil.example.test")),
        "signature does not verify": impostor.sign(claims()),
        "no 'moltbot_tenant' claim": key_a.sign(claims(moltbot_tenant=None)),
        "'moltbot_tenant' claim is not a tenant id": key_a.sign(claims(moltbot_tenant="t_a.>")),
        "'moltbot_role' claim must be one of": key_a.sign(claims(moltbot_role="superuser")),
        "no 'exp' claim": key_a.sign(claims(exp=None)),
        "key 'key-unknown' is unknown": key_a.sign(claims(), kid="key-unknown"),
        "signed with 'HS256'": jwt.encode(claims(), "a shared secret" * 3, headers={"kid": "key-a"}),
    }
    for reason, token in cases.items():
        response = await api.get("/v1/me", headers=bearer(token))
        assert response.status_code == 401, (reason, response.text)
        assert response.json()["error"] == "invalid_token", reason
        assert reason in response.json()["detail"], (reason, response.json()["detail"])


async def test_key_rotation_is_picked_up(api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey) -> None:
    assert (await api.get("/v1/me", headers=bearer(key_a.sign(claims())))).status_code == 200
    assert idp.requests == 1

    key_b = SigningKey("key-b", alg="ES256")
    idp.keys = [key_b.jwk()]  # the provider rotates: key-b in, key-a out
    await asyncio.sleep(GATEWAY_REFETCH + 0.1)
    rotated = await api.get("/v1/me", headers=bearer(key_b.sign(claims(sub="bob"))))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["user_id"] == "oidc:bob"
    assert idp.requests == 2
    # A fetch replaces the whole set: the retired key-a is no longer trusted.
    retired = await api.get("/v1/me", headers=bearer(key_a.sign(claims())))
    assert retired.status_code == 401
    assert "'key-a' is unknown" in retired.json()["detail"]


async def test_own_tokens_keep_working_with_oidc_on(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    account = await signup(api, "local@example.com")
    token = account["tokens"]["access_token"]
    me = await api.get("/v1/me", params={"min_seq": account["seq"]}, headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "owner"
    assert me.json()["email"] == "local@example.com"
    refreshed = await api.post("/v1/auth/refresh", json={"refresh_token": account["tokens"]["refresh_token"]})
    assert refreshed.status_code == 200
    # A refresh token is not an access token, OIDC or not.
    wrong_kind = await api.get("/v1/me", headers=bearer(account["tokens"]["refresh_token"]))
    assert wrong_kind.json() == {"error": "invalid_token", "detail": "Expected an access token."}
    forged = await api.get("/v1/me", headers=bearer("abc.def.ghi"))
    assert forged.status_code == 401
    assert forged.json()["error"] == "invalid_token"
    assert forged.json()["detail"].startswith("The token is not valid:")
    assert idp.requests == 0  # none of these went to the provider


async def test_unreachable_jwks_is_503_then_recovers(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    idp.status = 500
    down = await api.get("/v1/me", headers=bearer(key_a.sign(claims())))
    assert down.status_code == 503, down.text
    assert down.json()["error"] == "jwks_unavailable"
    assert "HTTP 500" in down.json()["detail"]
    assert int(down.headers["retry-after"]) >= 1
    idp.status = 200
    await asyncio.sleep(GATEWAY_REFETCH + 0.1)
    assert (await api.get("/v1/me", headers=bearer(key_a.sign(claims())))).status_code == 200


async def test_websocket_accepts_an_oidc_token(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    account = await signup(api, "ws-oidc@example.com")
    other = await signup(api, "ws-other@example.com")
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    token = key_a.sign(claims(moltbot_tenant=account["tenant_id"]))
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "since": 1, "token": token}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["op"] == "subscribed"
        received = [json.loads(await asyncio.wait_for(socket.recv(), 10)) for _ in range(3)]
    assert [m["event"]["type"] for m in received] == ["tenant.created", "user.registered", "member.added"]
    assert {m["event"]["tenant_id"] for m in received} == {account["tenant_id"]}
    assert other["tenant_id"] != account["tenant_id"]

    expired = key_a.sign(claims(moltbot_tenant=account["tenant_id"], exp=int(time.time()) - 600))
    async with ws_connect(url + f"?access_token={expired}") as socket:
        await socket.send(json.dumps({"op": "subscribe", "since": 1}))
        error = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert error["op"] == "error"
        assert "expired" in error["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


# --- the verifier on its own --------------------------------------------------------------


async def test_unknown_kids_refetch_at_most_once_per_interval(idp: JwksServer, key_a: SigningKey) -> None:
    verifier = OidcVerifier(config(idp))  # the default 30 s
    try:
        # A cold cache hit by many requests at once: one fetch.
        callers = await asyncio.gather(*(verifier.verify(key_a.sign(claims())) for _ in range(20)))
        assert {c.user_id for c in callers} == {"oidc:alice"}
        assert idp.requests == 1
        for kid in ("made-up-1", "made-up-2", "made-up-3"):
            with pytest.raises(ApiError) as refused:
                await verifier.verify(key_a.sign(claims(), kid=kid))
            assert refused.value.status == 401
            assert "unknown" in refused.value.detail
        # The set was fetched less than 30 s ago: unknown kids do not fetch it again.
        assert idp.requests == 1
        assert verifier.fetches == 1
    finally:
        await verifier.aclose()


async def test_a_fetch_cut_short_does_not_hold_back_the_next(idp: JwksServer, key_a: SigningKey) -> None:
    verifier = OidcVerifier(config(idp))
    try:
        idp.delay = 5
        first = asyncio.create_task(verifier.verify(key_a.sign(claims())))
        while idp.requests == 0:
            await asyncio.sleep(0.01)
        first.cancel()  # e.g. the client went away while the keys were being fetched
        with pytest.raises(asyncio.CancelledError):
            await first
        idp.delay = 0
        assert (await verifier.verify(key_a.sign(claims()))).user_id == "oidc:alice"
        assert idp.requests == 2
    finally:
        await verifier.aclose()


async def test_verifier_key_types_and_jwks_contents(idp: JwksServer) -> None:
    ec_key, ed_key, rsa_key = SigningKey("ec", "ES256"), SigningKey("ed", "EdDSA"), SigningKey("rsa")
    idp.keys = [
        ec_key.jwk(),
        {k: v for k, v in ed_key.jwk().items() if k != "alg"},  # alg inferred from the key
        rsa_key.jwk(use="enc"),  # an encryption key is never used to verify
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},  # nor a symmetric one
    ]
    verifier = OidcVerifier(config(idp))
    try:
        assert (await verifier.verify(ec_key.sign(claims()))).role == "admin"
        assert (await verifier.verify(ed_key.sign(claims()))).tenant_id == "t_acme"
        assert verifier.key_ids == {"ec", "ed"}
        with pytest.raises(ApiError, match="'rsa' is unknown"):
            await verifier.verify(rsa_key.sign(claims()))
        # An ES256 key cannot be made to check an RS256 signature (algorithm confusion).
        with pytest.raises(ApiError) as confused:
            await verifier.verify(rsa_key.sign(claims(), kid="ec"))
        assert confused.value.status == 401
        with pytest.raises(ApiError, match="cannot verify ES256"):
            await verifier.verify(ec_key.sign(claims(), kid="ed"))  # an Ed25519 key, no alg in its JWK
    finally:
        await verifier.aclose()

    # A single published key also verifies tokens without a kid.
    async with JwksServer() as single:
        single.keys = [ec_key.jwk()]
        verifier = OidcVerifier(config(single))
        try:
            assert (await verifier.verify(ec_key.sign(claims(), kid=None))).user_id == "oidc:alice"
        finally:
            await verifier.aclose()


@pytest.mark.parametrize(
    ("keys_or_status", "reason"),
    [(500, "HTTP 500"), ([], "no signing keys"), ("closed", "")],
)
async def test_jwks_that_cannot_be_fetched_is_503(
    idp: JwksServer, key_a: SigningKey, keys_or_status: Any, reason: str
) -> None:
    if keys_or_status == "closed":
        cfg = config(idp, jwks_url=f"http://127.0.0.1:{free_port()}/jwks")
    else:
        cfg = config(idp)
        if isinstance(keys_or_status, int):
            idp.status = keys_or_status
        else:
            idp.keys = keys_or_status
    verifier = OidcVerifier(cfg)
    try:
        for _ in range(2):  # the second answer comes from the remembered failure
            with pytest.raises(ApiError) as unavailable:
                await verifier.verify(key_a.sign(claims()))
            assert unavailable.value.status == 503
            assert unavailable.value.error == "jwks_unavailable"
            assert reason in unavailable.value.detail
            assert cfg.jwks_url in unavailable.value.detail
            assert 1 <= int(unavailable.value.headers["Retry-After"]) <= 30
        assert verifier.fetches == 1
    finally:
        await verifier.aclose()


# --- claim mapping and configuration ------------------------------------------------------

CFG = OidcConfig(jwks_url="https://idp.example.test/jwks", issuer=ISSUER, audience=AUDIENCE)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"moltbot_tenant": None}, "no 'moltbot_tenant' claim"),
        ({"moltbot_tenant": ""}, "not a tenant id"),
        ({"moltbot_tenant": "ev.>"}, "not a tenant id"),
        ({"moltbot_tenant": 42}, "not a tenant id"),
        ({"moltbot_tenant": "t" * 129}, "not a tenant id"),
        ({"moltbot_role": "root"}, "'moltbot_role' claim must be one of owner, admin, member"),
        ({"moltbot_role": ["admin"]}, "'moltbot_role' claim"),
        ({"sub": None}, "'sub' claim"),
        ({"sub": ""}, "'sub' claim"),
    ],
)
def test_claim_mapping_refusals(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ApiError) as refused:
        caller_from_claims(claims(**changes), CFG)
    assert refused.value.status == 401
    assert refused.value.error == "invalid_token"
    assert reason in refused.value.detail


def test_claim_mapping_with_custom_claim_names() -> None:
    custom = OidcConfig(
        jwks_url=CFG.jwks_url,
        issuer=ISSUER,
        audience=AUDIENCE,
        tenant_claim="https://moltbot.example/tenant",
        role_claim="https://moltbot.example/role",
    )
    mapped = {"sub": "u1", "https://moltbot.example/tenant": "t_x", "https://moltbot.example/role": "owner"}
    caller = caller_from_claims(mapped, custom)
    assert (caller.user_id, caller.tenant_id, caller.role) == ("oidc:u1", "t_x", "owner")
    with pytest.raises(ApiError, match=re.escape("https://moltbot.example/tenant")):
        caller_from_claims(claims(), custom)


def test_peek_issuer_routes_tokens() -> None:
    assert peek_issuer("abc.def.ghi") is None
    assert peek_issuer(jwt.encode({"iss": "moltbot"}, "k" * 32)) == "moltbot"
    assert peek_issuer(jwt.encode({"sub": "x"}, "k" * 32)) == ""


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"jwks_url": "http://idp.example.test/jwks"}, "https"),
        ({"jwks_url": "ftp://idp/jwks"}, "https"),
        ({"issuer": "moltbot"}, "gateway's own"),
        ({"issuer": ""}, "issuer"),
        ({"audience": ""}, "audience"),
        ({"algorithms": ("HS256",)}, "HS256"),
        ({"algorithms": ()}, "algorithms"),
    ],
)
def test_config_refuses_unsafe_setups(changes: dict[str, Any], reason: str) -> None:
    base: dict[str, Any] = {
        "jwks_url": "https://idp.example.test/jwks",
        "issuer": ISSUER,
        "audience": AUDIENCE,
    }
    with pytest.raises(ValueError, match=reason):
        OidcConfig(**(base | changes))


def test_settings_turn_oidc_on_only_when_complete(tmp_path: Path) -> None:
    data = str(tmp_path)
    assert Settings.load({}, data_dir=data).oidc_config() is None
    environ = {
        "MOLTBOT_OIDC_JWKS_URL": "https://idp.example.test/jwks",
        "MOLTBOT_OIDC_ISSUER": ISSUER,
        "MOLTBOT_OIDC_AUDIENCE": AUDIENCE,
        "MOLTBOT_OIDC_TENANT_CLAIM": "org",
    }
    oidc = Settings.load(environ, data_dir=data).oidc_config()
    assert oidc is not None
    assert (oidc.issuer, oidc.audience, oidc.tenant_claim, oidc.role_claim) == (
        ISSUER,
        AUDIENCE,
        "org",
        "moltbot_role",
    )
    for missing in ("MOLTBOT_OIDC_ISSUER", "MOLTBOT_OIDC_AUDIENCE", "MOLTBOT_OIDC_JWKS_URL"):
        with pytest.raises(ValueError, match="MOLTBOT_OIDC_"):
            Settings.load({k: v for k, v in environ.items() if k != missing}, data_dir=data)
    with pytest.raises(ValueError, match="https"):
        Settings.load(environ | {"MOLTBOT_OIDC_JWKS_URL": "http://idp.example.test/jwks"}, data_dir=data)
