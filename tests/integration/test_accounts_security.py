"""Accounts under attack: refresh tokens that rotate and die when reused, log-out, roles
read again on refresh, no log-in without a membership, log-in timing that does not tell
which e-mails exist, and rate limits on log-in, sign-up and refresh (429, Retry-After).

Over real servers (the ``api`` fixture); limits are made small per test by parametrizing
the ``limits`` fixture the gateway is started with.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import ids
from gateway.auth import Caller, Tokens
from gateway.limits import Limits
from gateway.passwords import hash_password
from moltbot import client
from tests.integration.conftest import Stack

PASSWORD = "correct horse battery"


async def _signup(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _login(api: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await api.post("/v1/auth/login", json={"email": email, "password": password})


async def _refresh(api: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await api.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


async def _me(api: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await api.get("/v1/me", headers={"Authorization": f"Bearer {access_token}"})


# --- A: refresh tokens rotate, reuse ends the session, log-out, membership re-read -------


async def test_a_refresh_token_works_once_and_reuse_ends_the_session(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "rotate@example.com")
    first = account["tokens"]["refresh_token"]

    rotated = await _refresh(api, first)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    assert (await _me(api, rotated.json()["access_token"])).status_code == 200

    # The used token again: someone else holds a copy. Refused, and the session ends...
    reused = await _refresh(api, first)
    assert reused.status_code == 401
    assert reused.json()["error"] == "refresh_token_reused"
    # ...so the token the rotation gave out stops working too.
    after = await _refresh(api, second)
    assert after.status_code == 401
    assert after.json()["error"] == "session_ended"

    # Another log-in of the same account is another session: untouched.
    other_session = await _login(api, "rotate@example.com")
    assert other_session.status_code == 200, other_session.text
    assert (await _refresh(api, other_session.json()["tokens"]["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_of_one_token_end_the_session(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "race@example.com")
    token = account["tokens"]["refresh_token"]
    answers = await asyncio.gather(*(_refresh(api, token) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401]
    winner = next(a for a in answers if a.status_code == 200)
    assert (await _refresh(api, winner.json()["refresh_token"])).json()["error"] == "session_ended"


async def test_logout_ends_the_session(api: httpx.AsyncClient) -> None:
    await _signup(api, "logout@example.com")
    session = (await _login(api, "logout@example.com")).json()["tokens"]
    rotated = (await _refresh(api, session["refresh_token"])).json()

    out = await api.post("/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    assert out.status_code == 204, out.text
    refused = await _refresh(api, rotated["refresh_token"])
    assert refused.status_code == 401
    assert refused.json()["error"] == "session_ended"
    # Again, or with an older token of the same session: still 204, nothing more to end.
    assert (
        await api.post("/v1/auth/logout", json={"refresh_token": session["refresh_token"]})
    ).status_code == 204
    forged = await api.post("/v1/auth/logout", json={"refresh_token": "abc.def.ghi"})
    assert forged.status_code == 401
    wrong_kind = await api.post("/v1/auth/logout", json={"refresh_token": rotated["access_token"]})
    assert wrong_kind.status_code == 401


async def test_refresh_reads_the_role_again(api: httpx.AsyncClient, stack: Stack) -> None:
    account = await _signup(api, "demoted@example.com")
    tenant_id, user_id = account["tenant_id"], account["user_id"]
    assert (await _me(api, account["tokens"]["access_token"])).json()["role"] == "owner"

    demoted = ev.new_event(
        ev.MemberAdded, tenant_id=tenant_id, aggregate_id=tenant_id, actor="user:test",
        data=ev.MemberAddedData(user_id=user_id, role="member"),
    )  # fmt: skip
    await stack.store.append(demoted)
    await stack.wait_caught_up()
    refreshed = await _refresh(api, account["tokens"]["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    me = await _me(api, refreshed.json()["access_token"])
    assert me.json()["role"] == "member"

    removed = ev.new_event(
        ev.MemberRemoved, tenant_id=tenant_id, aggregate_id=tenant_id, actor="user:test",
        data=ev.MemberRemovedData(user_id=user_id),
    )  # fmt: skip
    await stack.store.append(removed)
    await stack.wait_caught_up()
    gone = await _refresh(api, refreshed.json()["refresh_token"])
    assert gone.status_code == 401
    assert gone.json()["error"] == "not_a_member"
    login = await _login(api, "demoted@example.com")
    assert login.status_code == 401
    assert login.json()["error"] == "not_a_member"


async def test_login_needs_a_membership(api: httpx.AsyncClient, stack: Stack) -> None:
    # A password account whose user was never added to the tenant (no member.added event).
    user_id, tenant_id = ids.new_id(ids.USER), ids.new_id(ids.TENANT)
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    async with pg_connection(stack.database_url) as conn:
        await conn.execute(
            "INSERT INTO gateway.credentials (email, user_id, tenant_id, password_hash)"
            " VALUES (%s, %s, %s, %s)",
            ("stray@example.com", user_id, tenant_id, password_hash),
        )
    refused = await _login(api, "stray@example.com")
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "not_a_member"
    assert "tokens" not in refused.json()

    # A fresh sign-up logs in at once, as owner: the log-in waits for the read model.
    await _signup(api, "fresh@example.com")
    fresh = await _login(api, "fresh@example.com")
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["role"] == "owner"


async def test_the_cli_client_keeps_the_rotated_refresh_token(api: httpx.AsyncClient, tmp_path: Path) -> None:
    account = await _signup(api, "cli-rotate@example.com")
    key = serialization.load_pem_private_key((tmp_path / "jwt.pem").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    caller = Caller(user_id=account["user_id"], tenant_id=account["tenant_id"], role="owner")
    expired = Tokens(key, access_ttl=-60).issue(caller).access_token
    path = tmp_path / "session.json"
    stale = client.Session(
        gateway_url=str(api.base_url),
        access_token=expired,
        refresh_token=account["tokens"]["refresh_token"],
        tenant_id=account["tenant_id"],
        user_id=account["user_id"],
        email="cli-rotate@example.com",
    )
    client.save_session(path, stale)

    # Calls that find the access token expired at once refresh once, not once each.
    async with client.Api(client.load_session(path), path) as cli:
        answers = await asyncio.gather(cli.get("/v1/me"), cli.get("/v1/me"), cli.get("/v1/conversations"))
    assert answers[0]["user_id"] == account["user_id"]
    saved = client.load_session(path)
    assert saved.refresh_token != stale.refresh_token

    # Another process still holding the old tokens takes over the saved ones.
    async with client.Api(stale, path) as other:
        assert (await other.get("/v1/me"))["user_id"] == account["user_id"]
    assert client.load_session(path).refresh_token == saved.refresh_token
    assert (await _refresh(api, saved.refresh_token)).status_code == 200  # the session is alive


# --- B: log-in timing and rate limits -------------------------------------------------------


async def test_an_unknown_email_takes_as_long_as_a_known_one(api: httpx.AsyncClient) -> None:
    await _signup(api, "known@example.com")
    await _login(api, "known@example.com", "wrong password!")  # warm up both paths
    await _login(api, "nobody-0@example.com", "wrong password!")
    known: list[float] = []
    unknown: list[float] = []
    for attempt in range(1, 6):
        for email, times in (("known@example.com", known), (f"nobody-{attempt}@example.com", unknown)):
            started = time.perf_counter()
            response = await _login(api, email, "wrong password!")
            times.append(time.perf_counter() - started)
            assert response.status_code == 401
            assert response.json() == {
                "error": "invalid_credentials",
                "detail": "E-mail or password is wrong.",
            }
    # Before the fix an unknown address answered some 30 times sooner (no password hash).
    assert statistics.median(unknown) >= 0.5 * statistics.median(known), (known, unknown)


def _small(**limits: int) -> Any:
    """Parametrize the ``limits`` fixture (the gateway under test) with these limits."""
    return pytest.mark.parametrize("limits", [Limits(**limits)], ids=["small-limits"])


async def _until_refused(attempt: Any, allowed: int) -> tuple[list[httpx.Response], httpx.Response]:
    """Attempt until ``429``: the first ``allowed`` attempts fit in any one minute window, and
    twice as many and one more cross at most one window boundary, so a refusal must come."""
    answers: list[httpx.Response] = []
    for _ in range(2 * allowed + 2):
        response = await attempt()
        if response.status_code == 429:
            return answers, response
        answers.append(response)
    raise AssertionError(f"no 429 after {len(answers)} attempts: {[a.status_code for a in answers]}")


def _assert_refusal(response: httpx.Response, words: str) -> None:
    assert response.json()["error"] == "rate_limited"
    assert words in response.json()["detail"]
    assert 1 <= int(response.headers["retry-after"]) <= 60


@_small(login_per_ip=3)
async def test_login_is_limited_per_address_before_any_hashing(api: httpx.AsyncClient) -> None:
    await _signup(api, "limited@example.com")
    took: dict[int, float] = {}  # seconds, by id(response)

    async def attempt() -> httpx.Response:
        started = time.perf_counter()
        response = await _login(api, "limited@example.com", "wrong password!")
        took[id(response)] = time.perf_counter() - started
        return response

    answers, refused = await _until_refused(attempt, allowed=3)
    assert len(answers) >= 3
    assert {a.status_code for a in answers} == {401}
    _assert_refusal(refused, "Too many sign-in attempts from your address.")
    # Refused before the password is hashed: quicker than any attempt that was checked.
    refusals = [refused, await attempt(), await attempt()]
    assert {r.status_code for r in refusals} == {429}
    assert min(took[id(r)] for r in refusals) < min(took[id(a)] for a in answers)
    # The right password is refused as well while the window lasts.
    assert (await _login(api, "limited@example.com")).status_code == 429


@_small(login_per_account=3)
async def test_login_is_limited_per_account(api: httpx.AsyncClient, stack: Stack) -> None:
    await _signup(api, "target@example.com")
    answers, refused = await _until_refused(
        lambda: _login(api, "target@example.com", "guess number 1"), allowed=3
    )
    assert len(answers) >= 3
    _assert_refusal(refused, "Too many sign-in attempts for this account.")
    # Another account from the same address is not held back.
    assert (await _login(api, "someone-else@example.com", "guess number 1")).status_code == 401
    # The counters hold a digest of the address, never the address.
    async with pg_connection(stack.database_url) as conn:
        rows = await (await conn.execute("SELECT bucket FROM gateway.rate_limits")).fetchall()
    buckets = [str(row["bucket"]) for row in rows]
    assert any(b.startswith("login_per_account:") for b in buckets)
    assert not any("target@example.com" in b for b in buckets)


@_small(signup_per_ip=2)
async def test_signup_is_limited_per_address(api: httpx.AsyncClient) -> None:
    emails = (f"signup-{n}@example.com" for n in range(100))
    answers, refused = await _until_refused(
        lambda: api.post("/v1/auth/signup", json={"email": next(emails), "password": PASSWORD}), allowed=2
    )
    assert len(answers) >= 2
    assert {a.status_code for a in answers} == {201}
    _assert_refusal(refused, "Too many sign-ups from your address.")


@_small(refresh_per_ip=2)
async def test_refresh_is_limited_per_address(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "refresher@example.com")
    tokens = [account["tokens"]["refresh_token"]]

    async def attempt() -> httpx.Response:
        response = await _refresh(api, tokens[-1])
        if response.status_code == 200:
            tokens.append(response.json()["refresh_token"])
        return response

    answers, refused = await _until_refused(attempt, allowed=2)
    assert len(answers) >= 2
    assert {a.status_code for a in answers} == {200}
    _assert_refusal(refused, "Too many token refreshes from your address.")
