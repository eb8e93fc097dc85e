"""Telegram over the whole product: connect a bot through the API (real aiogram against a
local fake of the Bot API), a person's message reaches the inbox, the offline agent's reply
goes back through Telegram exactly once even with two connector replicas, the token never
shows, and disconnecting stops the session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.vault.cipher import Keyring
from moltbot.roles import ChannelSettings, run_connectors
from tests.fakes.telegram_api import ADA, CHARLES, FakeTelegram, fake_telegram, private_chat, user
from tests.integration.conftest import Stack
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as server:
        yield server


@pytest.fixture
def telegram_api_base(tg: FakeTelegram) -> str:
    return tg.base_url


async def _channel(
    api: httpx.AsyncClient, owner: dict[str, str], connection_id: str
) -> dict[str, Any] | None:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    return next((c for c in channels if c["connection_id"] == connection_id), None)


async def test_connect_receive_answer_and_disconnect_a_telegram_bot(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram, keyring: Keyring, assistant: None
) -> None:
    owner = await _signup(api, "telegram-owner@example.com")
    token = tg.add_bot("ada_shop_bot", "Ada's shop")

    refused = await api.post(
        "/v1/channels/telegram/connect", json={"bot_token": "123:nope"}, headers=_auth(owner)
    )
    assert refused.status_code == 400
    assert refused.json()["field"] == "bot_token"
    assert "@BotFather" in refused.json()["detail"]

    connected = await api.post(
        "/v1/channels/telegram/connect", json={"bot_token": token}, headers=_auth(owner)
    )
    assert connected.status_code == 202, connected.text
    assert token not in connected.text
    connection_id = connected.json()["connection_id"]
    assert connected.json()["display_name"] == "@ada_shop_bot"

    async def is_connected() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel and channel["state"] == "connected" else None

    channel = await _until(is_connected, "the bot to be connected")
    assert "@ada_shop_bot" in channel["state_message"]

    # A second connector replica: the session stays single, each reply goes out once.
    replica = asyncio.create_task(
        run_connectors(
            stack.nats_url, stack.spec, channels=ChannelSettings(
                stack.database_url, keyring, telegram_api_base=tg.base_url, holder="replica-2"
            ),
        )
    )  # fmt: skip
    try:
        people = [ADA, CHARLES, user(5550001, "Grace", "Hopper")]
        for person in people:
            tg.push_message(private_chat(person), person, f"Hi, this is {person['first_name']}. Open today?")

        async def three_replies() -> list[dict[str, Any]] | None:
            return tg.sent if len(tg.sent) >= 3 else None

        await _until(three_replies, "three replies through Telegram", timeout=30)
        await asyncio.sleep(2)  # time for any duplicate to show up
    finally:
        replica.cancel()
        await asyncio.gather(replica, return_exceptions=True)
    assert sorted(m["chat_id"] for m in tg.sent) == sorted(p["id"] for p in people)
    assert all('Open today?"' in m["text"] for m in tg.sent)

    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    telegram = [c for c in conversations if c["channel"] == "telegram"]
    assert {c["title"] for c in telegram} == {"Ada Lovelace", "Charles Babbage", "Grace Hopper"}
    log = [record async for record in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
    assert all(token.encode() not in record.data for record in log)

    removed = await api.delete(f"/v1/channels/{connection_id}", headers=_auth(owner))
    assert removed.status_code == 202
    assert await _channel(api, owner, connection_id) is None
    await asyncio.sleep(3)  # the session manager notices and stops polling
    polls = sum(1 for request in tg.requests if request[1].lower() == "getupdates")
    await asyncio.sleep(2)
    assert sum(1 for request in tg.requests if request[1].lower() == "getupdates") == polls
    webchat = next(
        c for c in (await api.get("/v1/channels", headers=_auth(owner))).json() if c["channel"] == "webchat"
    )
    refused_removal = await api.delete(f"/v1/channels/{webchat['connection_id']}", headers=_auth(owner))
    assert refused_removal.status_code == 400
