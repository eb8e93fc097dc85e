"""Deleting an account in a real browser, as a new user would: Settings → Delete account
(the password) → signed out, the sign-in refused, and the nats-server store holds none of
the inbox's text — it never held it in plaintext, and its sealed copies open only as
"[erased]" now (docs/privacy.md)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from playwright.async_api import Browser, Dialog, expect

from adapters.embedded.nats_server import NatsServer
from tests.conftest import Stack
from tests.e2e.test_browser import ARTIFACTS, browser, signed_up  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PASSWORD = "a long enough password"  # what signed_up() signs up with


async def test_delete_account_in_settings_leaves_nothing_readable(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    stack: Stack,
    nats_server: NatsServer,
) -> None:
    page = await signed_up(api, browser, "goodbye@example.com")
    secret = "my-door-code-is-4711-erase-me"
    widget = await page.evaluate("async () => (await api('/v1/webchat')).widget_key")
    sent = await api.post(f"/v1/webchat/{widget}/messages", json={"text": secret, "name": "Neighbour"})
    assert sent.status_code == 202
    tenant_id = await page.evaluate("() => state.session.tenant_id")
    token = await page.evaluate("() => state.session.access_token")
    for _ in range(100):  # in the inbox's read model
        listed = await api.get("/v1/conversations", headers={"Authorization": f"Bearer {token}"})
        if listed.json()["items"] and listed.json()["items"][0]["last_message_preview"]:
            break
        await asyncio.sleep(0.05)
    assert listed.json()["items"][0]["last_message_preview"] == secret

    await page.get_by_role("button", name="Settings").click()
    await page.get_by_label("Your password").fill(PASSWORD)

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await page.screenshot(path=str(ARTIFACTS / "browser-settings-delete.png"))
    await page.get_by_role("button", name="Delete my account").click()
    await expect(page.locator("#auth")).to_be_visible()
    await expect(page.locator("#status")).to_contain_text("Your account is deleted")

    refused = await api.post("/v1/auth/login", json={"email": "goodbye@example.com", "password": PASSWORD})
    assert refused.status_code == 401
    store = nats_server.store_dir / "jetstream"
    holding = [p for p in store.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holding == []
    copies = [record.data async for record in stack.store.read(subject=f"ev.{tenant_id}.>")]
    assert copies
    assert not any(secret.encode() in data for data in copies)
    assert any(b"[erased]" in data for data in copies)
