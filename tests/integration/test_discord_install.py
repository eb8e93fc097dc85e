""" "Add to server" over the whole product: the gateway's install flow (single-use state bound
to the browser, the inbox confirmed) with the deployment's Discord application, the code
exchanged at the fake's ``POST /oauth2/token``, and the connection's session keeping to the
one server it was added to, while the same shared bot is in other servers too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapters.channels.discord.install import PERMISSIONS
from adapters.channels.endpoints import ProviderEndpoints
from domain import events as ev
from gateway.context import DiscordApp
from tests.fakes.discord_api import ADA, CHARLES, FakeDiscord, fake_discord
from tests.integration.conftest import Stack
from tests.integration.connector_log import of, wait_for_events
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup

CALLBACK = "/v1/channels/discord/oauth/callback"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with fake_discord() as server:
        yield server


@pytest.fixture
def bot_token(fake: FakeDiscord) -> str:
    return fake.add_bot("moltbot", "Moltbot")


@pytest.fixture
def discord_app(fake: FakeDiscord, bot_token: str) -> DiscordApp:
    client_id, client_secret = fake.add_application(bot_token)
    return DiscordApp(client_id, client_secret, bot_token, f"http://testserver{CALLBACK}")


@pytest.fixture
def endpoints(fake: FakeDiscord) -> ProviderEndpoints:
    return ProviderEndpoints(discord_api_base=fake.api_base)


async def _discord_channels(api: httpx.AsyncClient, owner: dict[str, str]) -> list[dict[str, Any]]:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    return [c for c in channels if c["channel"] == "discord"]


async def test_add_to_server_connects_that_server_only_once_confirmed_in_the_same_browser(
    api: httpx.AsyncClient, stack: Stack, fake: FakeDiscord, discord_app: DiscordApp
) -> None:
    owner = await _signup(api, "discord-install@example.com")
    ours = fake.add_guild("Lovelace Lab", channels=("general",))
    theirs = fake.add_guild("Someone Else's Server", channels=("general",))
    assert (await api.head("/v1/channels/discord/install", headers=_auth(owner))).status_code == 200

    start = await api.get("/v1/channels/discord/install", headers=_auth(owner))
    assert start.status_code == 200, start.text
    url = urlsplit(start.json()["url"])
    query = parse_qs(url.query)
    assert (url.netloc, url.path) == ("discord.com", "/oauth2/authorize")
    assert query["client_id"] == [discord_app.client_id] and query["scope"] == ["bot"]
    assert query["permissions"] == [str(PERMISSIONS)] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [discord_app.redirect_uri]
    state = query["state"][0]

    # Another browser with the link: refused, the state spent, no code exchanged.
    code = fake.authorize(discord_app.client_id, ours["id"], discord_app.redirect_uri)
    async with httpx.AsyncClient(base_url=api.base_url) as other_browser:
        elsewhere = await other_browser.get(CALLBACK, params={"code": code, "state": state})
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (403, "wrong_browser")
    assert not any(path == "/oauth2/token" for _, path in fake.requests)

    # The same browser: the page names the inbox; only the confirmation connects the server.
    start = await api.get("/v1/channels/discord/install", headers=_auth(owner))
    state = parse_qs(urlsplit(start.json()["url"]).query)["state"][0]
    code = fake.authorize(discord_app.client_id, ours["id"], discord_app.redirect_uri)
    page = await api.get(CALLBACK, params={"code": code, "state": state})
    assert page.status_code == 200 and "discord-install@example.com" in page.text
    assert await _discord_channels(api, owner) == []
    confirmed = await api.post(CALLBACK, data={"state": state, "code": code})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/?discord=connected#channels")
    assert (await api.post(CALLBACK, data={"state": state, "code": code})).status_code == 400  # once

    async def connected() -> list[dict[str, Any]] | None:
        found = await _discord_channels(api, owner)
        return found if found and found[0]["state"] == "connected" else None

    [channel] = await _until(connected, "the server's connection to be connected")
    assert channel["display_name"] == "Lovelace Lab"

    # The shared bot hears both servers; this inbox gets its own server's messages only.
    fake.push_message(str(theirs["channels"][0]["id"]), CHARLES, "Not for this inbox")
    fake.push_message(str(ours["channels"][0]["id"]), ADA, "Hello from the lab")
    log = await wait_for_events(
        stack.store, owner["tenant_id"], lambda events: bool(of(events, ev.MessageReceived)), timeout=15
    )
    assert [e.data.text for e in of(log, ev.MessageReceived)] == ["Hello from the lab"]
    [created] = [e for e in of(log, ev.ConversationCreated) if e.data.channel == "discord"]
    assert created.data.title == "#general (Lovelace Lab)"

    # The same server again (from this inbox or another): refused, nothing connected twice.
    other = await _signup(api, "discord-install-2@example.com")
    start = await api.get("/v1/channels/discord/install", headers=_auth(other))
    state = parse_qs(urlsplit(start.json()["url"]).query)["state"][0]
    code = fake.authorize(discord_app.client_id, ours["id"], discord_app.redirect_uri)
    await api.get(CALLBACK, params={"code": code, "state": state})
    again = await api.post(CALLBACK, data={"state": state, "code": code})
    assert again.status_code == 409 and "another Moltbot inbox" in again.json()["detail"]
    assert await _discord_channels(api, other) == []
