"""The gateway under abuse: rate limits that hold across replicas, caps on open streams,
bounded ?min_seq= waits, tokens kept out of URLs, tampered cursors and oversized frames."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from adapters.embedded.processes import free_port
from adapters.media.store import MediaStore
from domain import events as ev
from domain import ids
from gateway.limits import Limits
from moltbot.roles import run_gateway
from tests.conftest import early_in_a_rate_window
from tests.integration.conftest import Stack

PASSWORD = "correct horse battery"


@pytest.fixture
def limits() -> Limits:
    return Limits(
        webchat_new_visitors_per_ip=3,
        webchat_per_visitor=4,
        api_per_tenant=40,
        streams_per_tenant=2,
        min_seq_waits_per_tenant=2,
    )


async def _signup(api: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body = response.json()
    return {"tenant_id": body["tenant_id"], "token": body["tokens"]["access_token"], "seq": str(body["seq"])}


def _auth(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}"}


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["error"] == "rate_limited"
    assert body["detail"]


async def _widget_key(api: httpx.AsyncClient, account: dict[str, str]) -> str:
    response = await api.get("/v1/webchat", headers=_auth(account))
    assert response.status_code == 200, response.text
    return str(response.json()["widget_key"])


async def test_new_visitors_per_address_are_limited_and_counted(api: httpx.AsyncClient) -> None:
    key = await _widget_key(api, await _signup(api, "limits-visitors@example.com"))
    await early_in_a_rate_window()
    answers = [await api.post(f"/v1/webchat/{key}/messages", json={"text": f"hi {n}"}) for n in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    _refused(answers[3])
    # A returning visitor is held to its own limit, not the new-visitor one.
    token = answers[0].json()["visitor_token"]
    again = [
        await api.post(f"/v1/webchat/{key}/messages", json={"text": f"more {n}", "visitor_token": token})
        for n in range(5)
    ]
    assert [a.status_code for a in again] == [202, 202, 202, 202, 429]
    metrics = (await api.get("/metrics")).text
    assert 'moltbot_rate_limited_total{limit="webchat_new_visitors_per_ip"} 2' in metrics
    assert 'moltbot_rate_limited_total{limit="webchat_per_visitor"} 1' in metrics


async def test_a_malformed_visitor_message_is_a_400_and_costs_nothing(api: httpx.AsyncClient) -> None:
    key = await _widget_key(api, await _signup(api, "limits-malformed@example.com"))
    for _ in range(5):
        assert (await api.post(f"/v1/webchat/{key}/messages", json={"text": " "})).status_code == 400
    assert (await api.post(f"/v1/webchat/{key}/messages", json={"text": "hello"})).status_code == 202


@contextlib.asynccontextmanager
async def _second_gateway(
    stack: Stack, tmp_path: Path, limits: Limits, *, ops_token: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    started = asyncio.Event()
    role = asyncio.create_task(
        run_gateway(
            stack.nats_url,
            stack.database_url,
            key_file=tmp_path / "jwt.pem",  # the same signing key as the first replica
            port=port,
            started=started,
            limits=limits,
            ops_token=ops_token,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        role.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await role


async def test_the_api_limit_holds_across_two_gateway_replicas(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path, limits: Limits
) -> None:
    account = await _signup(api, "limits-replicas@example.com")
    async with _second_gateway(stack, tmp_path, limits) as other:
        await early_in_a_rate_window()
        statuses: list[int] = []
        for n in range(limits.api_per_tenant + 2):
            replica = api if n % 2 else other
            statuses.append((await replica.get("/v1/agents/own-key", headers=_auth(account))).status_code)
    # Each replica saw only half the requests: alone, neither would have refused any.
    assert statuses.count(429) == 2, statuses
    assert statuses[: limits.api_per_tenant].count(429) == 0
    # Another inbox is not held to this one's limit.
    neighbour = await _signup(api, "limits-neighbour@example.com")
    assert (await api.get("/v1/agents/own-key", headers=_auth(neighbour))).status_code in (200, 503)


async def _open_sse(api: httpx.AsyncClient, account: dict[str, str]) -> httpx.Response:
    request = api.build_request("GET", "/v1/events", headers=_auth(account))
    return await api.send(request, stream=True)


async def test_open_streams_per_tenant_are_capped(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "limits-streams@example.com")
    first, second = await _open_sse(api, account), await _open_sse(api, account)
    try:
        assert (first.status_code, second.status_code) == (200, 200)
        _refused(await api.get("/v1/events", headers=_auth(account)))
        url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
        async with ws_connect(url) as socket:
            await socket.send(json.dumps({"op": "subscribe", "token": account["token"]}))
            closing = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert closing["op"] == "error"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4429
    finally:
        await first.aclose()
        await second.aclose()
    # A closed stream frees its slot.
    for _ in range(50):
        reopened = await _open_sse(api, account)
        try:
            if reopened.status_code == 200:
                break
        finally:
            await reopened.aclose()
        await asyncio.sleep(0.1)
    assert reopened.status_code == 200


async def test_min_seq_past_the_log_is_refused_at_once(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "limits-minseq@example.com")
    response = await api.get(
        "/v1/conversations", params={"min_seq": 10**15}, headers=_auth(account), timeout=2
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "min_seq"
    assert "past the end" in response.json()["detail"]


async def test_waiting_reads_hold_no_database_connection(
    stack: Stack, tmp_path: Path, limits: Limits
) -> None:
    """A gateway whose read models never move: every ?min_seq= read waits its full bound.
    A tenant gets only a few waits at a time, and the waits leave the pool to others."""
    async with _second_gateway(stack, tmp_path, limits) as gateway:
        account = await _signup(gateway, "limits-waits@example.com")
        neighbour = await _signup(gateway, "limits-waits-neighbour@example.com")
        seq = int(account["seq"])
        waits = [
            asyncio.create_task(
                gateway.get("/v1/conversations", params={"min_seq": seq}, headers=_auth(account))
            )
            for _ in range(12)
        ]
        await asyncio.sleep(0.5)
        # The neighbour's request is answered while every wait is still pending; the old
        # gateway held a pooled connection per wait and made it queue behind them.
        widget = await gateway.get("/v1/webchat", headers=_auth(neighbour))
        assert widget.status_code == 200, widget.text
        pending = [w for w in waits if not w.done()]
        assert len(pending) == limits.min_seq_waits_per_tenant
        answers = await asyncio.gather(*waits)
    statuses = sorted(a.status_code for a in answers)
    assert (
        statuses == [429] * (12 - limits.min_seq_waits_per_tenant) + [503] * limits.min_seq_waits_per_tenant
    )
    assert all(a.json()["error"] in ("rate_limited", "not_caught_up") for a in answers)


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(["not a time", "c_1"]),
        _cursor([{"a": 1}, "c_1"]),
        _cursor(["2026-01-01T00:00:00+00:00", 5]),
        _cursor([1, 2, 3]),
        "%%%",
    ],
)
async def test_a_tampered_conversation_cursor_is_a_400(api: httpx.AsyncClient, cursor: str) -> None:
    account = await _signup(api, f"limits-cursor-{abs(hash(cursor))}@example.com")
    response = await api.get("/v1/conversations", params={"cursor": cursor}, headers=_auth(account))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_cursor"


@pytest.mark.parametrize("value", ["x", 1.5, True, -1, 2**70, None])
async def test_a_tampered_message_cursor_is_a_400(api: httpx.AsyncClient, value: object) -> None:
    account = await _signup(api, f"limits-mcursor-{abs(hash(repr(value)))}@example.com")
    response = await api.get(
        "/v1/conversations/c_01JDOESNOTEXIST/messages",
        params={"cursor": _cursor([value])},
        headers=_auth(account),
    )
    # The cursor is checked before the conversation is looked up.
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_cursor"


async def test_access_token_in_the_url_only_where_headers_cannot_go(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "limits-urltoken@example.com")
    refused = await api.get("/v1/me", params={"access_token": account["token"]})
    assert refused.status_code == 401
    assert "/v1/events" in refused.json()["detail"]
    assert (await api.get("/v1/conversations", params={"access_token": account["token"]})).status_code == 401
    media = await api.get("/v1/media/m_none", params={"access_token": account["token"]})
    assert media.status_code == 404  # accepted, then not found
    request = api.build_request("GET", "/v1/events", params={"access_token": account["token"]})
    events = await api.send(request, stream=True)
    try:
        assert events.status_code == 200
    finally:
        await events.aclose()


async def test_a_huge_websocket_frame_before_authentication_is_refused(api: httpx.AsyncClient) -> None:
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    async with ws_connect(url, max_size=None) as socket:
        await socket.send(json.dumps({"op": "subscribe", "token": "x" * (200 * 1024)}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big


async def test_operations_endpoints_answer_this_machine_only(api: httpx.AsyncClient) -> None:
    assert (await api.get("/metrics")).status_code == 200
    relayed = await api.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert relayed.status_code == 403
    assert (await api.get("/readyz", headers={"X-Forwarded-For": "203.0.113.7"})).status_code == 403
    assert (await api.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})).status_code == 200


async def test_operations_endpoints_behind_a_token(stack: Stack, tmp_path: Path, limits: Limits) -> None:
    async with _second_gateway(stack, tmp_path, limits, ops_token="ops-secret-token") as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/readyz", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer ops-secret-token"}
        metrics = await client.get("/metrics", headers=right)
        assert metrics.status_code == 200
        assert "moltbot_events_last_seq" in metrics.text


async def test_attachments_are_never_cached(
    api: httpx.AsyncClient, stack: Stack, media_store: MediaStore
) -> None:
    """A served attachment says no-store: no shared cache keeps a private photo."""
    account = await _signup(api, "limits-media@example.com")
    conversation_id = ids.new_id(ids.CONVERSATION)
    content = b"\x89PNG\r\n\x1a\n" + bytes(100)
    await media_store.put("t/photo.png", content)
    await stack.store.append(
        ev.new_event(
            ev.MediaAvailable,
            tenant_id=account["tenant_id"],
            aggregate_id=conversation_id,
            actor="connector:webchat:test",
            data=ev.MediaAvailableData(
                message_id=ids.new_id(ids.MESSAGE),
                media_id="md_photo1",
                sha256=hashlib.sha256(content).hexdigest(),
                mime="image/png",
                size=len(content),
                storage_key="t/photo.png",
            ),
        )
    )
    await stack.wait_caught_up()
    served = await api.get("/v1/media/md_photo1", params={"access_token": account["token"]})
    assert served.status_code == 200, served.text
    assert served.content == content
    assert served.headers["cache-control"] == "no-store"
