"""Notifications in a real browser (Chromium through Playwright) against the whole product and
the notifier: the Settings page takes the browser's time zone and quiet hours, the switch
registers the service worker and subscribes with the deployment's key, a visitor's message is
pushed (the fake push service checks the VAPID signature and decrypts it), the service worker
shows it, and its URL opens the conversation.

One thing is replaced: ``pushManager.subscribe``. Chromium registers with Google's push service
(FCM), which headless Chromium cannot reach ("Registration failed"); here it answers with a
subscription of the fake push service on 127.0.0.1 and keeps the key it was asked to use. The
push itself reaches the service worker through DevTools (``ServiceWorker.deliverPushMessage``),
as the browser would hand it over.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, expect

from adapters.push.config import PushConfig
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.e2e.test_browser import ARTIFACTS, browser  # noqa: F401 - the browser fixture
from tests.fakes.push_service import FakePushService
from tests.integration.test_push import notifier, push_service  # noqa: F401 - their fixtures
from tests.integration.test_webchat import _visitor_says

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_notifications_are_turned_on_in_settings_and_shown_by_the_service_worker(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    push_service: FakePushService,  # noqa: F811
    notifier: None,  # noqa: F811
    push_config: PushConfig,
) -> None:
    origin = str(api.base_url).rstrip("/")
    context = await browser.new_context(timezone_id="Asia/Kathmandu", viewport={"width": 1280, "height": 900})
    await context.grant_permissions(["notifications"], origin=origin)
    device = push_service.browser()
    await context.add_init_script(
        "PushManager.prototype.getSubscription = async function () { return null; };"
        "PushManager.prototype.subscribe = async function (options) {"
        "  const key = new Uint8Array(options.applicationServerKey);"
        "  window.subscribedWith = btoa(String.fromCharCode(...key));"
        f"  const json = {json.dumps(device.subscription())};"
        "  return { endpoint: json.endpoint, toJSON: () => json, unsubscribe: async () => true };"
        "};"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect.set_options(timeout=15_000)
    await page.goto(origin)
    await page.get_by_label("E-mail").fill("push.browser@example.com")
    await page.get_by_label("Password").fill("a long enough password")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#inbox")).to_be_visible()
    manifest = await page.evaluate(
        "fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())"
    )
    assert (manifest["display"], manifest["start_url"]) == ("standalone", "/")
    for icon in manifest["icons"]:
        fetched = await page.request.get(origin + icon["src"])
        assert (fetched.status, fetched.headers["content-type"]) == (200, "image/png")

    # Settings: the browser's time zone is offered; quiet hours that are not now there.
    await page.get_by_role("button", name="Settings").click()
    section = page.locator("#settings-notifications")
    zone = section.get_by_label("Your time zone")
    await expect(zone).to_have_value("Asia/Katmandu")  # Chromium's name for it (an IANA alias)
    local = datetime.now(ZoneInfo("Asia/Kathmandu")).hour
    await section.get_by_label("Quiet hours: no notifications from").fill(str((local + 3) % 24))
    await section.get_by_label("to", exact=True).fill(str((local + 5) % 24))
    await section.get_by_role("button", name="Save").click()
    await expect(section.locator("#preferences-result")).to_contain_text("Saved: quiet from")

    # The switch: permission, the service worker, the deployment's key, the subscription posted.
    await section.get_by_role("switch", name="Notifications on this device").check()
    await expect(section.locator("#push-result")).to_contain_text("This device is told about new messages")
    asked_key = await page.evaluate("window.subscribedWith")
    assert base64.b64decode(asked_key) == push_config.key.public_raw
    session = json.loads(await page.evaluate("localStorage.getItem('moltbot.session')"))
    me = (await api.get("/v1/me", headers=_auth(session["access_token"]))).json()
    assert me["time_zone"] == "Asia/Katmandu"
    assert me["quiet_hours"] == {"start": (local + 3) % 24, "end": (local + 5) % 24}
    [subscribed] = (await api.get("/v1/push/subscriptions", headers=_auth(session["access_token"]))).json()
    assert subscribed["push_service"] == "127.0.0.1"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "browser-settings-notifications.png"), full_page=True)

    # A visitor writes where the agent drafts: the push arrives, decrypted, at the fake service…
    widget = (await api.get("/v1/webchat", headers=_auth(session["access_token"]))).json()
    changed = await api.patch(
        f"/v1/channels/{widget['connection_id']}", json={"agent_mode": "draft"},
        headers=_auth(session["access_token"]),
    )  # fmt: skip
    assert changed.status_code == 202, changed.text
    said = await _visitor_says(api, widget["widget_key"], "Is the blue one still available?", name="Ines")
    for _ in range(200):
        if push_service.to(device):
            break
        await asyncio.sleep(0.05)
    [payload] = push_service.to(device)
    assert payload["title"] == "Ines"

    # … the browser hands it to the service worker, which shows it …
    cdp = await context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda update: registrations.extend(update["registrations"]),
    )
    await cdp.send("ServiceWorker.enable")
    for _ in range(100):
        if registrations:
            break
        await asyncio.sleep(0.05)
    [registration] = [r for r in registrations if r["scopeURL"] == f"{origin}/" and not r["isDeleted"]]
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": registration["registrationId"], "data": json.dumps(payload)},
    )
    shown: list[list[str]] = []
    for _ in range(100):
        shown = await page.evaluate(
            "navigator.serviceWorker.ready.then(r => r.getNotifications())"
            ".then(all => all.map(n => [n.title, n.body, n.tag, n.data.url]))"
        )
        if shown:
            break
        await asyncio.sleep(0.05)
    assert shown == [["Ines", "Is the blue one still available?", payload["tag"], payload["url"]]]

    # … and its URL opens the conversation.
    await page.goto(origin + payload["url"])
    await expect(page.locator("#conversation h2")).to_have_text("Ines (website)")
    await expect(page.locator("#messages")).to_contain_text("Is the blue one still available?")
    assert said["conversation_id"] in payload["url"]
    assert errors == []
    await context.close()
