"""Connecting a channel from the Channels page in a real browser, against the whole product
and a local fake of the provider: Microsoft Teams by its Azure Bot's app id and secret, with
the messaging endpoint to paste back shown on the page, then a person's message in the inbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from adapters.channels.endpoints import ProviderEndpoints
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.e2e.test_browser import ARTIFACTS, browser, signed_up  # noqa: F401 - the browser fixture
from tests.fakes.teams_api import FakeTeams, fake_teams, headers

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PUBLIC_URL = "https://moltbot.example"


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeams]:
    async with fake_teams() as server:
        yield server


@pytest.fixture
def endpoints(teams: FakeTeams) -> ProviderEndpoints:
    return ProviderEndpoints(teams_login_base=teams.login_base, teams_openid_url=teams.openid_url)


@pytest.fixture
def public_url() -> str:
    return PUBLIC_URL  # where Azure would post; the test posts to the gateway itself


async def test_connecting_teams_from_the_channels_page(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    teams: FakeTeams,
) -> None:
    page = await signed_up(api, browser, "teams.owner@example.com")
    await page.get_by_role("button", name="Channels").click()
    app = teams.add_app()
    await page.get_by_label("Microsoft App ID").fill(app.app_id)
    await page.get_by_label("Client secret").fill("not the secret")
    await page.get_by_role("button", name="Connect Teams").click()
    result = page.locator("#teams-result")
    await expect(result).to_contain_text("client secret")  # the refusal names what to fix

    await page.get_by_label("Client secret").fill(app.client_secret)
    await page.get_by_role("button", name="Connect Teams").click()
    await expect(result).to_contain_text(f"Messaging endpoint to {PUBLIC_URL}/v1/webhooks/teams/cn_")
    endpoint = (await result.inner_text()).split("endpoint to ")[1].split(" ")[0]
    await expect(page.locator("#channel-list")).to_contain_text("teams")
    await page.screenshot(path=str(ARTIFACTS / "teams-connected.png"))

    # Azure posts a person's message to that endpoint: it reaches the inbox.
    path = endpoint.removeprefix(PUBLIC_URL)
    activity = json.dumps(teams.message(app, "Hello from Teams!")).encode()
    posted = await api.post(path, content=activity, headers=headers(teams.mint(app)))
    assert posted.status_code == 200, posted.text
    await page.get_by_role("button", name="Inbox").click()
    # Nobody has answered it: it waits under "Needs reply", the inbox's first view.
    await expect(page.locator("#conversations")).to_contain_text("Hello from Teams!")
