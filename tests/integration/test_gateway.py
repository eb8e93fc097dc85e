"""The HTTP API over real servers: accounts, tenant-scoped inbox queries with cursor
pagination and ?min_seq, full-text search, SSE replay by sequence, clear 4xx errors."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import socket as socket_module
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from domain import events as ev
from domain import ids
from gateway.routes import realtime
from tests.integration.conftest import Stack


async def _signup(api: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": "correct horse battery"})
    assert response.status_code == 201, response.text
    body = response.json()
    return {
        "tenant_id": body["tenant_id"],
        "user_id": body["user_id"],
        "token": body["tokens"]["access_token"],
        "seq": str(body["seq"]),
    }


def _auth(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}"}


async def _conversation_with_messages(stack: Stack, tenant_id: str, count: int, words: str = "hello") -> str:
    conversation_id = ids.new_id(ids.CONVERSATION)
    connection_id = ids.new_id(ids.CONNECTION)
    actor = f"connector:webchat:{connection_id}"
    events: list[ev.Event] = [
        ev.new_event(
            ev.ConversationCreated,
            tenant_id=tenant_id,
            aggregate_id=conversation_id,
            actor=actor,
            data=ev.ConversationCreatedData(
                channel="webchat",
                connection_id=connection_id,
                kind="direct",
                title="Visitor",
                external_id="v1",
            ),
        )
    ]
    for n in range(count):
        events.append(
            ev.new_event(
                ev.MessageReceived,
                tenant_id=tenant_id,
                aggregate_id=conversation_id,
                actor=actor,
                data=ev.MessageReceivedData(
                    message_id=ids.stable_id("m", f"webchat:{connection_id}:{n}"),
                    connection_id=connection_id,
                    channel="webchat",
                    provider_message_id=str(n),
                    sender=ev.Sender(id="visitor-1", name="Visitor"),
                    text=f"{words} number {n}",
                    sent_at=datetime.now(UTC),
                ),
            )
        )
    await stack.store.append_many(events)
    return conversation_id


async def test_signup_login_me(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "ada@example.com")
    me = await api.get("/v1/me", params={"min_seq": account["seq"]}, headers=_auth(account))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "ada@example.com"
    assert me.json()["tenant_name"] == "Personal"
    assert me.json()["role"] == "owner"

    login = await api.post(
        "/v1/auth/login", json={"email": "ADA@example.com", "password": "correct horse battery"}
    )
    assert login.status_code == 200
    assert login.json()["tenant_id"] == account["tenant_id"]
    refreshed = await api.post(
        "/v1/auth/refresh", json={"refresh_token": login.json()["tokens"]["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert (
        await api.get("/v1/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    ).is_success

    wrong = await api.post("/v1/auth/login", json={"email": "ada@example.com", "password": "wrong password!"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_credentials"
    taken = await api.post(
        "/v1/auth/signup", json={"email": "ada@example.com", "password": "another password"}
    )
    assert taken.status_code == 409
    assert taken.json()["field"] == "email"


async def test_bad_requests_get_clear_4xx(api: httpx.AsyncClient, stack: Stack) -> None:
    before = await stack.store.last_seq()
    short = await api.post("/v1/auth/signup", json={"email": "bob@example.com", "password": "short"})
    assert short.status_code == 400
    assert short.json()["field"] == "password"
    not_email = await api.post("/v1/auth/signup", json={"email": "bob", "password": "long enough password"})
    assert not_email.json() == {
        "error": "invalid_request",
        "detail": "Give an e-mail address like ada@example.com.",
        "field": "email",
    }
    missing = await api.post("/v1/auth/signup", json={"email": "bob@example.com"})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    garbage = await api.post(
        "/v1/auth/signup", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 400
    assert set(garbage.json()) >= {"error", "detail"}
    assert (await api.get("/v1/conversations")).status_code == 401
    forged = await api.get("/v1/conversations", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    assert forged.json()["error"] == "invalid_token"
    assert await stack.store.last_seq() == before  # nothing was written


async def test_conversations_messages_pagination_and_min_seq(api: httpx.AsyncClient, stack: Stack) -> None:
    account = await _signup(api, "pager@example.com")
    conversation_id = await _conversation_with_messages(stack, account["tenant_id"], 500)
    last = await stack.store.last_seq()

    listing = await api.get("/v1/conversations", params={"min_seq": last}, headers=_auth(account))
    assert listing.status_code == 200, listing.text
    [conversation] = listing.json()["items"]
    assert conversation["conversation_id"] == conversation_id
    assert conversation["unread_count"] == 500
    assert conversation["last_message_preview"] == "hello number 499"

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 37}
        if cursor:
            params["cursor"] = cursor
        page = await api.get(
            f"/v1/conversations/{conversation_id}/messages", params=params, headers=_auth(account)
        )
        assert page.status_code == 200, page.text
        seen += [m["seq"] for m in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 500
    assert len(set(seen)) == 500
    assert seen == sorted(seen, reverse=True)

    marked = await api.patch(
        f"/v1/conversations/{conversation_id}", json={"read": True}, headers=_auth(account)
    )
    assert marked.status_code == 202
    after = await api.get(
        "/v1/conversations", params={"min_seq": marked.json()["seq"]}, headers=_auth(account)
    )
    assert after.json()["items"][0]["unread_count"] == 0
    unread_only = await api.get("/v1/conversations", params={"unread": "true"}, headers=_auth(account))
    assert unread_only.json()["items"] == []

    bad_cursor = await api.get("/v1/conversations", params={"cursor": "nonsense"}, headers=_auth(account))
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["field"] == "cursor"
    # Past the end of the log: it could only time out, so it is refused at once.
    too_far = await api.get("/v1/me", params={"min_seq": last + 1000}, headers=_auth(account))
    assert too_far.status_code == 400
    assert too_far.json()["field"] == "min_seq"


async def test_search_and_tenant_isolation(api: httpx.AsyncClient, stack: Stack) -> None:
    alice = await _signup(api, "alice@example.com")
    bob = await _signup(api, "bob@example.com")
    alice_conversation = await _conversation_with_messages(
        stack, alice["tenant_id"], 5, words="invoice overdue"
    )
    await _conversation_with_messages(stack, bob["tenant_id"], 5, words="birthday cake")
    last = str(await stack.store.last_seq())

    hits = await api.get("/v1/search", params={"q": "invoice", "min_seq": last}, headers=_auth(alice))
    assert hits.status_code == 200
    assert len(hits.json()) == 5
    assert "<mark>invoice</mark>" in hits.json()[0]["highlight"]
    # Message text is untrusted: only our <mark> is markup in a highlight.
    await _conversation_with_messages(
        stack, alice["tenant_id"], 1, words="<img src=x onerror=alert(1)> zebra"
    )
    [hostile] = (
        await api.get(
            "/v1/search", params={"q": "zebra", "min_seq": await stack.store.last_seq()}, headers=_auth(alice)
        )
    ).json()
    assert "<img" not in hostile["highlight"]
    assert "&lt;img" in hostile["highlight"]
    assert "<mark>zebra</mark>" in hostile["highlight"]
    assert (await api.get("/v1/search", params={"q": "invoice"}, headers=_auth(bob))).json() == []
    assert (await api.get("/v1/search", params={"q": "birthday"}, headers=_auth(alice))).json() == []

    # Bob cannot see, read or change Alice's conversation.
    assert (
        await api.get(f"/v1/conversations/{alice_conversation}/messages", headers=_auth(bob))
    ).status_code == 404
    patch = await api.patch(
        f"/v1/conversations/{alice_conversation}", json={"pinned": True}, headers=_auth(bob)
    )
    assert patch.status_code == 404
    bob_list = await api.get("/v1/conversations", headers=_auth(bob))
    assert alice_conversation not in json.dumps(bob_list.json())


async def _read_sse(
    api: httpx.AsyncClient, account: dict[str, str], params: dict[str, str], want: int
) -> list[dict]:
    received: list[dict] = []
    async with api.stream("GET", "/v1/events", params=params, headers=_auth(account)) as response:
        assert response.status_code == 200
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "data" in event:
                    received.append(event)
                    if len(received) >= want:
                        return received
                event = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                event[key] = value.strip()
    return received


async def test_sse_replays_by_sequence_and_resumes_without_gap_or_duplicate(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    alice = await _signup(api, "sse@example.com")
    bob = await _signup(api, "other@example.com")
    await _conversation_with_messages(stack, alice["tenant_id"], 60)
    await _conversation_with_messages(stack, bob["tenant_id"], 10)

    everything = await asyncio.wait_for(_read_sse(api, alice, {"since": "1"}, 64), 20)
    seqs = [int(e["id"]) for e in everything]
    assert seqs == sorted(seqs)
    assert all(json.loads(e["data"])["tenant_id"] == alice["tenant_id"] for e in everything)
    assert everything[0]["event"] == "tenant.created"

    # Resume from random cut points with Last-Event-ID: exactly the rest, in order.
    rng = random.Random(3)
    for cut in rng.sample(range(len(seqs) - 1), 5):
        rest = seqs[cut + 1 :]
        async with api.stream(
            "GET", "/v1/events", headers=_auth(alice) | {"Last-Event-ID": str(seqs[cut])}
        ) as response:
            resumed: list[int] = []
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    resumed.append(int(line[3:]))
                    if len(resumed) == len(rest):
                        break
        assert resumed == rest

    # Live: a new event arrives after the replay, with no duplicate at the seam.
    reader = asyncio.create_task(_read_sse(api, alice, {"since": str(seqs[-1] - 2), "types": "message.*"}, 4))
    await asyncio.sleep(0.5)
    await _conversation_with_messages(stack, alice["tenant_id"], 1)
    live = await asyncio.wait_for(reader, 20)
    live_seqs = [int(e["id"]) for e in live]
    assert live_seqs[:3] == seqs[-3:]
    assert live_seqs[3] > seqs[-1]
    assert all(e["event"].startswith("message.") for e in live)


async def test_sse_refuses_widening_filters(api: httpx.AsyncClient) -> None:
    account = await _signup(api, "filters@example.com")
    response = await api.get("/v1/events", params={"types": "> "}, headers=_auth(account))
    assert response.status_code == 400
    assert response.json()["field"] == "types"


async def test_web_inbox_is_served(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text
    script = await api.get("/static/app.js")
    assert script.status_code == 200
    # The page uses only the public API.
    assert "/v1/conversations" in script.text
    assert "/v1/events" in script.text
    assert (await api.get("/static/style.css")).status_code == 200


async def test_health_ready_metrics_schema(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    for _ in range(200):  # the read models start alongside the gateway
        ready = await api.get("/readyz")
        if ready.status_code == 200:
            break
        assert ready.json()["status"] == "not_ready"
        await asyncio.sleep(0.05)
    assert ready.status_code == 200, ready.text
    metrics = (await api.get("/metrics")).text
    assert "moltbot_events_last_seq" in metrics
    assert 'moltbot_projection_lag{read_model="inbox"}' in metrics
    schema = (await api.get("/schema/openapi.json")).json()
    assert "/v1/conversations" in schema["paths"]
    assert "/v1/auth/signup" in schema["paths"]


async def _ws_collect(
    api: httpx.AsyncClient, account: dict[str, str], subscribe: dict[str, object], want: int
) -> list[dict]:
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    received: list[dict] = []
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "token": account["token"], **subscribe}))
        assert json.loads(await socket.recv())["op"] == "subscribed"
        while len(received) < want:
            message = json.loads(await asyncio.wait_for(socket.recv(), 10))
            if message["op"] == "event":
                received.append(message)
            elif message["op"] == "events":  # "batch": true
                assert subscribe.get("batch") is True and message["events"]
                received.extend({"op": "event", **one} for one in message["events"])
    return received


async def test_ws_replays_resumes_and_stays_in_its_tenant(api: httpx.AsyncClient, stack: Stack) -> None:
    alice = await _signup(api, "ws-alice@example.com")
    bob = await _signup(api, "ws-bob@example.com")
    await _conversation_with_messages(stack, alice["tenant_id"], 40)
    await _conversation_with_messages(stack, bob["tenant_id"], 40)

    everything = await _ws_collect(api, alice, {"since": 1}, 44)
    seqs = [m["seq"] for m in everything]
    assert seqs == sorted(seqs)
    assert {m["event"]["tenant_id"] for m in everything} == {alice["tenant_id"]}

    # A client that drops at random points and resumes from its last seq gets each event once.
    rng = random.Random(11)
    for cut in sorted(rng.sample(range(len(seqs) - 1), 8)):
        resumed = await _ws_collect(api, alice, {"since": seqs[cut] + 1}, len(seqs) - cut - 1)
        assert [m["seq"] for m in resumed] == seqs[cut + 1 :]

    only_messages = await _ws_collect(api, alice, {"since": 1, "topics": ["message.*"]}, 40)
    assert {m["event"]["type"] for m in only_messages} == {"message.received"}

    # Batched frames carry the same events in the same order, and resume alike.
    # (A frame may hold more than was asked for: the comparisons stop where the first one did.)
    batched = await _ws_collect(api, alice, {"since": 1, "batch": True}, 44)
    assert batched[:44] == everything
    resumed = await _ws_collect(api, alice, {"since": seqs[20], "batch": True}, len(seqs) - 20)
    assert [m["seq"] for m in resumed][: len(seqs) - 20] == seqs[20:]


@pytest.mark.parametrize(
    ("subscribe", "code"),
    [
        ({"op": "subscribe", "since": 1, "topics": [">"]}, 4400),
        ({"op": "subscribe", "since": 1, "topics": ["ev.TENANT.>"]}, 4400),
        ({"op": "subscribe", "since": 1, "token": "forged.token.value"}, 4401),
        ({"op": "dance"}, 4400),
    ],
)
async def test_ws_refuses_bad_subscriptions(
    api: httpx.AsyncClient, subscribe: dict[str, object], code: int
) -> None:
    account = await _signup(api, f"ws-{code}-{random.randrange(10**9)}@example.com")
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    message = dict(subscribe)
    if "topics" in message:
        message["topics"] = [str(t).replace("TENANT", account["tenant_id"]) for t in message["topics"]]  # type: ignore[attr-defined]
    message.setdefault("token", account["token"])
    async with ws_connect(url) as socket:
        await socket.send(json.dumps(message))
        error = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert error["op"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


async def test_ws_ping_and_live_events(api: httpx.AsyncClient, stack: Stack) -> None:
    account = await _signup(api, "ws-live@example.com")
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    async with ws_connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "topics": ["message.*"], "token": account["token"]}))
        subscribed = json.loads(await socket.recv())
        assert subscribed["op"] == "subscribed"
        await socket.send(json.dumps({"op": "ping"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10)) == {"op": "pong"}
        await _conversation_with_messages(stack, account["tenant_id"], 2)
        live = [json.loads(await asyncio.wait_for(socket.recv(), 10)) for _ in range(2)]
    assert [m["event"]["data"]["text"] for m in live] == ["hello number 0", "hello number 1"]
    assert live[0]["seq"] >= subscribed["since"]


async def test_row_level_security_confines_a_query_without_tenant_filter(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    alice = await _signup(api, "rls-alice@example.com")
    bob = await _signup(api, "rls-bob@example.com")
    await _conversation_with_messages(stack, alice["tenant_id"], 7)
    await _conversation_with_messages(stack, bob["tenant_id"], 3)
    await stack.wait_caught_up()

    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        await conn.execute("SET ROLE moltbot_gateway")
        async with conn.transaction():
            await conn.execute("SELECT set_config('moltbot.tenant_id', %s, true)", (alice["tenant_id"],))
            # No WHERE tenant_id = … anywhere: the policy applies it.
            messages = await (await conn.execute("SELECT tenant_id FROM rm_inbox.messages")).fetchall()
            tenants = await (await conn.execute("SELECT tenant_id FROM rm_tenants.tenants")).fetchall()
            users = await (await conn.execute("SELECT tenant_id FROM rm_tenants.users")).fetchall()
        assert len(messages) == 7
        assert {r[0] for r in messages + tenants + users} == {alice["tenant_id"]}
        # Without a tenant, nothing at all.
        nothing = await (await conn.execute("SELECT count(*) FROM rm_inbox.conversations")).fetchone()
        assert nothing == (0,)
        # The gateway role cannot write to read models.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("DELETE FROM rm_inbox.messages")


@pytest.mark.slow
async def test_a_ws_client_that_stops_reading_is_dropped_with_a_reason(
    api: httpx.AsyncClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime, "SEND_TIMEOUT", 1.0)
    monkeypatch.setattr(realtime, "FAREWELL_TIMEOUT", 30.0)  # it reads again after 4 s: gets the reason
    account = await _signup(api, "slow-reader@example.com")
    # ~10 MB of replay, far more than the socket buffers hold for a client that stalls (its
    # receive buffer is pinned small: loopback autotuning would otherwise absorb tens of MB).
    # Random text: WebSocket compression would shrink repetitive text to almost nothing.
    conversation = await _conversation_with_messages(stack, account["tenant_id"], 0)
    noisy = [
        ev.new_event(
            ev.MessageReceived,
            tenant_id=account["tenant_id"],
            aggregate_id=conversation,
            actor="test",
            data=ev.MessageReceivedData(
                message_id=ids.new_id(ids.MESSAGE),
                connection_id="cn_noise",
                channel="webchat",
                provider_message_id=str(n),
                sender=ev.Sender(id="v", name="V"),
                text=secrets.token_urlsafe(1200),
                sent_at=datetime.now(UTC),
            ),
        )
        for n in range(6_000)
    ]
    await stack.store.append_many(noisy)
    url = str(api.base_url).replace("http://", "ws://") + "/v1/ws"
    small = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_STREAM)
    small.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 64 * 1024)
    small.connect((api.base_url.host, api.base_url.port or 80))
    small.setblocking(False)
    async with ws_connect(url, sock=small, max_queue=1, max_size=2**20) as socket:
        await socket.send(json.dumps({"op": "subscribe", "since": 1, "token": account["token"]}))
        await asyncio.sleep(4)  # not reading: the gateway's sends block, then it gives up
        frames: list[dict[str, object]] = []
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(socket, frames)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4008
    assert frames[-1] == {"op": "error", "error": "closed", "detail": "client did not read for 1s"}
    delivered = sum(1 for f in frames if f["op"] == "event")
    assert 0 < delivered < 6_000  # dropped part way, not buffered to the end


async def _read_until_closed(socket: ClientConnection, frames: list[dict[str, object]]) -> None:
    while True:
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
