"""The Settings page and the links from account mail in a real browser, against the whole
product: two-factor sign-in is turned on (QR, first code, recovery codes) and then asked for
at sign-in; an owner invites someone by mail, who joins from the mailed link, gets a new role
and is removed; a forgotten password is reset from the mailed link.

The gateway's mail lands as ``.eml`` files in the test's outbox folder (the ``mailer``
fixture), where the tests read the links a person would click.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from playwright.async_api import Browser, Page, expect

from adapters.mail.outbox import list_mail, outbox_folder, read_mail, text_body
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.e2e.test_browser import ARTIFACTS, browser, signed_up  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PASSWORD = "a long enough password"  # what signed_up() signs up with


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # seats for more than one person: the people are the subject here


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _session(page: Page) -> dict[str, Any]:
    """The session the page keeps (tokens, tenant_id, user_id)."""
    stored = await page.evaluate("localStorage.getItem('moltbot.session')")
    assert stored, "the page keeps no session"
    session: dict[str, Any] = json.loads(stored)
    return session


async def _mail(folder: Path, kind: str, to: str, *, count: int = 1) -> str:
    """The text of the ``count``-th mail of ``kind`` to ``to`` (mail leaves in the background)."""
    for _ in range(400):
        found = [m for m in list_mail(folder) if m.kind == kind and m.to == to]
        if len(found) >= count:
            return text_body(read_mail(folder, found[count - 1].name))
        await asyncio.sleep(0.025)
    raise AssertionError(f"no {kind} mail to {to} in {folder}: {list_mail(folder)}")


def _link(text: str, fragment: str) -> str:
    match = re.search(rf"https?://\S+/#{fragment}=[A-Za-z0-9_-]+", text)
    assert match is not None, text
    return match.group(0)


def _wrong_code(secret: str) -> str:
    """Six digits the authenticator does not show now (nor 30 s before or after)."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    valid = {totp.at(now + drift) for drift in (-30, 0, 30)}
    return next(code for code in ("123456", "654321", "111111") if code not in valid)


def _watch(page: Page) -> list[str]:
    """The page's uncaught script errors from now on (a test ends asserting there are none)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def _sign_in(page: Page, email: str, password: str) -> None:
    form = page.locator("#auth-form")
    await form.get_by_label("E-mail").fill(email)
    await form.get_by_label("Password", exact=True).fill(password)
    await form.get_by_role("button", name="Log in").click()


async def test_two_factor_sign_in_is_turned_on_and_asked_for_in_the_browser(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
) -> None:
    email = "two.factor@example.com"
    page = await signed_up(api, browser, email)
    errors = _watch(page)
    await page.get_by_role("button", name="Settings").click()
    section = page.locator("#settings-2fa")
    await expect(section).to_contain_text("Off")
    await section.get_by_role("button", name="Turn on two-factor sign-in").click()

    qr = section.get_by_role("img", name="QR code to scan with your authenticator app")
    await expect(qr).to_be_visible()
    source = await qr.get_attribute("src")
    assert source is not None and source.startswith("data:image/svg+xml;base64,")
    assert b"<svg" in base64.b64decode(source.split(",", 1)[1])
    assert await qr.evaluate("image => image.naturalWidth") > 0  # the browser drew it
    secret = (await section.locator("#totp-secret").inner_text()).replace(" ", "")
    assert len(secret) == 32

    await section.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    await section.get_by_role("button", name="Confirm").click()
    codes = page.locator("#recovery-codes li")
    await expect(codes).to_have_count(10)
    await expect(section).to_contain_text("Two-factor sign-in is on.")
    recovery = [code.strip() for code in await codes.all_inner_texts()]
    assert len(set(recovery)) == 10
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "browser-settings-2fa.png"), full_page=True)
    await section.get_by_role("button", name="I have saved them").click()
    await expect(section).to_contain_text("10 recovery codes left.")
    state = await api.get("/v1/me/2fa", headers=_auth((await _session(page))["access_token"]))
    assert state.json() == {"enabled": True, "recovery_codes_left": 10}

    # Signing in again asks for the second factor: a wrong code is refused, a recovery code works.
    await page.get_by_role("button", name="Log out").click()
    await _sign_in(page, email, PASSWORD)
    otp = page.locator("#login-otp")
    await expect(otp).to_be_visible()
    await expect(page.get_by_label("Authentication code")).to_be_visible()
    await expect(page.locator("#inbox")).to_be_hidden()
    await otp.fill(_wrong_code(secret))
    await page.locator("#auth-form").get_by_role("button", name="Log in").click()
    await expect(page.locator("#auth-error")).to_have_text(
        "That code is wrong or already used: try the next one."
    )
    await expect(page.locator("#inbox")).to_be_hidden()

    await otp.fill(recovery[0])
    await page.locator("#auth-form").get_by_role("button", name="Log in").click()
    await expect(page.locator("#inbox")).to_be_visible()
    await page.get_by_role("button", name="Settings").click()
    section = page.locator("#settings-2fa")
    await expect(section).to_contain_text("9 recovery codes left.")

    # Turning it off asks for the password and a second factor.
    await section.get_by_label("Your password").fill(PASSWORD)
    await section.get_by_label("Code from the app, or a recovery code").fill(recovery[1])
    await section.get_by_role("button", name="Turn off").click()
    await expect(page.locator("#two-factor-result")).to_have_text("Two-factor sign-in is off.")
    await expect(section.get_by_role("button", name="Turn on two-factor sign-in")).to_be_visible()
    state = await api.get("/v1/me/2fa", headers=_auth((await _session(page))["access_token"]))
    assert state.json() == {"enabled": False, "recovery_codes_left": 0}
    assert errors == []


async def test_an_invited_person_joins_gets_a_role_and_is_removed_in_the_browser(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    folder = outbox_folder(tmp_path)
    owner = await signed_up(api, browser, "owner@example.com")
    errors = _watch(owner)
    await owner.get_by_role("button", name="Settings").click()
    people = owner.locator("#settings-people")
    await expect(people.locator("#members")).to_contain_text("owner@example.com")
    mine = people.locator("#members tr", has_text="owner@example.com")
    await expect(mine.get_by_role("button", name="Leave")).to_be_visible()

    await people.get_by_label("E-mail of the person to invite").fill("friend@example.com")
    await people.get_by_label("Role", exact=True).select_option("member")
    await people.get_by_role("button", name="Invite").click()
    await expect(owner.locator("#people-result")).to_contain_text("Invitation sent to friend@example.com")
    await expect(owner.locator("#invitations")).to_contain_text("friend@example.com")
    await people.get_by_label("E-mail of the person to invite").fill("not.them@example.com")
    await people.get_by_role("button", name="Invite").click()
    wrong = owner.locator("#invitations tr", has_text="not.them@example.com")
    await wrong.get_by_role("button", name="Withdraw").click()
    await expect(owner.locator("#people-result")).to_have_text(
        "The invitation to not.them@example.com is withdrawn."
    )
    await expect(owner.locator("#invitations")).not_to_contain_text("not.them@example.com")

    # The friend opens the mailed link in their own browser and creates an account.
    link = _link(await _mail(folder, "invitation", "friend@example.com"), "invite")
    friend = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors += _watch(friend)
    await friend.goto(link)
    card = friend.locator("#account")
    await expect(card).to_contain_text("owner invited you to Personal as member.")
    assert "#invite=" not in friend.url  # the token left the address bar
    await card.get_by_label("Your name").fill("Friend")
    await card.get_by_label("Choose a password").fill("the friend's long password")
    await friend.screenshot(path=str(ARTIFACTS / "browser-settings-invitation.png"))
    await card.get_by_role("button", name="Create account and join").click()
    await expect(friend.locator("#inbox")).to_be_visible()
    owner_session, friend_session = await _session(owner), await _session(friend)
    assert friend_session["tenant_id"] == owner_session["tenant_id"]  # in the owner's inbox
    await friend.get_by_role("button", name="Settings").click()
    await expect(friend.locator("#settings-profile")).to_contain_text("member")
    await expect(friend.locator("#settings-people")).to_contain_text("owner@example.com")
    await expect(friend.get_by_role("button", name="Invite")).to_have_count(0)  # members do not invite

    # The owner sees the friend, makes them an admin, then removes them.
    await owner.get_by_role("button", name="Settings").click()
    row = owner.locator("#members tr", has_text="friend@example.com")
    await expect(row).to_contain_text("Friend")
    role = row.get_by_role("combobox", name="Role of friend@example.com")
    await expect(role).to_have_value("member")
    await expect(owner.locator("#invitations")).to_have_text("No open invitations.")
    await expect(owner.locator("#audit-rows")).to_contain_text("member.joined")
    await role.select_option("admin")
    await expect(owner.locator("#people-result")).to_have_text("friend@example.com is now admin.")
    listed = await api.get("/v1/members", headers=_auth(owner_session["access_token"]))
    assert listed.status_code == 200, listed.text
    roles = {m["email"]: m["role"] for m in listed.json()["members"]}
    assert roles == {"owner@example.com": "owner", "friend@example.com": "admin"}
    await owner.screenshot(path=str(ARTIFACTS / "browser-settings-members.png"), full_page=True)

    owner.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Remove").click()
    await expect(owner.locator("#people-result")).to_contain_text("friend@example.com is removed")
    await expect(owner.locator("#members")).not_to_contain_text("friend@example.com")
    refused = await api.get("/v1/me", headers=_auth(friend_session["access_token"]))
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "not_a_member"
    await friend.reload()  # the friend's next call is refused: the page signs out
    await expect(friend.locator("#auth")).to_be_visible()
    assert await friend.evaluate("localStorage.getItem('moltbot.session')") is None
    assert errors == []


async def test_a_forgotten_password_is_reset_from_the_mailed_link_in_the_browser(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    folder = outbox_folder(tmp_path)
    email = "forgetful@example.com"
    new_password = "a brand new long password"
    page = await signed_up(api, browser, email)
    errors = _watch(page)
    before = await _session(page)
    elsewhere = await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert elsewhere.status_code == 200, elsewhere.text  # another device, still signed in
    await page.get_by_role("button", name="Log out").click()

    await page.get_by_role("button", name="Forgot password?").click()
    forgot = page.locator("#forgot-form")
    await forgot.get_by_label("E-mail").fill(email)
    await forgot.get_by_role("button", name="Send reset link").click()
    await expect(page.locator("#forgot-result")).to_have_text(
        "If an account uses this address, a link to set a new password is on its way."
    )

    link = _link(await _mail(folder, "password_reset", email), "reset")
    await page.goto(link)
    reset = page.locator("#reset-form")
    await expect(reset).to_be_visible()
    assert "#reset=" not in page.url
    await reset.get_by_label("New password").fill(new_password)
    await reset.get_by_label("Repeat it").fill(new_password)
    await reset.get_by_role("button", name="Set new password").click()
    await expect(page.locator("#auth")).to_be_visible()
    await expect(page.locator("#auth-info")).to_contain_text("Your password is set: sign in with it.")

    await _sign_in(page, email, PASSWORD)
    await expect(page.locator("#auth-error")).to_have_text("E-mail or password is wrong.")
    await _sign_in(page, email, new_password)
    await expect(page.locator("#inbox")).to_be_visible()

    for old in (before["refresh_token"], elsewhere.json()["tokens"]["refresh_token"]):
        refused = await api.post("/v1/auth/refresh", json={"refresh_token": old})
        assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "session_ended"  # the other device: ended by the reset
    assert errors == []


async def test_verifying_the_address_signing_out_a_device_and_changing_the_password(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    folder = outbox_folder(tmp_path)
    email = "careful@example.com"
    page = await signed_up(api, browser, email)
    errors = _watch(page)
    elsewhere = await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert elsewhere.status_code == 200, elsewhere.text
    await page.get_by_role("button", name="Settings").click()

    # Verification: a new mail on asking, and its link verifies the address.
    profile = page.locator("#settings-profile")
    await expect(profile).to_contain_text("Not verified")
    await profile.get_by_role("button", name="Resend verification mail").click()
    await expect(page.locator("#verify-result")).to_have_text(
        f"A verification link is on its way to {email}."
    )
    await page.goto(_link(await _mail(folder, "verify_email", email, count=2), "verify"))
    await expect(page.locator("#status")).to_have_text(f"Your address {email} is verified.")
    await expect(profile).to_contain_text("E-mail verified")
    assert "#verify=" not in page.url

    # Sessions: this browser and the other device; signing the other out ends it.
    rows = page.locator("#session-list tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text="This device")).to_have_count(1)
    await rows.filter(has_not_text="This device").get_by_role("button", name="Sign out").click()
    await expect(rows).to_have_count(1)
    await expect(page.locator("#sessions-result")).to_contain_text("is signed out.")
    other = elsewhere.json()["tokens"]
    refused = await api.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert (refused.status_code, refused.json()["error"]) == (401, "session_ended")

    # The password: the current one must be right; the new one works at the next sign-in.
    form = page.locator("#password-form")
    await form.get_by_label("Current password").fill("not my password at all")
    await form.get_by_label("New password").fill("an even longer new password")
    await form.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-result")).to_have_text("E-mail or password is wrong.")
    await form.get_by_label("Current password").fill(PASSWORD)
    await form.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-result")).to_have_text(
        "Your password is changed. Your other sessions have ended."
    )
    await expect(page.locator("#settings")).to_be_visible()  # this session goes on

    # Signing out this device from the list signs the page out.
    await rows.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#auth")).to_be_visible()
    await expect(page.locator("#auth-info")).to_have_text("This device is signed out.")
    await _sign_in(page, email, "an even longer new password")
    await expect(page.locator("#inbox")).to_be_visible()
    assert errors == []


async def test_an_existing_account_joins_with_its_password_and_switches_inboxes(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    folder = outbox_folder(tmp_path)
    owner = await signed_up(api, browser, "team.owner@example.com")
    page = await signed_up(api, browser, "has.account@example.com")
    errors = _watch(page)
    team, own = await _session(owner), await _session(page)
    invited = await api.post(
        "/v1/members/invitations",
        headers=_auth(team["access_token"]),
        json={"email": "has.account@example.com", "role": "admin"},
    )
    assert invited.status_code == 201, invited.text

    # The link opens over the signed-in inbox; the account signs in with its password to join.
    await page.goto(_link(await _mail(folder, "invitation", "has.account@example.com"), "invite"))
    card = page.locator("#account")
    await expect(card).to_contain_text("team.owner invited you to Personal as admin.")
    await card.get_by_label("Password", exact=True).fill("not the password")
    await card.get_by_role("button", name="Sign in and join").click()
    await expect(page.locator("#invite-result")).to_have_text("E-mail or password is wrong.")
    await card.get_by_label("Password", exact=True).fill(PASSWORD)
    await card.get_by_role("button", name="Sign in and join").click()
    await expect(page.locator("#inbox")).to_be_visible()
    joined = await _session(page)
    assert joined["tenant_id"] == team["tenant_id"]

    # Settings offers both inboxes; switching goes back to the account's own.
    await page.get_by_role("button", name="Settings").click()
    await expect(page.locator("#settings-profile")).to_contain_text("admin")
    choice = page.get_by_label("Inbox", exact=True)
    await expect(choice).to_have_value(team["tenant_id"])
    await choice.select_option(own["tenant_id"])
    await page.get_by_role("button", name="Switch").click()
    await expect(page.locator("#inbox")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("Switched to Personal.")
    switched = await _session(page)
    assert switched["tenant_id"] == own["tenant_id"]
    me = await api.get("/v1/me", headers=_auth(switched["access_token"]))
    assert (me.json()["tenant_id"], me.json()["role"]) == (own["tenant_id"], "owner")
    assert errors == []


async def test_the_owner_downloads_the_inbox_from_settings(
    api: httpx.AsyncClient,
    browser: Browser,  # noqa: F811 - the fixture imported above
) -> None:
    page = await signed_up(api, browser, "leaving@example.com")
    await page.get_by_role("button", name="Settings").click()
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Download my inbox").click()
    download = await waiting.value
    assert re.fullmatch(r"moltbot-export-\d{8}-\d{6}\.zip", download.suggested_filename)
    saved = Path(await download.path())
    with zipfile.ZipFile(saved) as archive:
        manifest = json.loads(archive.read("moltbot-export/manifest.json"))
    assert manifest["format"] == "moltbot-export" and manifest["counts"]["agents"] == 1
    await expect(page.locator("#export-result")).to_contain_text("moltbot migrate --from-export")
