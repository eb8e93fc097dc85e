"""Pairing a Personal Bridge device and proving its identity on the tunnel, over the whole
product: codes are single use and expire, a forged or replayed signature is refused, other
tenants cannot see or revoke a device, and a revoked device is closed and stays out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from adapters.bridge.identity import public_key, sign_challenge
from domain import devices, ids
from domain import events as ev
from domain import tunnel as t
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about pairing devices; the limits: test_plan_limits.py


async def pairing_code(api: httpx.AsyncClient, account: dict[str, str]) -> str:
    response = await api.post("/v1/devices/pairing-codes", headers=_auth(account))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["qr_svg"].startswith("<svg")
    code: str = body["code"]
    return code


async def pair(
    api: httpx.AsyncClient, code: str, key: Ed25519PrivateKey, name: str = "Ada's Mac"
) -> httpx.Response:
    return await api.post(
        "/v1/devices/pair",
        json={"code": code, "public_key": devices.encode_key(public_key(key)), "name": name},
    )


async def paired_device(
    api: httpx.AsyncClient, account: dict[str, str]
) -> tuple[dict[str, Any], Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    response = await pair(api, await pairing_code(api, account), key)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body, key


def tunnel_url(api: httpx.AsyncClient) -> str:
    return str(api.base_url).replace("http://", "ws://") + "/v1/bridge/tunnel"


async def say_hello(
    api: httpx.AsyncClient,
    device: dict[str, Any],
    key: Ed25519PrivateKey,
    *,
    tenant_id: str | None = None,
    nonce: bytes | None = None,
    capabilities: tuple[str, ...] = (),
) -> tuple[ClientConnection, bytes]:
    """Open a tunnel and answer its challenge as ``device`` with ``key`` (signing ``nonce``
    instead of the one offered, to replay); the socket and the nonce the cloud offered."""
    socket = await ws_connect(tunnel_url(api))
    challenge = t.to_device(await socket.recv())
    assert isinstance(challenge, t.Challenge)
    offered = devices.decode_key(challenge.nonce)
    hello = t.Hello(
        tenant_id=tenant_id or device["tenant_id"], device_id=device["device_id"],
        signature=sign_challenge(key, nonce or offered, device["device_id"]), version="test",
        platform="linux", capabilities=capabilities,
    )  # fmt: skip
    await socket.send(t.encode(hello))
    return socket, offered


async def open_tunnel(
    api: httpx.AsyncClient,
    device: dict[str, Any],
    key: Ed25519PrivateKey,
    *,
    capabilities: tuple[str, ...] = (),
) -> tuple[ClientConnection, t.Welcome]:
    socket, _ = await say_hello(api, device, key, capabilities=capabilities)
    welcome = t.to_device(await asyncio.wait_for(socket.recv(), 15))
    assert isinstance(welcome, t.Welcome), welcome
    return socket, welcome


async def closed_with(socket: ClientConnection) -> int:
    try:
        async with asyncio.timeout(10):
            async for _ in socket:
                pass
    except ConnectionClosed:
        pass
    assert socket.close_code is not None
    return socket.close_code


async def device_list(api: httpx.AsyncClient, account: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await api.get("/v1/devices", headers=_auth(account), params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def until_device(
    api: httpx.AsyncClient, account: dict[str, str], device_id: str, state: str
) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    for _ in range(200):
        found = [d for d in await device_list(api, account) if d["device_id"] == device_id]
        if found and found[0]["state"] == state:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{device_id} never became {state}: {found}")


async def test_a_code_pairs_one_device_once(api: httpx.AsyncClient, stack: Stack) -> None:
    account = await _signup(api, "pair-once@example.com")
    code = await pairing_code(api, account)
    assert len(devices.normalize_code(code) or "") == devices.CODE_LENGTH
    key = Ed25519PrivateKey.generate()
    # typed in lower case and without the dash, as people do
    first = await pair(api, code.lower().replace("-", ""), key)
    assert first.status_code == 201, first.text
    paired = first.json()
    assert paired["tenant_id"] == account["tenant_id"]
    assert paired["fingerprint"] == devices.fingerprint(public_key(key))

    again = await pair(api, code, Ed25519PrivateKey.generate())
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_code"

    listed = await device_list(api, account, min_seq=paired["seq"])
    assert [(d["device_id"], d["name"], d["state"]) for d in listed] == [
        (paired["device_id"], "Ada's Mac", "offline")
    ]


async def test_wrong_and_expired_codes_store_nothing(api: httpx.AsyncClient, stack: Stack) -> None:
    account = await _signup(api, "pair-bad@example.com")
    key = Ed25519PrivateKey.generate()
    for wrong in ("AAAA-AAAA", "not a code", "23456789"):
        response = await pair(api, wrong, key)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_code"
    code = await pairing_code(api, account)
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE gateway.pairing_codes SET expires_at = %s WHERE code_hash = %s",
            (
                datetime.now(UTC) - timedelta(seconds=1),
                devices.code_digest(devices.normalize_code(code) or ""),
            ),
        )
    expired = await pair(api, code, key)
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_code"
    bad_key = await api.post(
        "/v1/devices/pair", json={"code": await pairing_code(api, account), "public_key": "abc"}
    )
    assert bad_key.status_code == 400
    assert bad_key.json()["field"] == "public_key"
    await stack.wait_caught_up()
    assert await device_list(api, account) == []


async def test_only_owners_and_admins_make_codes(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/devices/pairing-codes")
    assert response.status_code == 401


async def test_the_tunnel_wants_this_devices_signature_of_a_fresh_nonce(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "tunnel-id@example.com")
    device, key = await paired_device(api, account)

    # a forged signature: another key
    socket, nonce = await say_hello(api, device, Ed25519PrivateKey.generate())
    assert await closed_with(socket) == t.CLOSE_UNAUTHENTICATED

    # a replayed signature: right key, an old nonce
    socket, _ = await say_hello(api, device, key, nonce=nonce)
    assert await closed_with(socket) == t.CLOSE_UNAUTHENTICATED

    # the device under another tenant's name is unknown there
    other = await _signup(api, "tunnel-other@example.com")
    socket, _ = await say_hello(api, device, key, tenant_id=other["tenant_id"])
    assert await closed_with(socket) == t.CLOSE_UNAUTHENTICATED

    # the real one
    socket, welcome = await open_tunnel(api, device, key)
    assert welcome.device_id == device["device_id"]
    online = await until_device(api, account, device["device_id"], "online")
    assert online["version"] == "test"
    await socket.close()
    await until_device(api, account, device["device_id"], "offline")


async def test_revoking_closes_the_tunnel_for_good_and_only_in_its_own_inbox(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "revoke@example.com")
    device, key = await paired_device(api, account)
    socket, _ = await open_tunnel(api, device, key, capabilities=("imessage.read", "imessage.send"))
    await until_device(api, account, device["device_id"], "online")

    stranger = await _signup(api, "revoke-stranger@example.com")
    assert await device_list(api, stranger) == []
    refused = await api.delete(f"/v1/devices/{device['device_id']}", headers=_auth(stranger))
    assert refused.status_code == 404

    revoked = await api.delete(f"/v1/devices/{device['device_id']}", headers=_auth(account))
    assert revoked.status_code == 202, revoked.text
    assert await closed_with(socket) == t.CLOSE_REVOKED

    listed = await until_device(api, account, device["device_id"], "revoked")
    [imessage] = listed["connections"]
    assert (imessage["channel"], imessage["mode"], imessage["device_id"]) == (
        "imessage",
        "bridge",
        device["device_id"],
    )
    assert (imessage["state"], imessage["state_code"]) == ("action_required", "device_revoked")

    socket, _ = await say_hello(api, device, key)
    assert await closed_with(socket) == t.CLOSE_REVOKED


def _conversation(
    device: dict[str, Any], connection_id: str, guid: str, **envelope: Any
) -> ev.ConversationCreated:
    return ev.new_event(
        ev.ConversationCreated,
        tenant_id=envelope.get("tenant_id", device["tenant_id"]),
        aggregate_id=ids.stable_id(ids.CONVERSATION, f"imessage:{connection_id}:{guid}"),
        actor=envelope.get("actor", devices.actor(device["device_id"])),
        data=ev.ConversationCreatedData(
            channel="imessage", connection_id=connection_id, kind="direct", title=guid, external_id=guid
        ),
    )


async def _answer_to(socket: ClientConnection, seq: int, event: ev.Event) -> t.ToDevice:
    await socket.send(f'{{"op":"event","seq":{seq},"event":{msgspec.json.encode(event).decode()}}}')
    while True:
        frame = t.to_device(await asyncio.wait_for(socket.recv(), 10))
        if isinstance(frame, t.Ack | t.Refused) and frame.seq == seq:
            return frame


async def test_a_device_writes_only_into_its_own_channels(api: httpx.AsyncClient, stack: Stack) -> None:
    account = await _signup(api, "device-scope@example.com")
    victim = await _signup(api, "device-victim@example.com")
    device, key = await paired_device(api, account)
    socket, welcome = await open_tunnel(api, device, key, capabilities=("imessage.read",))
    connection_id = welcome.connections["imessage"]
    assert connection_id == devices.connection_id(device["device_id"], "imessage")

    own = _conversation(device, connection_id, "iMessage;-;+15550000001")
    assert isinstance(await _answer_to(socket, 1, own), t.Ack)
    probes: list[ev.Event] = [
        _conversation(device, connection_id, "iMessage;-;+15550000002", tenant_id=victim["tenant_id"]),
        _conversation(device, connection_id, "iMessage;-;+15550000003", actor="user:u_1"),
        _conversation(device, devices.connection_id("d_other", "imessage"), "iMessage;-;+15550000004"),
        msgspec.structs.replace(own, aggregate_id=ids.new_id(ids.CONVERSATION), id=ids.ulid()),
        ev.new_event(
            ev.TenantRenamed, tenant_id=device["tenant_id"], aggregate_id=device["tenant_id"],
            actor=devices.actor(device["device_id"]), data=ev.TenantRenamedData(name="pwned"),
        ),
        ev.new_event(
            ev.MessageEdited, tenant_id=device["tenant_id"], aggregate_id=ids.new_id(ids.CONVERSATION),
            actor=devices.actor(device["device_id"]),
            data=ev.MessageEditedData(message_id="m_x", text="edited", edited_at=own.occurred_at),
        ),
    ]  # fmt: skip
    for seq, probe in enumerate(probes, start=2):
        answer = await _answer_to(socket, seq, probe)
        assert isinstance(answer, t.Refused), (probe, answer)
    await socket.send('{"op":"event","seq":99,"event":{"type":"nonsense"}}')
    refused = t.to_device(await asyncio.wait_for(socket.recv(), 10))
    assert isinstance(refused, t.Refused) and refused.seq == 99
    await socket.close()

    await stack.wait_caught_up()
    letters = await stack.store.nc.jetstream().stream_info("DLQ")
    assert letters.state.messages >= len(probes) + 1
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT tenant_id, external_id FROM rm_inbox.conversations WHERE channel = 'imessage'"
        )
        assert await cur.fetchall() == [(device["tenant_id"], "iMessage;-;+15550000001")]
