"""Access tokens from an external OIDC identity provider, verified against its JWKS.

A real HTTP server on 127.0.0.1 plays the provider's JWKS endpoint with keys generated
here; tokens are signed with PyJWT; the gateway runs over real NATS and PostgreSQL.
A token acts as the account its identity (iss, sub) is linked to, with that account's
role in the members read model: tenant and role claims in the token count for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from domain import events as ev
from gateway.errors import ApiError
from gateway.oidc import (
    ExternalIdentity,
    OidcConfig,
    OidcVerifier,
    check_access_token,
    identity_from_claims,
    peek_issuer,
)
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

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str | None = "same",
        alg: str | None = None,
        typ: str | None = None,
    ) -> str:
        headers = {"kid": self.kid if kid == "same" else kid} if kid is not None else {}
        if typ is not None:
            headers["typ"] = typ
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=headers)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid access-token claims of identity ``alice``; a change to ``None`` removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
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


PASSWORD = "correct horse battery"


async def signup(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def link(
    api: httpx.AsyncClient, account: dict[str, Any], token: str, password: str = PASSWORD
) -> httpx.Response:
    """Link the identity of the provider's ``token`` to ``account`` (signed in with our token)."""
    return await api.post(
        "/v1/me/identities",
        json={"token": token, "password": password},
        headers=bearer(account["tokens"]["access_token"]),
    )


async def linked(api: httpx.AsyncClient, account: dict[str, Any], token: str) -> None:
    response = await link(api, account, token)
    assert response.status_code == 201, response.text


# --- through the gateway ----------------------------------------------------------------


async def test_linked_identity_reads_me_as_its_account_with_its_role(
    api: httpx.AsyncClient, stack: Stack, idp: JwksServer, key_a: SigningKey
) -> None:
    account = await signup(api, "owner@example.com")
    other = await signup(api, "other@example.com")
    tenant = account["tenant_id"]
    # Tenant and role claims are what the provider says; they count for nothing here.
    token = key_a.sign(claims(sub="alice-42", moltbot_tenant=other["tenant_id"], moltbot_role="admin"))

    unlinked = await api.get("/v1/me", headers=bearer(token))
    assert unlinked.status_code == 401, unlinked.text
    assert unlinked.json()["error"] == "identity_not_linked"
    assert "'alice-42'" in unlinked.json()["detail"]
    assert "not linked to an inbox" in unlinked.json()["detail"]

    await linked(api, account, token)
    me = await api.get("/v1/me", params={"min_seq": account["seq"]}, headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == account["user_id"]
    assert me.json()["tenant_id"] == tenant  # the linked account's, not the claimed one
    assert me.json()["role"] == "owner"  # from the members read model, not the claim
    assert me.json()["tenant_name"] == "Personal"
    assert me.json()["email"] == "owner@example.com"
    listing = await api.get("/v1/conversations", headers=bearer(token))
    assert listing.status_code == 200, listing.text
    assert idp.requests == 1  # one fetch, then the cached key

    # The role is read on every request: a change in the log shows at once.
    demoted = ev.new_event(
        ev.MemberRoleChanged, tenant_id=tenant, aggregate_id=tenant, actor="user:test",
        data=ev.MemberRoleChangedData(user_id=account["user_id"], role="member"),
    )  # fmt: skip
    await stack.store.append(demoted)
    await stack.wait_caught_up()
    assert (await api.get("/v1/me", headers=bearer(token))).json()["role"] == "member"
    removed = ev.new_event(
        ev.MemberRemoved, tenant_id=tenant, aggregate_id=tenant, actor="user:test",
        data=ev.MemberRemovedData(user_id=account["user_id"]),
    )  # fmt: skip
    await stack.store.append(removed)
    await stack.wait_caught_up()
    gone = await api.get("/v1/me", headers=bearer(token))
    assert gone.status_code == 401, gone.text
    assert gone.json()["error"] == "not_a_member"


async def test_linking_an_identity(api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey) -> None:
    account = await signup(api, "linker@example.com")
    other = await signup(api, "second@example.com")
    token = key_a.sign(claims(sub="carol"))

    wrong_password = await link(api, account, token, password="not the password")
    assert wrong_password.status_code == 401
    assert wrong_password.json()["error"] == "invalid_credentials"
    id_token = await link(api, account, key_a.sign(claims(sub="carol", at_hash="x")))
    assert id_token.status_code == 401
    assert "ID token" in id_token.json()["detail"]
    anonymous = await api.post("/v1/me/identities", json={"token": token, "password": PASSWORD})
    assert anonymous.status_code == 401

    first = await link(api, account, token)
    assert first.status_code == 201, first.text
    assert first.json() == {
        "issuer": ISSUER,
        "subject": "carol",
        "user_id": account["user_id"],
        "tenant_id": account["tenant_id"],
    }
    assert (await link(api, account, token)).status_code == 201  # again: nothing changes
    taken = await link(api, other, token)
    assert taken.status_code == 409
    assert taken.json()["error"] == "identity_taken"
    me = await api.get("/v1/me", headers=bearer(token))
    assert me.json()["user_id"] == account["user_id"]


async def test_oidc_tokens_are_refused_with_the_reason(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    account = await signup(api, "refusals@example.com")
    await linked(api, account, key_a.sign(claims()))  # alice: only the token's faults refuse it
    assert (await api.get("/v1/me", headers=bearer(key_a.sign(claims())))).status_code == 200
    impostor = SigningKey("key-a")  # another key pair under the same kid
    cases = {
        "expired": key_a.sign(claims(exp=int(time.time()) - 600, iat=int(time.time()) - 900)),
        "wrong audience": key_a.sign(claims(aud="someone-else")),
        "wrong issuer": key_a.sign(claims(iss="https://evil.example.test")),
        "signature does not verify": impostor.sign(claims()),
        "no 'exp' claim": key_a.sign(claims(exp=None)),
        "key 'key-unknown' is unknown": key_a.sign(claims(), kid="key-unknown"),
        "signed with 'HS256'": jwt.encode(claims(), "a shared secret" * 3, headers={"kid": "key-a"}),
        # Other kinds of token of the same identity: only access tokens are accepted.
        "it is an ID token": key_a.sign(claims(at_hash="lh4NQ2kq0Yg2LqMx")),
        "'typ' claim is 'ID': not an access token": key_a.sign(claims(typ="ID")),
        "'typ' claim is 'Refresh'": key_a.sign(claims(typ="Refresh")),
        "'token_use' claim is 'id'": key_a.sign(claims(token_use="id")),
        "'typ' header is 'logout+jwt'": key_a.sign(claims(), typ="logout+jwt"),
    }
    for reason, token in cases.items():
        response = await api.get("/v1/me", headers=bearer(token))
        assert response.status_code == 401, (reason, response.text)
        assert response.json()["error"] == "invalid_token", reason
        assert reason in response.json()["detail"], (reason, response.json()["detail"])
    # RFC 9068 access tokens, and the kind claims some providers add, are accepted.
    for token in (
        key_a.sign(claims(), typ="at+jwt"),
        key_a.sign(claims(typ="Bearer")),
        key_a.sign(claims(token_use="access")),
    ):
        assert (await api.get("/v1/me", headers=bearer(token))).status_code == 200


async def test_key_rotation_is_picked_up(api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey) -> None:
    account = await signup(api, "rotation@example.com")
    await linked(api, account, key_a.sign(claims()))
    assert (await api.get("/v1/me", headers=bearer(key_a.sign(claims())))).status_code == 200
    assert idp.requests == 1

    key_b = SigningKey("key-b", alg="ES256")
    idp.keys = [key_b.jwk()]  # the provider rotates: key-b in, key-a out
    await asyncio.sleep(GATEWAY_REFETCH + 0.1)
    await linked(api, account, key_b.sign(claims(sub="bob")))  # checked with the new key
    rotated = await api.get("/v1/me", headers=bearer(key_b.sign(claims(sub="bob"))))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["user_id"] == account["user_id"]
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
    await linked(api, await signup(api, "recovered@example.com"), key_a.sign(claims()))
    assert (await api.get("/v1/me", headers=bearer(key_a.sign(claims())))).status_code == 200


async def test_websocket_accepts_an_oidc_token(
    api: httpx.AsyncClient, idp: JwksServer, key_a: SigningKey
) -> None:
    account = await signup(api, "ws-oidc@example.com")
    other = await signup(api, "ws-other@example.com")
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    token = key_a.sign(claims(moltbot_tenant=other["tenant_id"]))  # a claim: it counts for nothing
    await linked(api, account, token)
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "since": 1, "token": token}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["op"] == "subscribed"
        received = [json.loads(await asyncio.wait_for(socket.recv(), 10)) for _ in range(3)]
    assert [m["event"]["type"] for m in received] == ["tenant.created", "user.registered", "member.added"]
    assert {m["event"]["tenant_id"] for m in received} == {account["tenant_id"]}
    assert other["tenant_id"] != account["tenant_id"]

    expired = key_a.sign(claims(exp=int(time.time()) - 600))
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "since": 1, "token": expired}))
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
        identities = await asyncio.gather(*(verifier.identity(key_a.sign(claims())) for _ in range(20)))
        assert {(i.issuer, i.subject) for i in identities} == {(ISSUER, "alice")}
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
        assert (await verifier.identity(key_a.sign(claims()))).subject == "alice"
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
        assert (await verifier.identity(ec_key.sign(claims()))).subject == "alice"
        assert (await verifier.identity(ed_key.sign(claims()))).issuer == ISSUER
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
            assert (await verifier.identity(ec_key.sign(claims(), kid=None))).subject == "alice"
            # A verifier without identity links knows nobody: a good token is still refused.
            with pytest.raises(ApiError) as unlinked:
                await verifier.verify(ec_key.sign(claims(), kid=None))
            assert (unlinked.value.status, unlinked.value.error) == (401, "identity_not_linked")
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


# --- token kinds, identities and configuration ------------------------------------------------------


def _identity(header: dict[str, Any], verified_claims: dict[str, Any]) -> ExternalIdentity:
    """What the verifier makes of a token's header and (signature-checked) claims."""
    check_access_token(header, verified_claims)
    return identity_from_claims(verified_claims)


@pytest.mark.parametrize(
    ("header", "changes", "reason"),
    [
        ({}, {"sub": None}, "'sub' claim"),
        ({}, {"sub": ""}, "'sub' claim"),
        ({}, {"sub": "x" * 256}, "'sub' claim"),
        ({"typ": "id_token+jwt"}, {}, "'typ' header is 'id_token+jwt': not an access token"),
        ({"typ": 7}, {}, "'typ' header"),
        ({}, {"typ": "ID"}, "'typ' claim is 'ID'"),
        ({}, {"typ": "Refresh"}, "'typ' claim is 'Refresh'"),
        ({}, {"token_use": "id"}, "'token_use' claim is 'id'"),
        ({}, {"at_hash": "abc"}, "it is an ID token"),
        ({}, {"c_hash": "abc"}, "it is an ID token"),
    ],
)
def test_identity_refusals(header: dict[str, Any], changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ApiError) as refused:
        _identity(header, claims(**changes))
    assert refused.value.status == 401
    assert refused.value.error == "invalid_token"
    assert reason in refused.value.detail


@pytest.mark.parametrize(
    ("header", "changes"),
    [
        ({}, {}),
        ({"typ": "JWT"}, {}),
        ({"typ": "at+jwt"}, {}),
        ({"typ": "application/at+JWT"}, {}),
        ({}, {"typ": "Bearer"}),  # Keycloak's access tokens
        ({}, {"token_use": "access"}),  # Cognito's
        # Tenant and role claims are not refused: they are ignored.
        ({}, {"moltbot_tenant": "t_x", "moltbot_role": "owner"}),
    ],
)
def test_access_tokens_name_an_identity(header: dict[str, Any], changes: dict[str, Any]) -> None:
    identity = _identity(header, claims(**changes))
    assert (identity.issuer, identity.subject) == (ISSUER, "alice")


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
    }
    oidc = Settings.load(environ, data_dir=data).oidc_config()
    assert oidc is not None
    assert (oidc.issuer, oidc.audience) == (ISSUER, AUDIENCE)
    # Tenant and role no longer come from claims: a setting naming one is refused at start.
    for retired in ("MOLTBOT_OIDC_TENANT_CLAIM", "MOLTBOT_OIDC_ROLE_CLAIM"):
        with pytest.raises(ValueError, match=f"{retired} is no longer read"):
            Settings.load(environ | {retired: "org"}, data_dir=data)
    for missing in ("MOLTBOT_OIDC_ISSUER", "MOLTBOT_OIDC_AUDIENCE", "MOLTBOT_OIDC_JWKS_URL"):
        with pytest.raises(ValueError, match="MOLTBOT_OIDC_"):
            Settings.load({k: v for k, v in environ.items() if k != missing}, data_dir=data)
    with pytest.raises(ValueError, match="https"):
        Settings.load(environ | {"MOLTBOT_OIDC_JWKS_URL": "http://idp.example.test/jwks"}, data_dir=data)
