"""The Plan and usage page in a real browser, with billing on at a local fake of Stripe: a new
inbox on Free sees its limits and the AI it has left, the upgrade button goes to Stripe's
checkout, and once Stripe says it is paid the page shows Pro, its renewal and "Manage
billing"."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from adapters.billing.config import StripeConfig
from tests.e2e.test_browser import ARTIFACTS, browser, signed_up  # noqa: F401 - the browser fixture
from tests.fakes.stripe_api import FakeStripe, fake_stripe

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECRET_KEY = "sk_test_moltbot_browser"
WEBHOOK_SECRET = "whsec_moltbot_browser"
PRICES = {"pro": "price_pro_monthly", "team": "price_team_monthly"}


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    async with fake_stripe(SECRET_KEY, WEBHOOK_SECRET, prices=list(PRICES.values())) as fake:
        yield fake


@pytest.fixture
def billing(stripe_fake: FakeStripe) -> StripeConfig:
    return StripeConfig(
        secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET, prices=PRICES, api_base=stripe_fake.base_url
    )


async def test_the_plan_page_shows_the_limits_and_upgrades_through_checkout(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    stripe_fake: FakeStripe,
) -> None:
    stripe_fake.webhook_url = f"{api.base_url}/v1/webhooks/stripe"
    page = await signed_up(api, browser, "plan.page@example.com")
    await page.get_by_role("button", name="Usage").click()
    await expect(page.locator("#plan-name")).to_have_text("You are on Free (no charge).")
    limits = page.locator("#plan-limits")
    await expect(limits).to_contain_text("Channels0 of 2")
    await expect(limits).to_contain_text("Channels on your devices0 of 0")
    await expect(page.locator("#ai-meter")).to_contain_text("$0.00 of $2.00 included this month")
    await page.screenshot(path=str(ARTIFACTS / "browser-plan-free.png"))

    await page.get_by_role("button", name="Upgrade to Pro ($19.00 a month)").click()
    await page.wait_for_url(f"{stripe_fake.base_url}/pay/**")  # Stripe's checkout page
    (session_id,) = stripe_fake.sessions
    await stripe_fake.complete_checkout(session_id)  # paid: Stripe's signed events reach the gateway

    await page.goto(f"{api.base_url}/?billing=success")
    await page.get_by_role("button", name="Usage").click()
    await expect(page.locator("#plan-name")).to_have_text("You are on Pro ($19.00 a month).")
    await expect(page.locator("#billing-state")).to_contain_text("Renews on")
    await expect(page.get_by_role("button", name="Manage billing")).to_be_visible()
    await expect(page.get_by_role("button", name="Upgrade to Team ($79.00 a month)")).to_be_visible()
    await expect(limits).to_contain_text("Channels0 of 10")
