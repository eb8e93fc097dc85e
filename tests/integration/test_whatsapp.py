"""WhatsApp over the whole product, with the fake phone behind the session's client port
(tests/fakes/whatsapp_client.py): connect through the API, the QR code reaches the owner
live (SSE) and by ``GET /v1/channels/{id}/qr`` but never the log, scanning it connects the
account, a message reaches the inbox, the agent's reply goes out through the same session
(with "typing…"), the session's keys sit where the gateway's role cannot read them, a
phone-side logout asks to scan again, and removing the channel forgets the device.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from adapters.bridge.device import Bridge
from adapters.bridge.identity import Pairing
from adapters.bridge.local_store import LocalStore
from adapters.channels.whatsapp.client import Receipt
from adapters.channels.whatsapp.device import WhatsAppDeviceChannel
from adapters.channels.whatsapp.store import SessionStore
from adapters.postgres import tenancy
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.fakes.whatsapp_client import FakeWhatsApp
from tests.fakes.whatsapp_messages import ALICE, Message, message_ev

# isort: split
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ImageMessage

from tests.integration.conftest import Stack, send_drafts
from tests.integration.test_agent import _until
from tests.integration.test_bridge_pairing import device_list, paired_device
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about WhatsApp; the limits: test_plan_limits.py


@pytest.fixture
def phone() -> FakeWhatsApp:
    return FakeWhatsApp()


@pytest.fixture
def channel_clients(phone: FakeWhatsApp) -> dict[str, Any]:
    return {"whatsapp": phone.new_client}


async def _channel(
    api: httpx.AsyncClient, owner: dict[str, str], connection_id: str
) -> dict[str, Any] | None:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    return next((c for c in channels if c["connection_id"] == connection_id), None)


async def _state(
    api: httpx.AsyncClient, owner: dict[str, str], connection_id: str, code: str
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel is not None and channel["state_code"] == code else None

    return await _until(reached, f"the connection's state {code}", timeout=30)  # type: ignore[no-any-return]


async def _first_live_qr(api: httpx.AsyncClient, owner: dict[str, str]) -> dict[str, Any]:
    """The first ``channel.qr`` signal of the owner's event stream."""
    params = {"types": "channel.qr"}
    async with api.stream("GET", "/v1/events", params=params, headers=_auth(owner)) as response:
        assert response.status_code == 200
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if event.get("event") == "channel.qr":
                    return json.loads(event["data"])  # type: ignore[no-any-return]
                event = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                event[key] = value.strip()
    raise AssertionError("the event stream ended")


async def test_connect_scan_receive_answer_and_log_out_a_whatsapp_account(
    api: httpx.AsyncClient, stack: Stack, phone: FakeWhatsApp, assistant: None
) -> None:
    owner = await _signup(api, "whatsapp-owner@example.com")
    bad_number = await api.post(
        "/v1/channels/whatsapp/connect", json={"phone_number": "0151 23"}, headers=_auth(owner)
    )
    assert (bad_number.status_code, bad_number.json()["field"]) == (400, "phone_number")
    no_device = await api.post("/v1/channels/whatsapp/connect", json={"mode": "bridge"}, headers=_auth(owner))
    assert (no_device.status_code, no_device.json()["field"]) == (400, "device_id")
    unknown = {"mode": "bridge", "device_id": "d_01M8AB25H393CVEWNV43YC81KP"}
    not_mine = await api.post("/v1/channels/whatsapp/connect", json=unknown, headers=_auth(owner))
    assert (not_mine.status_code, not_mine.json()["field"]) == (404, "device_id")

    connected = await api.post("/v1/channels/whatsapp/connect", json={"mode": "cloud"}, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    connection_id = connected.json()["connection_id"]

    # The QR code: shown live and on request, with its lifetime; never in the log.
    waiting = await _state(api, owner, connection_id, "qr_required")
    assert (waiting["state"], waiting["suggested_action"]) == ("connecting", "scan_qr")
    shown = await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))
    assert shown.status_code == 200, shown.text
    first = shown.json()
    assert (first["kind"], first["code"]) == ("qr", phone.qr(phone.current, 0))
    assert first["image"].startswith("data:image/svg+xml")
    live = asyncio.create_task(_first_live_qr(api, owner))
    await asyncio.sleep(0.5)  # the stream is open before WhatsApp rotates the code
    rotated = phone.rotate_qr()
    signal = await asyncio.wait_for(live, 10)
    assert (signal["connection_id"], signal["kind"], signal["code"]) == (connection_id, "qr", rotated)
    assert (await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))).json()["code"] == rotated

    jid = phone.scan()
    channel = await _state(api, owner, connection_id, "ok")
    assert channel["state"] == "connected"
    assert channel["state_message"] == "Connected as Ada (+15551230000)."
    gone = await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))
    assert gone.status_code == 404 and "GET /v1/channels" in gone.json()["detail"]
    log = [record async for record in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
    assert all(b"2@ref" not in record.data for record in log)

    # A message in, the agent's reply out through the same session, typing shown meanwhile.
    now_ms = int(time.time() * 1000)  # the agent leaves old messages alone
    phone.write(
        message_ev(Message(conversation="Hi! Are you open on Sunday?"), wa_id="3EB0A11CE", timestamp=now_ms)
    )

    # The agent drafts (a new connection, the offline model); the owner sends the draft.
    await send_drafts(api, _auth(owner), 1)

    async def answered() -> bool:
        return bool(phone.sent)

    await _until(answered, "the agent's reply through WhatsApp", timeout=30)
    assert phone.sent[0].chat == f"{ALICE}@s.whatsapp.net"
    assert phone.typing == []  # a draft is for the owner: Alice saw no "typing…"
    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    (whatsapp,) = [c for c in conversations if c["channel"] == "whatsapp"]
    assert whatsapp["title"] == "Alice"

    async def sent_in_inbox() -> list[dict[str, Any]] | None:
        items = (
            await api.get(f"/v1/conversations/{whatsapp['conversation_id']}/messages", headers=_auth(owner))
        ).json()["items"]
        return items if any(m["direction"] == "out" and m["status"] == "sent" for m in items) else None

    messages = await _until(sent_in_inbox, "the reply recorded as sent")
    assert len(messages) == 2  # the question and one reply: WhatsApp's echo of it is not stored again

    # WhatsApp's receipts move the reply forward: delivered, then read (never back).
    reply = phone.sent[0]
    chat = f"{ALICE}@s.whatsapp.net"
    phone.happen(Receipt(chat, (reply.whatsapp_id,), "read", datetime.now(UTC)))
    phone.happen(Receipt(chat, (reply.whatsapp_id,), "delivered", datetime.now(UTC)))

    async def read_in_inbox() -> bool:
        items = (
            await api.get(f"/v1/conversations/{whatsapp['conversation_id']}/messages", headers=_auth(owner))
        ).json()["items"]
        return any(m["direction"] == "out" and m["status"] == "read" for m in items)

    await _until(read_in_inbox, "the reply marked read")
    await stack.wait_caught_up()
    assert await read_in_inbox()  # the later "delivered" did not undo it

    # A photo: its file is fetched while the session holds the message with its keys.
    photo = ImageMessage(
        caption="our menu", mimetype="image/jpeg", URL="https://mmg.whatsapp.net/x", directPath="/x",
        mediaKey=b"k" * 32, fileLength=4,
    )  # fmt: skip
    phone.write(
        message_ev(Message(imageMessage=photo), wa_id="3EB0F0705", timestamp=now_ms), file=b"\xff\xd8\xff\xe0"
    )

    async def media_stored() -> list[dict[str, Any]] | None:
        log = [record async for record in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
        found = [json.loads(r.data) for r in log if b'"media.available"' in r.data]
        return found or None

    (available,) = await _until(media_stored, "the photo in the media store")
    assert (available["data"]["size"], available["data"]["mime"]) == (4, "image/jpeg")

    # The session's keys: kept for the connection, out of the gateway role's reach.
    pool = tenancy.pool(stack.database_url, max_size=1, confined=False)
    await pool.open()
    try:
        assert await SessionStore(pool).jid(connection_id) == jid
    finally:
        await pool.close()
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        await conn.execute("SET ROLE moltbot_gateway")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SELECT jid FROM whatsapp.devices")

    # The phone removes the linked device: the page asks to scan again, the keys are gone.
    phone.log_out()
    logged_out = await _state(api, owner, connection_id, "logged_out")
    assert (logged_out["state"], logged_out["suggested_action"]) == ("action_required", "scan_again")
    pool = tenancy.pool(stack.database_url, max_size=1, confined=False)
    await pool.open()
    try:
        assert await SessionStore(pool).jid(connection_id) is None
    finally:
        await pool.close()


async def test_removing_a_whatsapp_channel_forgets_its_device(
    api: httpx.AsyncClient, stack: Stack, phone: FakeWhatsApp
) -> None:
    owner = await _signup(api, "whatsapp-leaver@example.com")
    connected = await api.post(
        "/v1/channels/whatsapp/connect", json={"phone_number": "+49 151 2345 6789"}, headers=_auth(owner)
    )
    connection_id = connected.json()["connection_id"]
    await _state(api, owner, connection_id, "pair_code_required")
    code = (await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))).json()
    assert (code["kind"], code["code"], code["image"]) == ("pair_code", "ABCD-EFGH", None)
    assert phone.phone_codes == ["4915123456789"]
    phone.scan()
    await _state(api, owner, connection_id, "ok")

    removed = await api.delete(f"/v1/channels/{connection_id}", headers=_auth(owner))
    assert removed.status_code == 202
    await stack.wait_caught_up()
    pool = tenancy.pool(stack.database_url, max_size=1, confined=False)
    await pool.open()
    try:
        store = SessionStore(pool)
        assert await store.forget_removed() == [connection_id]
        assert await store.jid(connection_id) is None
    finally:
        await pool.close()

    async def stopped() -> bool:
        return phone.clients[-1].stopped

    await _until(stopped, "the session to stop")


async def test_without_a_network_the_channel_says_so_within_a_minute(
    api: httpx.AsyncClient, phone: FakeWhatsApp
) -> None:
    phone.network = False
    owner = await _signup(api, "whatsapp-offline@example.com")
    connected = await api.post("/v1/channels/whatsapp/connect", json={}, headers=_auth(owner))
    channel = await _state(api, owner, connected.json()["connection_id"], "network_unreachable")
    assert channel["state"] == "degraded"
    assert "does not resolve" in channel["state_message"]


async def test_whatsapp_on_the_personal_bridge_keeps_its_session_on_the_device(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path, assistant: None
) -> None:
    owner = await _signup(api, "whatsapp-bridge@example.com")
    device, key = await paired_device(api, owner)
    on_device = FakeWhatsApp(number="15557770000", push_name="Grace")
    data_dir = tmp_path / "bridge"
    store = LocalStore(data_dir)

    def whatsapp(connection_id: str, show: Any) -> WhatsAppDeviceChannel:
        return WhatsAppDeviceChannel(
            tenant_id=device["tenant_id"], device_id=device["device_id"], connection_id=connection_id,
            data_dir=data_dir, new_client=on_device.new_client, show=show, first_backoff=0.2,
        )  # fmt: skip

    pairing = Pairing(
        gateway=str(api.base_url), tenant_id=device["tenant_id"], device_id=device["device_id"],
        name=device["name"], fingerprint=device["fingerprint"],
    )  # fmt: skip
    bridge = Bridge(
        pairing, key, store, [], version="test", platform="test", on_demand={"whatsapp": whatsapp}
    )
    running = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(bridge.connected.wait(), 15)

        async def offers_whatsapp() -> bool:
            return any("whatsapp.read" in d["capabilities"] for d in await device_list(api, owner))

        await _until(offers_whatsapp, "the device to offer WhatsApp")
        body = {"mode": "bridge", "device_id": device["device_id"]}
        connected = await api.post("/v1/channels/whatsapp/connect", json=body, headers=_auth(owner))
        assert connected.status_code == 202, connected.text
        connection_id = connected.json()["connection_id"]
        again = await api.post("/v1/channels/whatsapp/connect", json=body, headers=_auth(owner))
        assert (again.status_code, again.json()["error"]) == (409, "already_connected")

        # The code comes from the device, through the tunnel, to the owner's screen only.
        await _state(api, owner, connection_id, "qr_required")
        shown = (await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))).json()
        assert shown["code"] == on_device.qr(on_device.current, 0)
        jid = on_device.scan()
        channel = await _state(api, owner, connection_id, "ok")
        assert (channel["mode"], channel["device_id"]) == ("bridge", device["device_id"])
        assert channel["state_message"] == "Connected as Grace (+15557770000)."
        assert await store.cursor(f"whatsapp:{connection_id}") == jid.encode()  # kept on the device

        now_ms = int(time.time() * 1000)
        on_device.write(
            message_ev(Message(conversation="Is the shop open?"), wa_id="3EB0B41D6E", timestamp=now_ms)
        )

        await send_drafts(api, _auth(owner), 1)  # the agent's draft, sent by the owner

        async def answered() -> bool:
            return bool(on_device.sent)

        await _until(answered, "the agent's reply through the device's WhatsApp", timeout=30)
        assert on_device.sent[0].chat == f"{ALICE}@s.whatsapp.net"
        log = [record async for record in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
        received = [json.loads(r.data) for r in log if b'"message.received"' in r.data]
        assert [e["actor"] for e in received] == [f"device:{device['device_id']}"]
        assert all(b"2@ref" not in record.data for record in log)

        # Removing the channel stops it on the device, which forgets the session.
        removed = await api.delete(f"/v1/channels/{connection_id}", headers=_auth(owner))
        assert removed.status_code == 202

        async def forgotten() -> bool:
            return on_device.clients[-1].stopped and await store.cursor(f"whatsapp:{connection_id}") == b""

        await _until(forgotten, "the device to stop WhatsApp and forget its session")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        store.close()
