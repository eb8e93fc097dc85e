"""The agent in the web inbox, as a new user meets it (Chromium against the whole product,
the agent with the built-in offline model): it answers the owner's own "Try it" chat,
steps back once the owner answers (the inbox says until when), answers again once resumed,
and in draft mode proposes a reply the visitor never sees until the owner sends it, edited."""

from __future__ import annotations

import re

import httpx
import pytest
from nats.aio.client import Client
from playwright.async_api import Browser, expect

from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.e2e.test_browser import ARTIFACTS, browser, signed_up
from tests.integration.conftest import Stack
from tests.integration.test_agent import _decided

__all__ = ["browser"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


async def test_the_agent_steps_back_when_you_answer_and_drafts_when_asked(
    api: httpx.AsyncClient, browser: Browser, stack: Stack, nc: Client, assistant: None
) -> None:
    page = await signed_up(api, browser, "takeover.user@example.com")
    await page.get_by_role("button", name="Try it").click()
    chat = page.frame_locator("#try-frame")
    await expect(chat.locator("#chat-status")).to_have_text("Online")

    async def visitor_says(text: str) -> None:
        await chat.get_by_label("Your message").fill(text)
        await chat.get_by_role("button", name="Send").click()
        await expect(page.locator("#messages")).to_contain_text(text)

    await chat.get_by_label("Your message").fill("Are you open on Sunday?")
    await chat.get_by_role("button", name="Send").click()
    # The agent answers the owner's own chat (the offline model quotes the question).
    replies = chat.locator("#chat-messages li.business")
    await expect(replies).to_have_count(1)
    await expect(replies.first).to_contain_text('"Are you open on Sunday?"')

    # The agent answered, so it is not under "Needs reply": "All" lists it.
    await page.get_by_role("tab", name="All").click()
    # The owner answers from the inbox: the agent steps back, and the inbox says until when.
    await page.locator("#conversations li").first.get_by_role("button").click()
    await expect(page.locator("#agent-mode")).to_have_value("auto")
    await page.get_by_label("Reply").fill("It's me, the owner. Yes, we are!")
    await page.locator(".compose").get_by_role("button", name="Send").click()
    await expect(replies).to_have_count(2)
    await expect(page.locator("#agent-paused")).to_contain_text("Agent paused until")
    await visitor_says("Great, see you then.")
    await _decided(stack, nc, await stack.store.last_seq())  # the agent decided: it stays quiet
    await expect(replies).to_have_count(2)

    # Resumed, it answers the next message.
    await page.locator("#agent-paused").get_by_role("button", name="Resume").click()
    await expect(page.locator("#agent-paused")).to_be_hidden()
    await visitor_says("One more question?")
    await expect(replies).to_have_count(3)

    # Draft mode: the next answer is a draft the visitor does not see; sent edited, they see it.
    await page.locator("#agent-mode").select_option("draft")
    await expect(page.locator("#status")).to_contain_text("drafts for you")
    await visitor_says("Can I book a table?")
    draft = page.locator("#drafts .draft")
    proposed = re.compile('"Can I book a table\\?"')  # the offline model quotes the question
    await expect(draft.locator("textarea")).to_have_value(proposed, timeout=20_000)
    await expect(replies).to_have_count(3)
    await draft.get_by_role("button", name="Edit").click()
    await draft.locator("textarea").fill("Yes: a table for two at eight.")
    await draft.get_by_role("button", name="Send").click()
    await expect(replies).to_have_count(4)
    await expect(replies.last).to_contain_text("Yes: a table for two at eight.")
    await expect(page.locator("#drafts .draft")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "browser-agent-takeover-and-drafts.png"), full_page=True)
