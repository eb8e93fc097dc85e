"""Microsoft Teams over the whole product: the gateway, outbox, connectors and projections
on a real nats-server and PostgreSQL, and the real httpx / PyJWT code against a fake of
Azure AD, the Bot Framework's signing keys and the Bot Connector on 127.0.0.1
(tests/fakes/teams_api.py).

Connect (the credentials checked by getting a token; each wrong field named); Activities
stored only with a valid Bot Connector token (each kind of bad token: 401, nothing stored);
a redelivered Activity stored once; a person's message in the inbox, then their edit and
reaction; replies through POST /v1/messages reaching the Bot Connector with one app token for
two sends; a channel thread's @mention answered in the thread; revoked credentials turning
the connection to ``action_required`` and failing a send with a reason a person understands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.teams.normalize import conversation_id, message_id
from domain import events as ev
from domain import ids
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.fakes.teams_api import App, FakeTeams, fake_teams, headers
from tests.integration.conftest import Stack
from tests.integration.connector_log import of, tenant_events, until, wait_for_events
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup

PUBLIC_URL = "https://moltbot.example"
PERSONAL = "a:1personal-chat-with-ada"


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeams]:
    async with fake_teams() as server:
        yield server


@pytest.fixture
def endpoints(teams: FakeTeams) -> ProviderEndpoints:
    return ProviderEndpoints(teams_login_base=teams.login_base, teams_openid_url=teams.openid_url)


@pytest.fixture
def public_url() -> str:
    return PUBLIC_URL


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about Teams; the limits: test_plan_limits.py


async def _connect(api: httpx.AsyncClient, owner: dict[str, str], app: App) -> dict[str, Any]:
    body = {"app_id": app.app_id, "client_secret": app.client_secret}
    if app.tenant_id is not None:
        body["tenant_id"] = app.tenant_id
    connected = await api.post("/v1/channels/teams/connect", json=body, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    answer: dict[str, Any] = connected.json()
    return answer


async def _channel(api: httpx.AsyncClient, owner: dict[str, str], connection_id: str) -> dict[str, Any]:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    found: dict[str, Any] = next(c for c in channels if c["connection_id"] == connection_id)
    return found


async def _connected(api: httpx.AsyncClient, owner: dict[str, str], connection_id: str) -> dict[str, Any]:
    async def connected() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel["state"] == "connected" else None

    found: dict[str, Any] = await _until(connected, "the Teams bot to be connected")
    return found


async def _post(
    api: httpx.AsyncClient, connection_id: str, activity: dict[str, Any], token: str
) -> httpx.Response:
    body = json.dumps(activity).encode()
    return await api.post(f"/v1/webhooks/teams/{connection_id}", content=body, headers=headers(token))


async def _messages(api: httpx.AsyncClient, owner: dict[str, str], conversation: str) -> list[dict[str, Any]]:
    page = await api.get(f"/v1/conversations/{conversation}/messages", headers=_auth(owner))
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return sorted(items, key=lambda item: item["seq"])  # the page is newest first


async def _send(api: httpx.AsyncClient, owner: dict[str, str], conversation: str, text: str) -> str:
    accepted = await api.post(
        "/v1/messages", json={"conversation_id": conversation, "text": text}, headers=_auth(owner)
    )
    assert accepted.status_code == 202, accepted.text
    sent_id: str = accepted.json()["message_id"]
    return sent_id


# --- connect --------------------------------------------------------------------------------------


async def test_connect_checks_the_credentials_with_azure_ad_and_answers_the_messaging_endpoint(
    api: httpx.AsyncClient, teams: FakeTeams
) -> None:
    owner = await _signup(api, "teams-connect@example.com")
    app = teams.add_app()
    path = "/v1/channels/teams/connect"
    good = {"app_id": app.app_id, "client_secret": app.client_secret}

    async def refused(body: dict[str, Any]) -> tuple[int, str, str, str]:
        answer = await api.post(path, json=body, headers=_auth(owner))
        return (
            answer.status_code,
            answer.json()["error"],
            answer.json().get("field", ""),
            answer.json()["detail"],
        )

    status, error, field, detail = await refused(good | {"client_secret": "not-the-secret"})
    assert (status, error, field) == (400, "token_rejected", "client_secret")
    assert "AADSTS7000215" in detail and "Manage Password" in detail
    status, error, field, detail = await refused(good | {"app_id": "0c7f6f2a-0000-4000-8000-0000000000aa"})
    assert (status, error, field) == (400, "token_rejected", "app_id")
    assert "Single Tenant" in detail  # it may be a single-tenant bot: say what else to give
    status, error, field, detail = await refused(good | {"tenant_id": "contoso.onmicrosoft.com"})
    assert (status, error, field) == (400, "token_rejected", "tenant_id")
    status, error, field, detail = await refused(good | {"app_id": "Moltbot"})
    assert (status, error, field) == (400, "invalid_request", "app_id")
    assert "Configuration" in detail
    assert (await refused(good | {"client_secret": "  "}))[:3] == (400, "invalid_request", "client_secret")
    assert (await refused(good | {"app_password": "x"}))[:3] == (400, "invalid_request", "app_password")
    assert (await refused({"app_id": app.app_id}))[:3] == (400, "invalid_request", "client_secret")
    assert teams.token_requests == []  # none of these got a token

    answer = await _connect(api, owner, app)
    connection_id = answer["connection_id"]
    assert answer["webhook_url"] == f"{PUBLIC_URL}/v1/webhooks/teams/{connection_id}"
    assert "verify_token" not in answer
    assert app.client_secret not in json.dumps(answer)
    channel = await _connected(api, owner, connection_id)
    assert (channel["channel"], channel["display_name"]) == ("teams", f"Teams bot {app.app_id}")
    assert channel["state_message"] == f"Connected to Microsoft Teams as the bot {app.app_id}"
    assert ("POST", "/botframework.com/oauth2/v2.0/token") in teams.requests

    # A single-tenant bot gets its tokens from its own tenant.
    single = teams.add_app(tenant_id="0d3f6a1c-0000-4000-8000-00000000c0de")
    await _connected(api, owner, (await _connect(api, owner, single))["connection_id"])
    assert ("POST", f"/{single.tenant_id}/oauth2/v2.0/token") in teams.requests


# --- inbound --------------------------------------------------------------------------------------


async def test_only_activities_with_a_valid_bot_connector_token_are_stored_and_each_once(
    api: httpx.AsyncClient, stack: Stack, teams: FakeTeams
) -> None:
    owner = await _signup(api, "teams-tokens@example.com")
    app = teams.add_app()
    connection_id = (await _connect(api, owner, app))["connection_id"]
    activity = teams.message(app, "Is my order on its way?")

    bad_tokens = {
        "wrong audience (another bot)": teams.mint(teams.add_app()),
        "wrong serviceUrl": teams.mint(app, service_url="https://smba.attacker.example/amer/"),
        "key not endorsed for msteams": teams.mint(app, key="webchat"),
        "expired": teams.mint(app, expires_in=-600),
        "not valid yet": teams.mint(app, valid_in=900),
        "unknown kid": teams.mint(app, key="unpublished"),
        "not a JWT": "not.a.jwt",
    }
    for what, token in bad_tokens.items():
        answer = await _post(api, connection_id, activity, token)
        assert (answer.status_code, answer.json()["error"]) == (401, "bad_signature"), what
    unsigned = await api.post(f"/v1/webhooks/teams/{connection_id}", json=activity)
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "bad_signature")
    assert "Bearer" in unsigned.json()["detail"]
    # The keys were fetched once: tokens naming unknown keys do not make us ask Microsoft again.
    assert teams.key_fetches == 1
    elsewhere = await _post(api, ids.new_id("cn"), activity, teams.mint(app))
    assert elsewhere.status_code == 404
    events = await tenant_events(stack.store, owner["tenant_id"])
    assert of(events, ev.MessageReceived) == [] and of(events, ev.ConversationCreated) == []

    for _ in range(3):  # the Bot Connector retries what it did not see answered: stored once
        assert (await _post(api, connection_id, activity, teams.mint(app))).status_code == 200
    not_an_activity = await _post(api, connection_id, {"type": "message"}, teams.mint(app))
    assert (not_an_activity.status_code, not_an_activity.json()["error"]) == (400, "invalid_request")
    events = await tenant_events(stack.store, owner["tenant_id"])
    [received] = of(events, ev.MessageReceived)
    assert received.data.text == "Is my order on its way?"
    assert received.data.message_id == message_id(connection_id, PERSONAL, activity["id"])
    [created] = of(events, ev.ConversationCreated)
    assert created.aggregate_id == conversation_id(connection_id, PERSONAL)
    assert created.data.external_id == f"{PERSONAL}|{teams.service_url}|{app.bot_id}"


async def test_a_persons_message_edit_and_reaction_reach_the_inbox(
    api: httpx.AsyncClient, stack: Stack, teams: FakeTeams
) -> None:
    owner = await _signup(api, "teams-inbox@example.com")
    app = teams.add_app()
    connection_id = (await _connect(api, owner, app))["connection_id"]
    original = teams.message(app, "Can you send the invoice?")
    for activity in (
        original,
        teams.edit(app, original, "Can you send the invoice for May?"),
        teams.reaction(app, original, "heart"),
    ):
        assert (await _post(api, connection_id, activity, teams.mint(app))).status_code == 200
    chat = conversation_id(connection_id, PERSONAL)

    async def shown() -> dict[str, Any] | None:
        items = await _messages(api, owner, chat)
        return items[0] if items and items[0]["edited_at"] and items[0]["reactions"] else None

    message = await _until(shown, "the message, edited and reacted to, in the inbox")
    assert (message["direction"], message["text"], message["sender_name"], message["channel"]) == (
        "in", "Can you send the invoice for May?", "Ada Lovelace", "teams",
    )  # fmt: skip
    assert [reaction["emoji"] for reaction in message["reactions"]] == ["❤️"]
    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    assert [(c["title"], c["channel"]) for c in conversations if c["conversation_id"] == chat] == [
        ("Ada Lovelace", "teams")
    ]
    assert (await _post(api, connection_id, teams.delete(app, original), teams.mint(app))).status_code == 200
    events = await wait_for_events(
        stack.store, owner["tenant_id"], lambda log: bool(of(log, ev.MessageDeleted)), timeout=10
    )
    [deleted] = of(events, ev.MessageDeleted)
    assert deleted.data.message_id == message_id(connection_id, PERSONAL, original["id"])


async def test_a_senders_e_mail_address_comes_from_the_bot_connector_once_per_person(
    api: httpx.AsyncClient, stack: Stack, teams: FakeTeams
) -> None:
    owner = await _signup(api, "teams-people@example.com")
    app = teams.add_app()
    connection_id = (await _connect(api, owner, app))["connection_id"]
    teams.emails["29:1ada-lovelace"] = "Ada@Example.com"
    for text in ("Hi!", "Are you there?"):
        assert (await _post(api, connection_id, teams.message(app, text), teams.mint(app))).status_code == 200
    events = await wait_for_events(
        stack.store, owner["tenant_id"], lambda log: len(of(log, ev.MessageReceived)) == 2, timeout=10
    )
    assert [e.data.sender.email for e in of(events, ev.MessageReceived)] == ["ada@example.com"] * 2
    lookups = [path for method, path in teams.requests if method == "GET" and "/members/" in path]
    assert lookups == [f"/amer/v3/conversations/{PERSONAL}/members/29:1ada-lovelace"]  # kept after one

    # Someone whose account has no address: their message is stored without one.
    stranger = {"id": "29:1someone-else", "name": "Someone"}
    assert (
        await _post(api, connection_id, teams.message(app, "Hello", sender=stranger), teams.mint(app))
    ).status_code == 200
    events = await wait_for_events(
        stack.store, owner["tenant_id"], lambda log: len(of(log, ev.MessageReceived)) == 3, timeout=10
    )
    assert of(events, ev.MessageReceived)[-1].data.sender.email is None


# --- outbound -------------------------------------------------------------------------------------


async def test_replies_reach_the_bot_connector_with_one_app_token_for_two_sends(
    api: httpx.AsyncClient, stack: Stack, teams: FakeTeams
) -> None:
    owner = await _signup(api, "teams-reply@example.com")
    app = teams.add_app()
    connection_id = (await _connect(api, owner, app))["connection_id"]
    await _connected(api, owner, connection_id)  # the session has checked the credentials
    assert (await _post(api, connection_id, teams.message(app, "Hi!"), teams.mint(app))).status_code == 200
    chat = conversation_id(connection_id, PERSONAL)
    await _until(lambda: _messages(api, owner, chat), "the chat in the inbox")
    tokens_before = len(teams.token_requests)  # the gateway's, for the sender's e-mail, came before

    first = await _send(api, owner, chat, "Hello Ada, how can I help?")
    second = await _send(api, owner, chat, "Your invoice is on its way.")
    await until(lambda: len(teams.sent) == 2, timeout=20)
    assert [(s["conversation_id"], s["type"], s["text"]) for s in teams.sent] == [
        (PERSONAL, "message", "Hello Ada, how can I help?"),
        (PERSONAL, "message", "Your invoice is on its way."),
    ]
    assert all(s["from"] == {"id": app.bot_id} for s in teams.sent)
    # One token from the client-credentials flow, kept for the second send.
    assert len(teams.token_requests) == tokens_before + 1
    [authorization] = {s["authorization"] for s in teams.sent}
    assert authorization.startswith("Bearer ") and authorization.removeprefix("Bearer ") in teams.issued

    def confirmed(log: list[ev.Event]) -> bool:
        return {e.data.message_id for e in of(log, ev.MessageSent)} == {first, second}

    events = await wait_for_events(stack.store, owner["tenant_id"], confirmed, timeout=20)
    providers = {e.data.message_id: e.data.provider_message_id for e in of(events, ev.MessageSent)}
    assert providers == {
        first: f"{PERSONAL}/{teams.sent[0]['id']}",
        second: f"{PERSONAL}/{teams.sent[1]['id']}",
    }

    # A mention in a channel thread: the reply goes into that thread.
    thread = teams.channel_thread()
    mention = teams.message(app, "what is the status of order 7?", conversation=thread, mention=True)
    assert (await _post(api, connection_id, mention, teams.mint(app))).status_code == 200
    in_thread = conversation_id(connection_id, thread["id"])
    [received] = await _until(lambda: _messages(api, owner, in_thread), "the thread in the inbox")
    assert received["text"] == "what is the status of order 7?"
    await _send(api, owner, in_thread, "Order 7 ships tomorrow.")
    await until(lambda: len(teams.sent) == 3, timeout=20)
    assert (teams.sent[2]["conversation_id"], teams.sent[2]["text"]) == (
        thread["id"],
        "Order 7 ships tomorrow.",
    )
    assert len(teams.token_requests) == tokens_before + 1


async def test_a_send_teams_refuses_for_good_is_failed_with_its_reason(
    api: httpx.AsyncClient, stack: Stack, teams: FakeTeams
) -> None:
    owner = await _signup(api, "teams-refused@example.com")
    app = teams.add_app()
    connection_id = (await _connect(api, owner, app))["connection_id"]
    assert (await _post(api, connection_id, teams.message(app, "Hi"), teams.mint(app))).status_code == 200
    chat = conversation_id(connection_id, PERSONAL)
    await _until(lambda: _messages(api, owner, chat), "the chat in the inbox")
    teams.fail_next_send(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
    refused = await _send(api, owner, chat, "Still there?")

    def failed(log: list[ev.Event]) -> bool:
        return any(e.data.message_id == refused for e in of(log, ev.MessageSendFailed))

    events = await wait_for_events(stack.store, owner["tenant_id"], failed, timeout=20)
    [failure] = of(events, ev.MessageSendFailed)
    assert failure.data.code == "not_in_conversation"
    assert "removed from the chat" in failure.data.reason
    assert teams.sent == []


# --- health ---------------------------------------------------------------------------------------


async def test_revoked_credentials_make_the_connection_ask_for_action_and_fail_sends(
    api: httpx.AsyncClient, stack: Stack, teams: FakeTeams, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adapters.channels.teams.session.RECHECK_EVERY", 0.2)
    owner = await _signup(api, "teams-revoked@example.com")
    app = teams.add_app()
    connection_id = (await _connect(api, owner, app))["connection_id"]
    await _connected(api, owner, connection_id)
    assert (await _post(api, connection_id, teams.message(app, "Hi"), teams.mint(app))).status_code == 200
    chat = conversation_id(connection_id, PERSONAL)
    await _until(lambda: _messages(api, owner, chat), "the chat in the inbox")

    teams.revoke(app)  # the client secret expired, or someone deleted it in the Azure portal

    async def needs_action() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel["state"] == "action_required" else None

    channel = await _until(needs_action, "the connection to ask for action")
    assert (channel["state_code"], channel["suggested_action"]) == ("credentials_revoked", "reconnect")
    assert "client secret" in channel["state_message"] and "connect Teams again" in channel["state_message"]

    refused = await _send(api, owner, chat, "Are you still there?")

    def failed(log: list[ev.Event]) -> bool:
        return any(e.data.message_id == refused for e in of(log, ev.MessageSendFailed))

    events = await wait_for_events(stack.store, owner["tenant_id"], failed, timeout=20)
    [failure] = of(events, ev.MessageSendFailed)
    assert failure.data.code == "credentials_revoked"
    assert "connect Teams again" in failure.data.reason
    assert teams.sent == []
