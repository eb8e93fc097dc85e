"""The web inbox in a real browser (Playwright driving Debian's Chromium) against the
whole product: a new user signs up, writes in their own website chat, sees the message
arrive live in the inbox, replies, and sees the reply reach the chat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.fakes.whatsapp_client import FakeWhatsApp


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about the pages; the limits: test_plan_limits.py


pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Chromium is missing: `make chromium` installs Debian's package"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        await browser.close()


async def signed_up(
    api: httpx.AsyncClient, browser: Browser, email: str, height: int = 900, width: int = 1280
) -> Page:
    """A new page where a new user has just created an account and sees the inbox."""
    page = await browser.new_page(viewport={"width": width, "height": height})
    expect.set_options(timeout=15_000)
    await page.goto(str(api.base_url))
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill("a long enough password")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#inbox")).to_be_visible()
    return page


async def test_signup_webchat_round_trip_in_the_browser(api: httpx.AsyncClient, browser: Browser) -> None:
    page = await signed_up(api, browser, "first.user@example.com", height=800)
    await expect(page.locator("#empty")).to_be_visible()

    # Try it: the tenant's own website chat, as a visitor.
    await page.get_by_role("button", name="Try it").click()
    chat = page.frame_locator("#try-frame")
    await expect(chat.locator("#chat-status")).to_have_text("Online")
    await chat.get_by_label("Your message").fill("Hello from the website!")
    await chat.get_by_role("button", name="Send").click()
    await expect(chat.locator("#chat-messages")).to_contain_text("Hello from the website!")

    # It arrives live in the inbox, unread, with its channel.
    conversation = page.locator("#conversations li").first
    await expect(conversation).to_contain_text("Hello from the website!")
    await expect(conversation).to_contain_text("webchat")
    await expect(conversation.locator(".unread")).to_have_text("1")
    await expect(page.locator("#waiting-count")).to_have_text("1")  # "Needs reply", the default view
    await conversation.get_by_role("button").click()
    await expect(page.locator("#messages")).to_contain_text("Hello from the website!")
    await page.get_by_role("button", name="Summary").click()
    await expect(page.get_by_role("region", name="Summary")).to_contain_text("Hello from the website!")

    # The reply goes out through the channel and reaches the visitor.
    await page.get_by_label("Reply").fill("Hi! How can we help?")
    await page.locator(".compose").get_by_role("button", name="Send").click()
    reply = chat.locator("#chat-messages li.business")
    await expect(reply).to_contain_text("Hi! How can we help?")
    await expect(page.locator("#messages li.out")).to_contain_text("Hi! How can we help?")
    await expect(page.locator("#messages li.out")).not_to_contain_text("sending…")
    await expect(conversation.locator(".unread")).to_have_count(0)  # opening it marked it read
    await expect(page.locator("#waiting-count")).to_be_hidden()  # answered: nothing waits

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "browser-webchat-round-trip.png"), full_page=True)


async def test_the_inbox_on_a_phone_shows_one_pane_at_a_time(
    api: httpx.AsyncClient, browser: Browser
) -> None:
    page = await signed_up(api, browser, "phone.user@example.com", height=844, width=390)
    await page.get_by_role("button", name="Try it").click()
    chat = page.frame_locator("#try-frame")
    await expect(chat.locator("#chat-status")).to_have_text("Online")
    await chat.get_by_label("Your message").fill("Hello from my phone!")
    await chat.get_by_role("button", name="Send").click()
    await expect(chat.locator("#chat-messages")).to_contain_text("Hello from my phone!")
    await page.locator("#try-it").click()  # closed again: the inbox has the screen

    conversation = page.locator("#conversations li").first
    await expect(conversation).to_contain_text("Hello from my phone!")
    await conversation.get_by_role("button").click()
    # The conversation takes the whole width; the list waits behind "← Conversations".
    await expect(page.locator("#conversations")).to_be_hidden()
    pane = await page.locator("#conversation").bounding_box()
    assert pane is not None and pane["x"] >= 0 and pane["x"] + pane["width"] <= 390
    compose = await page.locator("#conversation .compose").bounding_box()
    assert compose is not None and compose["x"] + compose["width"] <= 390  # nothing cut off on the right
    send = await page.locator("#conversation .compose").get_by_role("button", name="Send").bounding_box()
    assert send is not None and send["height"] >= 44  # a thumb-sized control
    await page.get_by_label("Reply").fill("Hi! Right here.")
    await page.locator("#conversation .compose").get_by_role("button", name="Send").click()
    await expect(page.locator("#messages li.out")).to_contain_text("Hi! Right here.")
    await page.get_by_role("button", name="← Conversations").click()
    await expect(page.get_by_role("complementary", name="Conversations")).to_be_visible()
    # Answered, it left "Needs reply" (the default view); "All" still lists it.
    await expect(page.locator("#empty")).to_contain_text("Nothing waits for a reply")
    await page.get_by_role("tab", name="All").click()
    await expect(page.locator("#conversations li").first).to_contain_text("Hi! Right here.")
    await expect(page.locator("#conversation")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "browser-phone-inbox.png"), full_page=True)


async def test_agent_settings_preview_and_save_in_the_browser(
    api: httpx.AsyncClient,
    browser: Browser,
) -> None:
    page = await signed_up(api, browser, "agent.owner@example.com")

    await page.get_by_role("button", name="Agent").click()
    form = page.locator("#agent-form")
    await expect(form.get_by_label("Name")).to_have_value("Moltbot")
    await form.get_by_label("Start from a template").select_option("customer_support")
    await expect(form.get_by_label("Name")).to_have_value("Support")
    await page.get_by_label("Sample message").fill("what time is it?")
    await page.get_by_role("button", name="Preview").click()
    answer = page.locator("#preview-answer")
    await expect(answer).to_contain_text('"what time is it?"')
    await expect(answer).to_contain_text("It is ")  # the clock tool, streamed back
    await expect(page.locator("#agent-model-note")).to_contain_text("offline model")

    await form.get_by_role("button", name="Save").click()
    await expect(page.locator("#agent-saved")).to_have_text("Saved.")
    agents = await api.get("/v1/agents", headers={"Authorization": "Bearer " + await _token(page)})
    assert [(a["name"], a["template"]) for a in agents.json()] == [("Support", "customer_support")]
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "browser-agent-settings.png"), full_page=True)


async def _token(page: Page) -> str:
    session = await page.evaluate("localStorage.getItem('moltbot.session')")
    token: str = json.loads(session)["access_token"]
    return token


async def test_pairing_a_bridge_in_the_browser(api: httpx.AsyncClient, browser: Browser) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.integration.test_bridge_pairing import open_tunnel, pair

    page = await signed_up(api, browser, "bridge.owner@example.com")

    await page.get_by_role("button", name="Bridge").click()
    await expect(page.locator("#device-list")).to_contain_text("No device paired yet.")
    await page.get_by_role("button", name="Make a pairing code").click()
    await expect(page.locator("#pairing-qr svg")).to_be_visible()
    code = (await page.locator("#pairing-code").inner_text()).strip()
    await expect(page.locator("#pairing-command")).to_contain_text(f"moltbot bridge pair {code} --gateway")

    key = Ed25519PrivateKey.generate()
    paired = await pair(api, code, key, name="Ada's Mac")  # what `moltbot bridge pair` sends
    assert paired.status_code == 201, paired.text
    socket, _ = await open_tunnel(api, paired.json(), key, capabilities=("imessage.read", "imessage.send"))
    await expect(page.locator("#pairing-result")).to_contain_text("Ada's Mac is connected.")
    devices = page.locator("#device-list")
    await expect(devices).to_contain_text("online")
    await expect(devices).to_contain_text("imessage.read")

    page.once("dialog", lambda dialog: dialog.accept())
    await devices.get_by_role("button", name="Revoke").click()
    await expect(devices).to_contain_text("revoked")
    await socket.close()


@pytest.fixture
def phone() -> FakeWhatsApp:
    return FakeWhatsApp()


@pytest.fixture
def channel_clients(phone: FakeWhatsApp) -> dict[str, Any]:
    return {"whatsapp": phone.new_client}  # WhatsApp itself cannot be reached from here


async def test_linking_whatsapp_by_qr_code_in_the_browser(
    api: httpx.AsyncClient, browser: Browser, phone: FakeWhatsApp
) -> None:
    page = await signed_up(api, browser, "whatsapp.owner@example.com")
    await page.get_by_role("button", name="Channels").click()
    await page.get_by_role("button", name="Connect WhatsApp").click()
    qr = page.get_by_role("img", name="QR code to scan with WhatsApp on your phone")
    await expect(qr).to_be_visible()
    first = await qr.get_attribute("src")
    assert first is not None and first.startswith("data:image/svg+xml")
    channels = page.locator("#channel-list")
    await expect(channels).to_contain_text("Linked devices")

    phone.rotate_qr()  # WhatsApp's next code replaces the one on the page
    await expect(qr).not_to_have_attribute("src", first)
    phone.scan()
    await expect(channels).to_contain_text("Connected as Ada (+15551230000).")
    await expect(qr).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / "whatsapp-linked.png"))


async def test_connecting_signal_on_a_paired_computer_in_the_browser(
    api: httpx.AsyncClient, browser: Browser, tmp_path: Path
) -> None:
    from adapters.bridge.device import Bridge
    from adapters.bridge.identity import Pairing
    from adapters.bridge.local_store import LocalStore
    from adapters.channels.signal.config import SignalSetup, parse_address
    from adapters.channels.signal.device import SignalDeviceChannel
    from tests.fakes.signal_envelopes import ME
    from tests.fakes.signal_rpc import fake_signal
    from tests.integration.test_bridge_pairing import paired_device

    page = await signed_up(api, browser, "signal.owner@example.com")
    await page.get_by_role("button", name="Channels").click()
    form = page.locator("#signal-form")
    await expect(page.locator("#signal-result")).to_contain_text("No computer offers Signal yet")
    await expect(form.get_by_role("button", name="Connect Signal")).to_be_disabled()

    owner = {"token": await _token(page)}
    device, key = await paired_device(api, owner)
    pairing = Pairing(
        gateway=str(api.base_url), tenant_id=device["tenant_id"], device_id=device["device_id"],
        name=device["name"], fingerprint=device["fingerprint"],
    )  # fmt: skip
    async with fake_signal() as daemon:

        def signal(connection_id: str, show: Any) -> SignalDeviceChannel:
            return SignalDeviceChannel(
                tenant_id=device["tenant_id"], device_id=device["device_id"], connection_id=connection_id,
                data_dir=tmp_path / "bridge", setup=SignalSetup(rpc=parse_address(daemon.tcp_address)),
                environ={}, show=show, first_backoff=0.2, check_every=0.3,
            )  # fmt: skip

        store = LocalStore(tmp_path / "bridge")
        on_demand = {"signal": signal}
        bridge = Bridge(pairing, key, store, [], version="test", platform="test", on_demand=on_demand)
        running = asyncio.create_task(bridge.run())
        try:
            await page.reload()  # the computer now offers Signal
            await page.get_by_role("button", name="Channels").click()
            await expect(form.get_by_label("Computer to run Signal on")).to_contain_text("Ada's Mac")
            await form.get_by_role("button", name="Connect Signal").click()
            qr = page.get_by_role("img", name="QR code to scan with Signal on your phone")
            await expect(qr).to_be_visible()
            daemon.scan(await daemon.waiting_link(), ME)
            channels = page.locator("#channel-list")
            await expect(channels).to_contain_text(f"Connected as {ME.number}.")
            await expect(qr).to_be_hidden()
            await expect(channels).to_contain_text("on your bridge")
            await page.screenshot(path=str(ARTIFACTS / "signal-linked.png"))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
