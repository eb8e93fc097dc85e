"""Accounts people can trust, end to end over real servers: password reset by mail (no
enumeration, single-use and expiring tokens, every session ended), e-mail verification (and
what ``required`` shuts), sessions listed and revoked, two-factor sign-in with replay and
recovery codes, argon2id rehashing, invitations → roles → removal with the last-owner rule,
switching inboxes, and an audit entry for each of them.

Mail goes to the ``mailer`` fixture: the data folder's outbox (``.eml`` files), or — in the
SMTP test — a local SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import stamina
from websockets.asyncio.client import connect as ws_connect

from adapters.mail.outbox import list_mail, outbox_folder, read_mail, text_body
from adapters.mail.smtp import SmtpMailer
from adapters.postgres.database import connection as pg_connection
from domain.mail import Mailer
from domain.plans import Catalog
from gateway.limits import Limits
from gateway.routes import realtime
from tests.conftest import early_in_a_rate_window, roomy_catalog
from tests.fakes.smtp_server import FakeSmtp, smtp_server
from tests.integration.conftest import Stack

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse correct"


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # room for people: invitations are the subject, not the plan


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _signup(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _login(
    api: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    return await api.post("/v1/auth/login", json={"email": email, "password": password, **extra})


async def _mail(folder: Path, kind: str, to: str, *, count: int = 1) -> str:
    """The text of the ``count``-th mail of ``kind`` to ``to`` (it leaves in the background)."""
    for _ in range(200):
        found = [m for m in list_mail(folder) if m.kind == kind and m.to == to]
        if len(found) >= count:
            return text_body(read_mail(folder, found[count - 1].name))
        await asyncio.sleep(0.025)
    raise AssertionError(f"no {kind} mail #{count} to {to} in {folder}: {list_mail(folder)}")


def _token(text: str, fragment: str) -> str:
    match = re.search(rf"#{fragment}=([A-Za-z0-9_-]+)", text)
    assert match is not None, text
    return match.group(1)


async def _audit(api: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await api.get("/v1/audit", headers=_auth(token), params={"limit": 200})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def _actions(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["action"] for entry in entries]


# --- password reset ------------------------------------------------------------------------


async def test_a_reset_link_sets_the_password_once_and_ends_every_session(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = outbox_folder(tmp_path)
    account = await _signup(api, "forgetful@example.com")
    second = (await _login(api, "forgetful@example.com")).json()

    known = await api.post("/v1/auth/password-reset", json={"email": "Forgetful@Example.com"})
    unknown = await api.post("/v1/auth/password-reset", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()  # the answer tells nothing about the address
    text = await _mail(folder, "password_reset", "forgetful@example.com")
    assert "30 minutes" in text
    await asyncio.sleep(0.2)
    assert not [m for m in list_mail(folder) if m.to == "nobody@example.com"]

    token = _token(text, "reset")
    short = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "password": "short"})
    assert short.status_code == 400
    assert short.json()["field"] == "password"
    done = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
    assert done.status_code == 200, done.text
    assert done.json()["sessions_ended"] == 2
    again = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "password": PASSWORD})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_token"

    # Both sessions ended: their refresh tokens and their access tokens alike.
    for session in (account["tokens"], second["tokens"]):
        refused = await api.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
        assert refused.status_code == 401
        assert refused.json()["error"] == "session_ended"
        me = await api.get("/v1/me", headers=_auth(session["access_token"]))
        assert me.status_code == 401
        assert me.json()["error"] == "session_ended"
    assert (await _login(api, "forgetful@example.com")).status_code == 401
    fresh = await _login(api, "forgetful@example.com", NEW_PASSWORD)
    assert fresh.status_code == 200, fresh.text
    assert (await _mail(folder, "password_changed", "forgetful@example.com")).strip()

    me = await api.get("/v1/me", headers=_auth(fresh.json()["tokens"]["access_token"]))
    assert me.json()["email_verified"] is True  # the link reached the mailbox: the address is proven
    actions = _actions(await _audit(api, fresh.json()["tokens"]["access_token"]))
    for action in ("account.created", "password.reset_requested", "password.reset", "signin.failed"):
        assert action in actions, actions


async def test_a_reset_link_expires_and_a_newer_one_replaces_it(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    folder = outbox_folder(tmp_path)
    await _signup(api, "late@example.com")
    await api.post("/v1/auth/password-reset", json={"email": "late@example.com"})
    first = _token(await _mail(folder, "password_reset", "late@example.com"), "reset")
    await api.post("/v1/auth/password-reset", json={"email": "late@example.com"})
    second = _token(await _mail(folder, "password_reset", "late@example.com", count=2), "reset")

    replaced = await api.post(
        "/v1/auth/password-reset/confirm", json={"token": first, "password": NEW_PASSWORD}
    )
    assert replaced.status_code == 400  # only the newest link works
    async with pg_connection(stack.database_url) as conn:
        await conn.execute(
            "UPDATE gateway.one_time_tokens SET expires_at = now() - interval '1 minute' WHERE email = %s",
            ("late@example.com",),
        )
    expired = await api.post(
        "/v1/auth/password-reset/confirm", json={"token": second, "password": NEW_PASSWORD}
    )
    assert expired.status_code == 400
    assert "30 minutes" in expired.json()["detail"]


async def test_reset_answers_take_the_same_time_for_known_and_unknown_addresses(
    api: httpx.AsyncClient,
) -> None:
    await _signup(api, "timed@example.com")

    async def took(email: str) -> float:
        start = time.perf_counter()
        response = await api.post("/v1/auth/password-reset", json={"email": email})
        assert response.status_code == 202
        return time.perf_counter() - start

    # Alternating, median of a few: the known address costs one row more, no mail wait.
    known, unknown = [], []
    for index in range(3):
        known.append(await took("timed@example.com"))
        unknown.append(await took(f"ghost{index}@example.com"))
    assert sorted(known)[1] < sorted(unknown)[1] + 0.1


@pytest.mark.parametrize(
    "limits", [Limits(password_reset_per_ip=3, password_reset_per_account=0)], ids=["3-per-ip"]
)
async def test_password_reset_is_rate_limited(api: httpx.AsyncClient) -> None:
    await early_in_a_rate_window()
    codes = [
        (await api.post("/v1/auth/password-reset", json={"email": f"r{i}@example.com"})).status_code
        for i in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    bad = await api.post(
        "/v1/auth/password-reset/confirm", json={"token": "x" * 43, "password": NEW_PASSWORD}
    )
    assert bad.status_code == 429
    assert bad.headers["Retry-After"]


# --- e-mail verification -----------------------------------------------------------------------


async def test_sign_up_mails_a_verification_link(api: httpx.AsyncClient, tmp_path: Path) -> None:
    account = await _signup(api, "verify@example.com")
    access = account["tokens"]["access_token"]
    assert (await api.get("/v1/me", headers=_auth(access))).json()["email_verified"] is False
    token = _token(await _mail(outbox_folder(tmp_path), "verify_email", "verify@example.com"), "verify")

    verified = await api.post("/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"email": "verify@example.com", "email_verified": True}
    assert (await api.get("/v1/me", headers=_auth(access))).json()["email_verified"] is True
    reused = await api.post("/v1/auth/verify-email", json={"token": token})
    assert reused.status_code == 400
    resend = await api.post("/v1/me/verify-email", headers=_auth(access))
    assert resend.status_code == 409
    assert resend.json()["error"] == "already_verified"
    assert "email.verified" in _actions(await _audit(api, access))


@pytest.mark.parametrize("email_verification", ["required"])
async def test_required_verification_shuts_channels_and_billing_until_verified(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    account = await _signup(api, "strict@example.com")
    access = account["tokens"]["access_token"]
    connect = await api.post(
        "/v1/channels/telegram/connect", headers=_auth(access), json={"bot_token": "123:abc"}
    )
    assert connect.status_code == 403, connect.text
    assert connect.json()["error"] == "email_unverified"
    pairing = await api.post("/v1/devices/pairing-codes", headers=_auth(access))
    assert pairing.status_code == 403

    resent = await api.post("/v1/me/verify-email", headers=_auth(access))
    assert resent.status_code == 202
    # The resent link is the one that works: the sign-up's is void.
    folder = outbox_folder(tmp_path)
    first = _token(await _mail(folder, "verify_email", "strict@example.com"), "verify")
    second = _token(await _mail(folder, "verify_email", "strict@example.com", count=2), "verify")
    assert (await api.post("/v1/auth/verify-email", json={"token": first})).status_code == 400
    assert (await api.post("/v1/auth/verify-email", json={"token": second})).status_code == 200
    pairing = await api.post("/v1/devices/pairing-codes", headers=_auth(access))
    assert pairing.status_code in (201, 402), pairing.text  # past the gate: the plan decides now


# --- sessions ----------------------------------------------------------------------------------


async def test_sessions_are_listed_and_one_can_be_signed_out(api: httpx.AsyncClient) -> None:
    laptop = (await _signup(api, "devices@example.com"))["tokens"]
    phone_login = await api.post(
        "/v1/auth/login",
        json={"email": "devices@example.com", "password": PASSWORD},
        headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1"},
    )
    phone = phone_login.json()["tokens"]
    listed = await api.get("/v1/me/sessions", headers=_auth(laptop["access_token"]))
    assert listed.status_code == 200, listed.text
    sessions = listed.json()["sessions"]
    assert len(sessions) == 2
    assert {s["device"] for s in sessions} == {"API client (httpx)", "Safari on iOS"}
    assert [s["current"] for s in sessions if s["device"] == "API client (httpx)"] == [True]
    assert all(s["ip"] == "127.0.0.1" for s in sessions)

    phone_id = next(s["id"] for s in sessions if s["device"] == "Safari on iOS")
    assert (
        await api.delete(f"/v1/me/sessions/{phone_id}", headers=_auth(laptop["access_token"]))
    ).status_code == 204
    gone = await api.get("/v1/me", headers=_auth(phone["access_token"]))
    assert gone.status_code == 401
    assert gone.json()["error"] == "session_ended"
    assert (
        await api.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    ).status_code == 401
    again = await api.delete(f"/v1/me/sessions/{phone_id}", headers=_auth(laptop["access_token"]))
    assert again.status_code == 404
    # Another person's session cannot be ended by id.
    stranger = (await _signup(api, "stranger@example.com"))["tokens"]
    laptop_id = next(s["id"] for s in sessions if s["current"])
    assert (
        await api.delete(f"/v1/me/sessions/{laptop_id}", headers=_auth(stranger["access_token"]))
    ).status_code == 404
    assert (await api.get("/v1/me", headers=_auth(laptop["access_token"]))).status_code == 200
    assert "session.revoked" in _actions(await _audit(api, laptop["access_token"]))


# --- two-factor sign-in ------------------------------------------------------------------------


async def _enrol(api: httpx.AsyncClient, access: str) -> tuple[pyotp.TOTP, list[str]]:
    started = await api.post("/v1/me/2fa", headers=_auth(access))
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/Moltbot%20Cloud:")
    assert body["qr_svg"].lstrip().startswith("<svg")
    totp = pyotp.TOTP(body["secret"])
    wrong = await api.post("/v1/me/2fa/confirm", headers=_auth(access), json={"code": "000000"})
    assert wrong.status_code == 400
    confirmed = await api.post("/v1/me/2fa/confirm", headers=_auth(access), json={"code": totp.now()})
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    return totp, codes


@pytest.mark.parametrize("limits", [Limits(otp_per_account=20)], ids=["roomy-otp-limit"])
async def test_two_factor_sign_in_with_codes_replay_and_recovery_codes(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    access = (await _signup(api, "twofa@example.com"))["tokens"]["access_token"]
    totp, codes = await _enrol(api, access)
    assert (await api.get("/v1/me", headers=_auth(access))).json()["two_factor"] is True
    assert (await api.post("/v1/me/2fa", headers=_auth(access))).status_code == 409  # on already
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT ciphertext FROM gateway.two_factor")
        stored = [bytes(row["ciphertext"]) for row in await cur.fetchall()]
    assert stored
    assert all(totp.secret.encode() not in s for s in stored)  # sealed, never the secret itself

    needs = await _login(api, "twofa@example.com")
    assert needs.status_code == 401
    assert needs.json()["error"] == "otp_required"
    assert "tokens" not in needs.json()
    wrong = await _login(api, "twofa@example.com", otp="123456")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_otp"

    code = totp.at(time.time() + 30)  # the next step: the one confirmed with is spent
    assert (await _login(api, "twofa@example.com", otp=code)).status_code == 200
    replayed = await _login(api, "twofa@example.com", otp=code)
    assert replayed.status_code == 401  # a code works once
    assert replayed.json()["error"] == "invalid_otp"

    assert (await _login(api, "twofa@example.com", otp=codes[0].upper())).status_code == 200
    assert (await _login(api, "twofa@example.com", otp=codes[0])).status_code == 401  # used up
    state = await api.get("/v1/me/2fa", headers=_auth(access))
    assert state.json() == {"enabled": True, "recovery_codes_left": 9}

    off = await api.post(
        "/v1/me/2fa/disable", headers=_auth(access), json={"password": PASSWORD, "otp": codes[1]}
    )
    assert off.status_code == 204, off.text
    assert (await _login(api, "twofa@example.com")).status_code == 200
    actions = _actions(await _audit(api, access))
    for action in ("2fa.enabled", "2fa.recovery_code_used", "2fa.disabled", "signin.failed"):
        assert action in actions, actions
    changed = await _mail(outbox_folder(tmp_path), "two_factor_changed", "twofa@example.com", count=2)
    assert "turned off" in changed


@pytest.mark.parametrize("limits", [Limits(otp_per_account=3)], ids=["3-codes"])
async def test_two_factor_codes_are_rate_limited(api: httpx.AsyncClient) -> None:
    await early_in_a_rate_window()
    access = (await _signup(api, "guessed@example.com"))["tokens"]["access_token"]
    await _enrol(api, access)  # the confirm's two tries count too
    codes = [(await _login(api, "guessed@example.com", otp="111111")).status_code for _ in range(3)]
    assert codes[-1] == 429
    assert set(codes[:-1]) <= {401, 429}


# --- passwords ---------------------------------------------------------------------------------


async def test_a_scrypt_password_is_rehashed_as_argon2id_at_sign_in(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    await _signup(api, "legacy@example.com")
    salt = os.urandom(16)
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 1024 * 1024)
    legacy = f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    async with pg_connection(stack.database_url) as conn:
        await conn.execute(
            "UPDATE gateway.credentials SET password_hash = %s WHERE email = %s",
            (legacy, "legacy@example.com"),
        )
    assert (await _login(api, "legacy@example.com", "wrong password!")).status_code == 401
    assert (await _login(api, "legacy@example.com")).status_code == 200
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute(
            "SELECT password_hash FROM gateway.credentials WHERE email = %s", ("legacy@example.com",)
        )
        row = await cur.fetchone()
    assert row is not None
    assert row["password_hash"].startswith("$argon2id$")
    assert (await _login(api, "legacy@example.com")).status_code == 200


async def test_changing_the_password_keeps_this_session_and_ends_the_others(api: httpx.AsyncClient) -> None:
    here = (await _signup(api, "changer@example.com"))["tokens"]
    there = (await _login(api, "changer@example.com")).json()["tokens"]
    wrong = await api.post(
        "/v1/me/password", headers=_auth(here["access_token"]),
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
    )  # fmt: skip
    assert wrong.status_code == 401
    changed = await api.post(
        "/v1/me/password", headers=_auth(here["access_token"]),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["sessions_ended"] == 1
    assert (await api.get("/v1/me", headers=_auth(here["access_token"]))).status_code == 200
    assert (await api.get("/v1/me", headers=_auth(there["access_token"]))).status_code == 401


# --- people: invitations, roles, removal, switching ----------------------------------------------


async def _invite(api: httpx.AsyncClient, access: str, email: str, role: str, folder: Path) -> str:
    invited = await api.post(
        "/v1/members/invitations", headers=_auth(access), json={"email": email, "role": role}
    )
    assert invited.status_code == 201, invited.text
    assert invited.json()["email"] == email
    return _token(await _mail(folder, "invitation", email), "invite")


async def test_invite_accept_change_role_remove_and_the_last_owner(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = outbox_folder(tmp_path)
    owner = await _signup(api, "owner@example.com")
    owner_access = owner["tokens"]["access_token"]
    token = await _invite(api, owner_access, "friend@example.com", "member", folder)
    listed = (await api.get("/v1/members", headers=_auth(owner_access))).json()
    assert [i["email"] for i in listed["invitations"]] == ["friend@example.com"]

    preview = await api.post("/v1/auth/invitations/preview", json={"token": token})
    assert preview.status_code == 200, preview.text
    assert preview.json()["account_exists"] is False
    assert preview.json()["inbox"] == "Personal"
    joined = await api.post(
        "/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD, "display_name": "Friend"}
    )
    assert joined.status_code == 200, joined.text
    friend = joined.json()
    assert friend["tenant_id"] == owner["tenant_id"]
    assert friend["role"] == "member"
    friend_access = friend["tokens"]["access_token"]
    me = (await api.get("/v1/me", headers=_auth(friend_access))).json()
    assert me["email_verified"] is True
    assert me["email"] == "friend@example.com"
    assert (
        await api.post("/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD})
    ).status_code == 400

    people = (await api.get("/v1/members", headers=_auth(friend_access))).json()
    assert {(p["email"], p["role"]) for p in people["members"]} == {
        ("owner@example.com", "owner"), ("friend@example.com", "member"),
    }  # fmt: skip
    assert people["invitations"] == []  # members do not see invitations
    # A member cannot invite, change roles or read the audit log.
    assert (
        await api.post(
            "/v1/members/invitations", headers=_auth(friend_access), json={"email": "x@example.com"}
        )
    ).status_code == 403
    assert (await api.get("/v1/audit", headers=_auth(friend_access))).status_code == 403

    promoted = await api.patch(
        f"/v1/members/{friend['user_id']}", headers=_auth(owner_access), json={"role": "admin"}
    )
    assert promoted.status_code == 200, promoted.text
    assert (await api.get("/v1/me", headers=_auth(friend_access))).json()["role"] == "admin"  # at once
    # An admin cannot touch an owner; the last owner cannot be demoted or leave.
    assert (
        await api.patch(
            f"/v1/members/{owner['user_id']}", headers=_auth(friend_access), json={"role": "member"}
        )
    ).status_code == 403
    demote_self = await api.patch(
        f"/v1/members/{owner['user_id']}", headers=_auth(owner_access), json={"role": "admin"}
    )
    assert demote_self.status_code == 409
    assert demote_self.json()["error"] == "last_owner"
    leave = await api.delete(f"/v1/members/{owner['user_id']}", headers=_auth(owner_access))
    assert leave.status_code == 409

    removed = await api.delete(f"/v1/members/{friend['user_id']}", headers=_auth(owner_access))
    assert removed.status_code == 200, removed.text
    refused = await api.get("/v1/conversations", headers=_auth(friend_access))
    assert refused.status_code == 401  # at once, with a still-valid access token
    assert refused.json()["error"] == "not_a_member"
    assert (
        await api.post("/v1/auth/refresh", json={"refresh_token": friend["tokens"]["refresh_token"]})
    ).status_code == 401

    actions = _actions(await _audit(api, owner_access))
    for action in ("member.invited", "member.joined", "member.role_changed", "member.removed"):
        assert action in actions, actions
    joined_entry = next(e for e in await _audit(api, owner_access) if e["action"] == "member.joined")
    assert joined_entry["ip"] == "127.0.0.1"
    assert joined_entry["detail"]["new_account"] is True


async def test_a_removed_member_loses_the_open_streams_and_cannot_open_one(
    api: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime, "RECHECK_SECONDS", 0.1)
    monkeypatch.setattr(realtime, "HEARTBEAT_SECONDS", 0.2)  # a quiet stream is looked at as often
    owner = await _signup(api, "streams-owner@example.com")
    owner_access = owner["tokens"]["access_token"]
    token = await _invite(api, owner_access, "watcher@example.com", "member", outbox_folder(tmp_path))
    watcher = (
        await api.post("/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD})
    ).json()
    watcher_access = watcher["tokens"]["access_token"]
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "token": watcher_access}))
        assert json.loads(await socket.recv())["op"] == "subscribed"
        async with api.stream("GET", "/v1/events", params={"since": 1}, headers=_auth(watcher_access)) as sse:
            assert sse.status_code == 200
            await asyncio.sleep(0.3)
            removed = await api.delete(f"/v1/members/{watcher['user_id']}", headers=_auth(owner_access))
            assert removed.status_code == 200
            lines = [line async for line in sse.aiter_lines()]  # the stream ends by itself
        assert any(line.startswith("data:") for line in lines)  # it had delivered the history
        farewell = json.loads(await asyncio.wait_for(socket.recv(), 10))
        while farewell["op"] in ("event", "heartbeat"):
            farewell = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert farewell["op"] == "error"
        assert "no longer a member" in farewell["detail"]
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "token": watcher_access}))
        refused = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert refused["op"] == "error"
        assert "no longer a member" in refused["detail"]


async def test_an_existing_account_joins_a_second_inbox_and_switches(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = outbox_folder(tmp_path)
    team = await _signup(api, "team-owner@example.com")
    solo = await _signup(api, "solo@example.com")
    token = await _invite(api, team["tokens"]["access_token"], "solo@example.com", "admin", folder)
    assert (await api.post("/v1/auth/invitations/preview", json={"token": token})).json()[
        "account_exists"
    ] is True
    wrong = await api.post(
        "/v1/auth/invitations/accept", json={"token": token, "password": "not the password"}
    )
    assert wrong.status_code == 401
    joined = await api.post("/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD})
    assert joined.status_code == 200, joined.text
    assert joined.json()["tenant_id"] == team["tenant_id"]
    assert joined.json()["user_id"] == solo["user_id"]

    solo_access = solo["tokens"]["access_token"]
    inboxes = (await api.get("/v1/me", headers=_auth(solo_access))).json()["inboxes"]
    assert {(i["tenant_id"], i["role"]) for i in inboxes} == {
        (solo["tenant_id"], "owner"), (team["tenant_id"], "admin"),
    }  # fmt: skip
    switched = await api.post(
        "/v1/auth/switch", headers=_auth(solo_access), json={"tenant_id": team["tenant_id"]}
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["role"] == "admin"
    team_me = (await api.get("/v1/me", headers=_auth(switched.json()["tokens"]["access_token"]))).json()
    assert team_me["tenant_id"] == team["tenant_id"]
    # The next sign-in lands in the inbox switched to last.
    assert (await _login(api, "solo@example.com")).json()["tenant_id"] == team["tenant_id"]
    # No way into an inbox one is not a member of.
    stranger = await _signup(api, "outsider@example.com")
    refused = await api.post(
        "/v1/auth/switch",
        headers=_auth(stranger["tokens"]["access_token"]),
        json={"tenant_id": team["tenant_id"]},
    )
    assert refused.status_code == 403
    # Leaving: the admin leaves the team inbox; the own inbox stays.
    left = await api.delete(
        f"/v1/members/{solo['user_id']}", headers=_auth(switched.json()["tokens"]["access_token"])
    )
    assert left.status_code == 200
    back = await _login(api, "solo@example.com")
    assert back.json()["tenant_id"] == solo["tenant_id"]  # the home inbox is gone: the next one
    assert "member.left" in _actions(await _audit(api, team["tokens"]["access_token"]))


async def test_an_invitation_can_be_withdrawn_and_seats_follow_the_plan(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    owner = await _signup(api, "withdrawer@example.com")
    access = owner["tokens"]["access_token"]
    token = await _invite(api, access, "maybe@example.com", "member", outbox_folder(tmp_path))
    invitation = (await api.get("/v1/members", headers=_auth(access))).json()["invitations"][0]
    assert (
        await api.delete(f"/v1/members/invitations/{invitation['id']}", headers=_auth(access))
    ).status_code == 204
    assert (await api.post("/v1/auth/invitations/preview", json={"token": token})).status_code == 400
    taken = await api.post(
        "/v1/members/invitations", headers=_auth(access), json={"email": "withdrawer@example.com"}
    )
    assert taken.status_code == 409  # already a member
    bad = await api.post(
        "/v1/members/invitations", headers=_auth(access), json={"email": "x@example.com", "role": "god"}
    )
    assert bad.status_code == 400


async def test_audit_log_pages_with_a_cursor(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "pager@example.com")
    for _ in range(4):
        await _login(api, "pager@example.com")
    access = account["tokens"]["access_token"]
    first = (await api.get("/v1/audit", headers=_auth(access), params={"limit": 2})).json()
    assert len(first["entries"]) == 2
    assert first["next_cursor"]
    second = (
        await api.get("/v1/audit", headers=_auth(access), params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert {e["entry_id"] for e in first["entries"]}.isdisjoint(e["entry_id"] for e in second["entries"])
    assert max(e["entry_id"] for e in second["entries"]) < min(e["entry_id"] for e in first["entries"])
    assert all(e["action"] == "signin.succeeded" for e in first["entries"])
    assert first["entries"][0]["user_agent"].startswith("python-httpx")
    bad = await api.get("/v1/audit", headers=_auth(access), params={"cursor": "abc"})
    assert bad.status_code == 400


# --- mail over SMTP ------------------------------------------------------------------------------


class TestSmtp:
    """The same mail through a real SMTP exchange (a local aiosmtpd server, with a login)."""

    @pytest.fixture
    async def smtp(self) -> AsyncIterator[FakeSmtp]:
        stamina.set_testing(True, attempts=3, cap=True)
        try:
            async with smtp_server(users={"moltbot": "s3cret"}) as server:
                yield server
        finally:
            stamina.set_testing(False)

    @pytest.fixture
    def mailer(self, smtp: FakeSmtp) -> Mailer:
        return SmtpMailer(smtp.url(user="moltbot", password="s3cret"), "Moltbot Cloud <no-reply@example.com>")

    async def test_reset_mail_goes_through_the_smtp_server(
        self, api: httpx.AsyncClient, smtp: FakeSmtp
    ) -> None:
        await _signup(api, "smtp@example.com")
        assert (
            await api.post("/v1/auth/password-reset", json={"email": "smtp@example.com"})
        ).status_code == 202
        for _ in range(200):
            resets = [m for m in smtp.messages if m["X-Moltbot-Kind"] == "password_reset"]
            if resets:
                break
            await asyncio.sleep(0.025)
        assert len(resets) == 1
        message = resets[0]
        assert message["To"] == "smtp@example.com"
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        token = _token(body.get_content(), "reset")
        done = await api.post(
            "/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
        )
        assert done.status_code == 200
        assert message.get_body(preferencelist=("html",)) is not None
