"""Hostile requests get a clean 4xx with the error body, and store nothing: huge bodies,
deep JSON, invalid UTF-8, subject and SQL injection in ids and topics, expired and forged
tokens, another tenant's ids."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _widget


def _clean_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "detail"}
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/messages", {"conversation_id": "c_x.>", "text": "hi"}),
        ("POST", "/v1/messages", {"conversation_id": "c_1' OR '1'='1", "text": "hi"}),
        ("PATCH", "/v1/conversations/ev.*.>", {"read": True}),
        ("PATCH", "/v1/conversations/c_1%27%20OR%201=1--", {"read": True}),
        ("GET", "/v1/conversations/c_1'--/messages", None),
        ("PUT", "/v1/agents/ag_1.>", {"name": "x"}),
        ("DELETE", "/v1/channels/cn_1%20OR%201=1", None),
        ("GET", "/v1/media/..%2F..%2Fetc%2Fpasswd", None),
        ("GET", "/v1/search?q=%27%3B%20DROP%20TABLE%20rm_inbox.messages%3B--", None),
    ],
)
async def test_injection_in_ids_is_refused_or_not_found(
    api: httpx.AsyncClient, stack: Stack, method: str, path: str, body: dict[str, Any] | None
) -> None:
    owner = await _signup(api, f"hostile-{abs(hash(path)) % 10**8}@example.com")
    before = await stack.store.last_seq()
    response = await api.request(method, path, json=body, headers=_auth(owner))
    if path.startswith("/v1/search"):
        assert response.status_code == 200  # words to look for, nothing more
        assert response.json() == []
    else:
        _clean_error(response, 400, 404)
    assert await stack.store.last_seq() == before


async def test_oversized_deep_and_undecodable_bodies(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "bodies@example.com")
    key = (await _widget(api, owner))["widget_key"]
    before = await stack.store.last_seq()
    headers = _auth(owner) | {"content-type": "application/json"}
    huge = json.dumps({"conversation_id": "c_1", "text": "x" * (2 * 1024 * 1024)})
    _clean_error(await api.post("/v1/messages", content=huge, headers=headers), 400, 413)
    deep = "[" * 100_000 + "]" * 100_000
    _clean_error(await api.post("/v1/messages", content=deep, headers=headers), 400)
    _clean_error(
        await api.post(f"/v1/webchat/{key}/messages", content=b'{"text": "\xff\xfe"}', headers=headers), 400
    )
    _clean_error(await api.post("/v1/auth/login", content=b"\x00\x01\x02", headers=headers), 400)
    _clean_error(await api.post(f"/v1/webchat/{key}/messages", json={"text": ["not", "text"]}), 400)
    assert await stack.store.last_seq() == before


async def test_expired_forged_and_foreign_tokens(api: httpx.AsyncClient, stack: Stack) -> None:
    alice = await _signup(api, "token-alice@example.com")
    claims = jwt.decode(alice["token"], options={"verify_signature": False})
    # The same claims, expired, and signed with a key that is not the gateway's.
    forged = jwt.encode(claims | {"exp": int(time.time()) - 60}, "guessed-secret", algorithm="HS256")
    body = _clean_error(await api.get("/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401)
    assert body["error"] in ("invalid_token", "token_expired")
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # "alg": "none" must never pass
    _clean_error(await api.get("/v1/me", headers={"Authorization": f"Bearer {unsigned}"}), 401)
    tampered = alice["token"][:-4] + ("AAAA" if not alice["token"].endswith("AAAA") else "BBBB")
    _clean_error(await api.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"}), 401)
    _clean_error(await api.get("/v1/me", headers={"Authorization": "Bearer " + "a" * 10_000}), 401)
    _clean_error(await api.get("/v1/me", headers={"Authorization": "Basic YWRhOnB3"}), 401)
