"""Telegram over the whole product: connect a bot through the API (real aiogram against a
local fake of the Bot API), a person's message reaches the inbox, the offline agent's reply
goes back through Telegram exactly once even with two connector replicas, the token never
shows, and disconnecting stops the session."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import pytest

from adapters.channels.endpoints import ProviderEndpoints
from adapters.vault.cipher import Keyring
from domain import events as ev
from moltbot.roles import ChannelSettings, run_connectors
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_api import user as discord_user
from tests.fakes.slack_api import FakeSlack, signed_request, url_verification
from tests.fakes.telegram_api import ADA, CHARLES, FakeTelegram, private_chat, user
from tests.integration.conftest import Stack, send_drafts
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
def endpoints(all_fakes_endpoints: ProviderEndpoints) -> ProviderEndpoints:
    """Every provider at its local fake."""
    return all_fakes_endpoints


async def _channel(
    api: httpx.AsyncClient, owner: dict[str, str], connection_id: str
) -> dict[str, Any] | None:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    return next((c for c in channels if c["connection_id"] == connection_id), None)


async def test_connect_receive_answer_and_disconnect_a_telegram_bot(
    api: httpx.AsyncClient,
    stack: Stack,
    tg: FakeTelegram,
    keyring: Keyring,
    endpoints: ProviderEndpoints,
    assistant: None,
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
                stack.database_url, keyring, endpoints=endpoints, holder="replica-2"
            ),
        )
    )  # fmt: skip
    try:
        people = [ADA, CHARLES, user(5550001, "Grace", "Hopper")]
        for person in people:
            tg.push_message(private_chat(person), person, f"Hi, this is {person['first_name']}. Open today?")
        # A new Telegram bot starts in draft mode (and the offline model only drafts): the
        # agent proposes, the owner sends; nothing reached Telegram before.
        drafts = await send_drafts(api, _auth(owner), 3)
        assert all('Open today?"' in draft["text"] for draft in drafts)

        async def three_replies() -> list[dict[str, Any]] | None:
            return tg.sent if len(tg.sent) >= 3 else None

        await _until(three_replies, "three replies through Telegram", timeout=30)
        await asyncio.sleep(2)  # time for any duplicate to show up
    finally:
        replica.cancel()
        await asyncio.gather(replica, return_exceptions=True)
    assert sorted(m["chat_id"] for m in tg.sent) == sorted(p["id"] for p in people)
    assert not tg.chat_actions, "a draft is for the owner: the contact never saw typing"
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


async def test_slack_by_socket_mode_and_by_signed_webhook(
    api: httpx.AsyncClient, stack: Stack, slack_fake: FakeSlack, assistant: None
) -> None:
    owner = await _signup(api, "slack-owner@example.com")
    workspace = slack_fake.add_workspace("Analytical Engines")
    general = slack_fake.add_channel(workspace.team, "general")

    missing = await api.post(
        "/v1/channels/slack/connect", json={"bot_token": workspace.bot_token}, headers=_auth(owner)
    )
    assert missing.status_code == 400
    assert missing.json()["field"] == "app_token"
    body = {"bot_token": workspace.bot_token, "app_token": workspace.app_token}
    connected = await api.post("/v1/channels/slack/connect", json=body, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    assert workspace.bot_token not in connected.text
    connection_id = connected.json()["connection_id"]

    async def is_connected() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel and channel["state"] == "connected" else None

    await _until(is_connected, "the Slack app to be connected")
    # A mention in a thread: its own conversation (kind thread), answered in the thread.
    top = slack_fake.message(workspace.team, general, "U0ADA", "Release notes?")
    slack_fake.push_event(top)
    thread_ts = top["event"]["ts"]
    reply = slack_fake.message(
        workspace.team, general, "U0ADA", f"<@{workspace.team.bot_user_id}> ship it?", thread_ts=thread_ts
    )
    slack_fake.push_event(reply)

    # The agent drafts (a new connection, the offline model); the owner sends its draft.
    [draft] = await send_drafts(api, _auth(owner), 1)
    assert "ship it?" in draft["text"]

    async def answered_in_thread() -> list[dict[str, Any]] | None:
        return [m for m in slack_fake.sent if m.get("thread_ts") == thread_ts] or None

    [sent] = await _until(answered_in_thread, "the agent's answer in the thread", timeout=30)
    plan = slack_fake.upload(workspace.team, "plan.png", b"\x89PNG\r\n\x1a\n" + bytes(500), "image/png")
    slack_fake.push_event(slack_fake.message(workspace.team, general, "U0ADA", "the plan", files=[plan]))

    async def stored_file() -> list[ev.MediaAvailable] | None:
        found = [
            s.event
            async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
            if isinstance(s.event, ev.MediaAvailable)
        ]
        return found or None

    [available] = await _until(stored_file, "the shared file in our storage")
    assert (available.data.mime, available.data.size) == ("image/png", 508)
    assert "ship it?" in sent["text"]
    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    assert sorted(c["kind"] for c in conversations if c["channel"] == "slack") == ["group", "thread"]

    # The Events API route: signed requests are stored, anything else is refused with 401.
    other = slack_fake.add_workspace("Difference Engines")
    channel = slack_fake.add_channel(other.team, "support")
    body = {"bot_token": other.bot_token, "signing_secret": "8f742231b10e8888abcd99yyyzzz85a5"}
    hooked = await api.post("/v1/channels/slack/connect", json=body, headers=_auth(owner))
    assert hooked.status_code == 202, hooked.text
    url = f"/v1/webhooks/slack/{hooked.json()['connection_id']}"
    headers, raw = signed_request(body["signing_secret"], url_verification("abc"))
    assert (await api.post(url, content=raw, headers=headers)).json() == {"challenge": "abc"}
    event = slack_fake.message(other.team, channel, "U0BOB", "Is the webhook on?")
    forged_headers, forged = signed_request("not-the-secret", event)
    assert (await api.post(url, content=forged, headers=forged_headers)).status_code == 401
    stale_headers, stale = signed_request(body["signing_secret"], event, timestamp=int(time.time()) - 600)
    assert (await api.post(url, content=stale, headers=stale_headers)).status_code == 401
    headers, raw = signed_request(body["signing_secret"], event)
    accepted = await api.post(url, content=raw, headers=headers)
    assert accepted.status_code == 200
    log = [s.event async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")]
    received = [e for e in log if isinstance(e, ev.MessageReceived) and e.data.channel == "slack"]
    assert [e.data.text for e in received].count("Is the webhook on?") == 1


async def test_a_telegram_photo_is_stored_and_served_to_its_tenant_only(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram
) -> None:
    owner = await _signup(api, "photo-owner@example.com")
    stranger = await _signup(api, "photo-stranger@example.com")
    token = tg.add_bot("photo_shop_bot")
    connected = await api.post(
        "/v1/channels/telegram/connect", json={"bot_token": token}, headers=_auth(owner)
    )
    assert connected.status_code == 202
    tg.push_message(private_chat(ADA), ADA, caption="Is this the right part?", photo=True)

    async def message_with_media() -> dict[str, Any] | None:
        conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
        for conversation in conversations:
            page = await api.get(
                f"/v1/conversations/{conversation['conversation_id']}/messages", headers=_auth(owner)
            )
            for message in page.json()["items"]:
                if message["media"]:
                    return message  # type: ignore[no-any-return]
        return None

    message = await _until(message_with_media, "the photo in the inbox", timeout=30)
    assert message["text"] == "Is this the right part?"
    [media] = message["media"]
    assert media["mime"] == "image/jpeg"
    served = await api.get(media["url"], headers=_auth(owner))
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.content.startswith(b"\xff\xd8\xff")
    assert len(served.content) == media["size"]
    assert (await api.get(media["url"], headers=_auth(stranger))).status_code == 404
    available = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if isinstance(s.event, ev.MediaAvailable)
    ]
    assert len(available) == 1
    assert available[0].data.sha256 == hashlib.sha256(served.content).hexdigest()


async def test_a_discord_bot_connects_hears_a_mention_and_answers(
    api: httpx.AsyncClient, discord_fake: FakeDiscord, assistant: None
) -> None:
    owner = await _signup(api, "discord-owner@example.com")
    token = discord_fake.add_bot("moltbot", "Moltbot")
    guild = discord_fake.add_guild("Analytical Engine Club", ["general"])
    general = guild["channels"][0]["id"]
    connected = await api.post(
        "/v1/channels/discord/connect", json={"bot_token": token}, headers=_auth(owner)
    )
    assert connected.status_code == 202, connected.text
    connection_id = connected.json()["connection_id"]

    async def is_connected() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel and channel["state"] == "connected" else None

    await _until(is_connected, "the Discord bot to be connected")
    ada = discord_user(4242, "ada", "Ada Lovelace")
    discord_fake.push_message(general, ada, "Good morning everyone")  # no mention: the agent stays quiet
    discord_fake.push_message(
        general, ada, "the broken part", attachments=[{"filename": "part.png", "content_type": "image/png"}]
    )
    bot = discord_fake.bot_user(token)
    discord_fake.push_message(general, ada, f"<@{bot['id']}> what time is it?", mentions=[bot])
    discord_fake.push_message(general, ada, "(asking for the shop)")  # a follow-up in the burst

    # One draft for the burst (a new connection drafts; the offline model only drafts), sent
    # by the owner: the contact saw no "typing…" while the agent wrote it.
    await send_drafts(api, _auth(owner), 1)

    async def answered() -> list[dict[str, Any]] | None:
        return discord_fake.sent or None

    [sent] = await _until(answered, "the agent's answer in Discord", timeout=30)
    assert not discord_fake.typing
    assert sent["channel_id"] == general
    # One answer for the burst, though only its first message called the agent; the
    # offline model quotes the latest turn of what it was given.
    assert '"(asking for the shop)"' in sent["content"]
    await asyncio.sleep(1.5)
    assert len(discord_fake.sent) == 1

    async def photo() -> list[dict[str, Any]] | None:
        conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
        page = await api.get(
            f"/v1/conversations/{conversations[0]['conversation_id']}/messages", headers=_auth(owner)
        )
        return [m for m in page.json()["items"] if m["media"]] or None

    [with_media] = await _until(photo, "the attachment in our storage")
    served = await api.get(with_media["media"][0]["url"], headers=_auth(owner))
    assert served.headers["content-type"] == "image/png"
    assert served.content.startswith(b"\x89PNG")


@pytest.fixture
def public_url() -> str:
    return "https://moltbot.example"


async def test_telegram_webhook_mode_checks_the_secret_header(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram
) -> None:
    owner = await _signup(api, "webhook-owner@example.com")
    token = tg.add_bot("hooked_bot")
    body = {"bot_token": token, "mode": "webhook"}
    connected = await api.post("/v1/channels/telegram/connect", json=body, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    connection_id = connected.json()["connection_id"]
    webhook = tg.webhooks[token]
    assert webhook["url"] == f"https://moltbot.example/v1/webhooks/telegram/{connection_id}"
    assert len(webhook["secret_token"]) >= 32
    assert webhook["secret_token"] not in connected.text

    update = {"update_id": 1, "message": tg.message(private_chat(CHARLES), CHARLES, "Hello via webhook")}
    path = f"/v1/webhooks/telegram/{connection_id}"
    wrong = await api.post(path, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
    assert wrong.status_code == 401
    assert (await api.post(path, json=update)).status_code == 401
    for _ in range(2):  # Telegram retries a delivery it did not see answered: stored once
        right = await api.post(
            path, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": webhook["secret_token"]}
        )
        assert right.status_code == 200
    received = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if isinstance(s.event, ev.MessageReceived)
    ]
    assert [e.data.text for e in received] == ["Hello via webhook"]
    await asyncio.sleep(1)
    assert not any(request[1].lower() == "getupdates" for request in tg.requests)  # no polling


async def test_the_generic_channel_routes_answer_what_the_registry_does_not_describe(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """The connect, webhook and install routes serve the registry's kinds only: an unknown
    kind, a kind connected otherwise or one that takes no webhook is a 404, a connect body
    of the wrong shape a 400 naming its field."""
    owner = await _signup(api, "generic-routes@example.com")
    for path in ("/v1/channels/fax/connect", "/v1/channels/webchat/connect"):
        answer = await api.post(path, json={"bot_token": "x"}, headers=_auth(owner))
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), path
    for path in ("/v1/webhooks/fax/cn_1", "/v1/webhooks/discord/cn_1", "/v1/webhooks/telegram/cn_1"):
        answer = await api.post(path, content=b"{}")
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), path
    for path in ("/v1/channels/telegram/install", "/v1/channels/fax/install"):
        answer = await api.get(path, headers=_auth(owner))
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), path
    # Discord installs by OAuth ("Add to server"), once the deployment has its application.
    unset = await api.get("/v1/channels/discord/install", headers=_auth(owner))
    assert (unset.status_code, unset.json()["error"]) == (503, "not_configured")
    assert "MOLTBOT_DISCORD_CLIENT_ID" in unset.json()["detail"]
    wrong = await api.post("/v1/channels/discord/connect", json={"bot_token": 7}, headers=_auth(owner))
    assert (wrong.status_code, wrong.json()["error"], wrong.json()["field"]) == (
        400,
        "invalid_request",
        "bot_token",
    )
    extra = await api.post(
        "/v1/channels/discord/connect", json={"bot_token": "a.b.c", "mode": "x"}, headers=_auth(owner)
    )
    assert (extra.status_code, extra.json()["field"]) == (400, "mode")
    missing = await api.post("/v1/channels/telegram/connect", json={}, headers=_auth(owner))
    assert (missing.status_code, missing.json()["field"]) == (400, "bot_token")


async def _paused(api: httpx.AsyncClient, owner: dict[str, str], channel: str) -> dict[str, Any] | None:
    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    return next((c for c in conversations if c["channel"] == channel and c["agent_paused_until"]), None)


async def test_the_owner_answering_in_discord_or_slack_pauses_the_agent_there(
    api: httpx.AsyncClient, discord_fake: FakeDiscord, slack_fake: FakeSlack, assistant: None
) -> None:
    owner = await _signup(api, "takeover-owner@example.com")
    # Discord: the bot's application says who owns it.
    boss = discord_user(7777, "boss", "The Boss")
    token = discord_fake.add_bot("helper", "Helper", owner=boss)
    general = discord_fake.add_guild("Takeover Club", ["general"])["channels"][0]["id"]
    connected = await api.post(
        "/v1/channels/discord/connect", json={"bot_token": token}, headers=_auth(owner)
    )
    assert connected.status_code == 202, connected.text

    async def discord_ready() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connected.json()["connection_id"])
        return channel if channel and channel["state"] == "connected" else None

    await _until(discord_ready, "the Discord bot to be connected")
    discord_fake.push_message(general, boss, "I'm on it, Ada.")
    paused = await _until(lambda: _paused(api, owner, "discord"), "the agent to step back on Discord")
    [mine] = (
        await api.get(f"/v1/conversations/{paused['conversation_id']}/messages", headers=_auth(owner))
    ).json()["items"]
    assert (mine["direction"], mine["sender_name"], mine["text"]) == ("out", "The Boss", "I'm on it, Ada.")

    # Slack: the owner names their member id when connecting with tokens.
    workspace = slack_fake.add_workspace("Takeover Works")
    support = slack_fake.add_channel(workspace.team, "support")
    body = {"bot_token": workspace.bot_token, "app_token": workspace.app_token}
    wrong = await api.post(
        "/v1/channels/slack/connect", json={**body, "owner_user_id": "boss"}, headers=_auth(owner)
    )
    assert (wrong.status_code, wrong.json()["field"]) == (400, "owner_user_id")
    slack = await api.post(
        "/v1/channels/slack/connect", json={**body, "owner_user_id": "UBOSS"}, headers=_auth(owner)
    )
    assert slack.status_code == 202, slack.text

    async def slack_ready() -> dict[str, Any] | None:
        channel = await _channel(api, owner, slack.json()["connection_id"])
        return channel if channel and channel["state"] == "connected" else None

    await _until(slack_ready, "the Slack app to be connected")
    slack_fake.push_event(slack_fake.message(workspace.team, support, "UBOSS", "Leave this to me."))
    await _until(lambda: _paused(api, owner, "slack"), "the agent to step back on Slack")
