"""WhatsApp Business (Meta's Cloud API) over the whole product: the gateway, outbox,
connectors and projections on a real nats-server and PostgreSQL, and the real httpx client
against a fake Graph API on 127.0.0.1 (tests/fakes/whatsapp_business_api.py).

Connect (the token checked on Meta's side, the webhook URL and verify token answered);
Meta's subscription check; deliveries stored only when signed with the app secret; a
customer's text and image reach the inbox; a reply goes out through the connector; the
24-hour window closed, answered at once (400, 131047) or later (a failed status), ends as
``message.send_failed`` with a reason a person understands. Also the connector's and the
session's answers to Meta's refusals, without the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapters.channels import registry
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.errors import BadRequest
from adapters.channels.registry import ConnectEnv, SessionEnv, WhatsAppBusinessConnect
from adapters.channels.whatsapp_business import OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON
from adapters.channels.whatsapp_business.connector import WhatsAppBusinessConnector
from adapters.channels.whatsapp_business.normalize import conversation_id
from adapters.channels.whatsapp_business.session import WhatsAppBusinessSession
from adapters.nats.event_store import EventStore
from domain import events as ev
from domain import ids
from domain.commands import SendMessage
from domain.connectors import SendDeferred, SendRejected
from tests.fakes.whatsapp_business_api import FakeWhatsAppBusiness, Number, fake_whatsapp_business, signed
from tests.integration.conftest import Stack
from tests.integration.connector_log import of, running, states, tenant_events, until, wait_for_events
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup

PUBLIC_URL = "https://moltbot.example"
ADA_WA_ID = "16505551234"
BSUID = "US.13491208655302741918"


@pytest.fixture
async def wab() -> AsyncIterator[FakeWhatsAppBusiness]:
    async with fake_whatsapp_business() as server:
        yield server


@pytest.fixture
def endpoints(wab: FakeWhatsAppBusiness) -> ProviderEndpoints:
    return ProviderEndpoints(whatsapp_business_api_base=wab.api_base)


@pytest.fixture
def public_url() -> str:
    return PUBLIC_URL


async def _connect(
    api: httpx.AsyncClient, owner: dict[str, str], number: Number, **extra: str
) -> dict[str, Any]:
    body = {
        "access_token": number.token,
        "phone_number_id": number.phone_number_id,
        "app_secret": number.app_secret,
        **extra,
    }
    connected = await api.post("/v1/channels/whatsapp_business/connect", json=body, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    answer: dict[str, Any] = connected.json()
    return answer


async def _channel(
    api: httpx.AsyncClient, owner: dict[str, str], connection_id: str
) -> dict[str, Any] | None:
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    return next((c for c in channels if c["connection_id"] == connection_id), None)


async def _post(api: httpx.AsyncClient, connection_id: str, payload: dict[str, Any], app_secret: str) -> int:
    body, headers = signed(payload, app_secret)
    answer = await api.post(f"/v1/webhooks/whatsapp_business/{connection_id}", content=body, headers=headers)
    return answer.status_code


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
    message_id: str = accepted.json()["message_id"]
    return message_id


# --- connect --------------------------------------------------------------------------------------


async def test_connect_checks_the_token_with_meta_and_answers_the_webhook_setup(
    api: httpx.AsyncClient, wab: FakeWhatsAppBusiness
) -> None:
    owner = await _signup(api, "wab-connect@example.com")
    number = wab.add_number("+1 555-0100", "Ada's Shop")
    path = "/v1/channels/whatsapp_business/connect"
    good = {
        "access_token": number.token,
        "phone_number_id": number.phone_number_id,
        "app_secret": number.app_secret,
    }

    refused = await api.post(path, json=good | {"access_token": "EAAGnot-a-token"}, headers=_auth(owner))
    assert (refused.status_code, refused.json()["error"], refused.json()["field"]) == (
        400,
        "token_rejected",
        "access_token",
    )
    assert "Meta does not accept this access token" in refused.json()["detail"]
    assert "API Setup" in refused.json()["detail"]
    other = wab.add_number("+1 555-0199", "Someone Else")
    foreign = await api.post(
        path, json=good | {"phone_number_id": other.phone_number_id}, headers=_auth(owner)
    )
    assert (foreign.status_code, foreign.json()["field"]) == (400, "phone_number_id")
    assert other.phone_number_id in foreign.json()["detail"]
    not_an_id = await api.post(path, json=good | {"phone_number_id": "+1 555-0100"}, headers=_auth(owner))
    assert (not_an_id.status_code, not_an_id.json()["field"]) == (400, "phone_number_id")
    assert "digits only" in not_an_id.json()["detail"]
    extra = await api.post(path, json=good | {"waba_id": "1"}, headers=_auth(owner))
    assert (extra.status_code, extra.json()["field"]) == (400, "waba_id")
    missing = await api.post(path, json={"access_token": number.token}, headers=_auth(owner))
    assert (missing.status_code, missing.json()["field"]) == (400, "phone_number_id")

    answer = await _connect(api, owner, number)
    connection_id = answer["connection_id"]
    assert answer["display_name"] == "Ada's Shop (+1 555-0100)"
    assert answer["webhook_url"] == f"{PUBLIC_URL}/v1/webhooks/whatsapp_business/{connection_id}"
    assert len(answer["verify_token"]) >= 24
    assert number.token not in str(answer) and number.app_secret not in str(answer)
    chosen = await _connect(api, owner, number, verify_token="meatyhamhock")
    assert chosen["verify_token"] == "meatyhamhock"

    async def connected() -> dict[str, Any] | None:
        channel = await _channel(api, owner, connection_id)
        return channel if channel and channel["state"] == "connected" else None

    channel = await _until(connected, "the number to be connected")
    assert channel["state_message"] == "Connected to WhatsApp Business as Ada's Shop (+1 555-0100)"
    assert ("GET", f"/v21.0/{number.phone_number_id}") in wab.requests
    # Other answers of the channel routes are as before: no webhook fields.
    removed = await api.delete(f"/v1/channels/{chosen['connection_id']}", headers=_auth(owner))
    assert removed.status_code == 202
    assert set(removed.json()) == {"connection_id", "display_name", "event_id", "seq"}


async def test_connect_needs_a_public_address_for_meta_to_post_to(wab: FakeWhatsAppBusiness) -> None:
    number = wab.add_number()
    entry = registry.entry("whatsapp_business")
    assert entry.connect is not None
    body = WhatsAppBusinessConnect(number.token, number.phone_number_id, number.app_secret)
    env = ConnectEnv(endpoints=ProviderEndpoints(whatsapp_business_api_base=wab.api_base), public_url=None)
    with pytest.raises(BadRequest, match="MOLTBOT_PUBLIC_URL"):
        await entry.connect(body, env)
    assert wab.requests == []  # refused before asking Meta


# --- the webhook ---------------------------------------------------------------------------------


async def test_metas_subscription_check_gets_the_challenge_for_the_verify_token_only(
    api: httpx.AsyncClient, wab: FakeWhatsAppBusiness
) -> None:
    owner = await _signup(api, "wab-verify@example.com")
    answer = await _connect(api, owner, wab.add_number(), verify_token="meatyhamhock")
    url = f"/v1/webhooks/whatsapp_business/{answer['connection_id']}"
    query = {"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1158201444"}

    confirmed = await api.get(url, params=query)
    assert confirmed.status_code == 200
    assert confirmed.text == "1158201444"
    assert confirmed.headers["content-type"].startswith("text/plain")
    for wrong in ({"hub.verify_token": "guess"}, {"hub.mode": "unsubscribe"}, {"hub.verify_token": ""}):
        refused = await api.get(url, params=query | wrong)
        assert (refused.status_code, refused.json()["error"]) == (403, "verify_token_mismatch"), wrong
        assert "verify token" in refused.json()["detail"]
    unknown = await api.get(f"/v1/webhooks/whatsapp_business/{ids.new_id('cn')}", params=query)
    assert unknown.status_code == 404
    for kind in ("telegram", "discord", "fax"):  # kinds whose webhook makes no such check, or none
        other = await api.get(f"/v1/webhooks/{kind}/{answer['connection_id']}", params=query)
        assert (other.status_code, other.json()["error"]) == (404, "not_found"), kind


async def test_only_deliveries_signed_with_the_app_secret_are_stored(
    api: httpx.AsyncClient, stack: Stack, wab: FakeWhatsAppBusiness
) -> None:
    owner = await _signup(api, "wab-signed@example.com")
    number = wab.add_number()
    connection_id = (await _connect(api, owner, number))["connection_id"]
    url = f"/v1/webhooks/whatsapp_business/{connection_id}"
    payload = wab.text_message(number, ADA_WA_ID, "Do you deliver on Sundays?")
    body, headers = signed(payload, number.app_secret)

    unsigned = await api.post(url, content=body, headers={"Content-Type": "application/json"})
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "bad_signature")
    assert "X-Hub-Signature-256" in unsigned.json()["detail"]
    forged_body, forged_headers = signed(payload, "not-the-app-secret")
    forged = await api.post(url, content=forged_body, headers=forged_headers)
    assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")
    assert "does not match" in forged.json()["detail"]
    tampered = await api.post(url, content=body.replace(b"Sundays", b"Mondays"), headers=headers)
    assert tampered.status_code == 401
    other_connection = await api.post(
        f"/v1/webhooks/whatsapp_business/{ids.new_id('cn')}", content=body, headers=headers
    )
    assert other_connection.status_code == 404
    assert of(await tenant_events(stack.store, owner["tenant_id"]), ev.MessageReceived) == []

    for _ in range(2):  # Meta retries a delivery it did not see answered: stored once
        assert (await api.post(url, content=body, headers=headers)).status_code == 200
    not_json_body, not_json_headers = signed(b"{not json", number.app_secret)
    assert (await api.post(url, content=not_json_body, headers=not_json_headers)).status_code == 400
    events = await tenant_events(stack.store, owner["tenant_id"])
    [received] = of(events, ev.MessageReceived)
    assert received.data.text == "Do you deliver on Sundays?"
    assert len(of(events, ev.ConversationCreated)) == 1


async def test_a_customers_text_and_image_reach_the_inbox(
    api: httpx.AsyncClient, stack: Stack, wab: FakeWhatsAppBusiness
) -> None:
    owner = await _signup(api, "wab-inbox@example.com")
    number = wab.add_number()
    connection_id = (await _connect(api, owner, number))["connection_id"]
    text = wab.text_message(number, ADA_WA_ID, "Is the blue one in stock?", name="Ada Lovelace")
    assert await _post(api, connection_id, text, number.app_secret) == 200
    png = b"\x89PNG\r\n\x1a\n" + bytes(300)
    photo = wab.media_message(number, ADA_WA_ID, "image", png, "image/png", caption="this one")
    assert await _post(api, connection_id, photo, number.app_secret) == 200
    # A user with a username (2026): no phone number, only the business-scoped user id.
    username = wab.text_message(number, None, "hello from a username", name="Grace", user_id=BSUID)
    assert await _post(api, connection_id, username, number.app_secret) == 200
    # A change for another number of the same app is not this connection's.
    elsewhere = wab.text_message(wab.add_number("+1 555-0142"), "4915112345678", "wrong inbox")
    assert await _post(api, connection_id, elsewhere, number.app_secret) == 200

    ada = conversation_id(connection_id, ADA_WA_ID)

    async def both_in_the_inbox() -> list[dict[str, Any]] | None:
        items = await _messages(api, owner, ada)
        return items if len(items) == 2 and items[1]["media"] else None

    first, second = await _until(both_in_the_inbox, "the text and the stored image in the inbox")
    assert (first["direction"], first["status"], first["text"]) == (
        "in",
        "received",
        "Is the blue one in stock?",
    )
    assert (first["sender_name"], first["channel"]) == ("Ada Lovelace", "whatsapp_business")
    assert second["text"] == "this one"
    [media] = second["media"]
    assert (media["mime"], media["size"]) == ("image/png", len(png))
    served = await api.get(media["url"], headers=_auth(owner))
    assert served.content == png
    media_id = photo["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["id"]
    assert ("GET", f"/v21.0/{media_id}") in wab.requests
    assert ("GET", f"/media-download/{media_id}") in wab.requests

    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    titles = {c["title"]: c["conversation_id"] for c in conversations if c["channel"] == "whatsapp_business"}
    assert titles == {"Ada Lovelace": ada, "Grace": conversation_id(connection_id, BSUID)}
    events = await tenant_events(stack.store, owner["tenant_id"])
    assert "wrong inbox" not in [e.data.text for e in of(events, ev.MessageReceived)]


async def test_a_reply_goes_out_and_the_24_hour_window_is_respected_both_ways(
    api: httpx.AsyncClient, stack: Stack, wab: FakeWhatsAppBusiness
) -> None:
    owner = await _signup(api, "wab-reply@example.com")
    number = wab.add_number()
    connection_id = (await _connect(api, owner, number))["connection_id"]
    tenant = owner["tenant_id"]
    payload = wab.text_message(number, ADA_WA_ID, "Can I change my order?")
    assert await _post(api, connection_id, payload, number.app_secret) == 200
    ada = conversation_id(connection_id, ADA_WA_ID)
    await _until(lambda: _messages(api, owner, ada), "the conversation in the inbox")

    # Within the window: the reply goes out through the connector, confirmed with Meta's id.
    reply_id = await _send(api, owner, ada, "Yes: which item?")
    await until(lambda: len(wab.sent) == 1, timeout=20)
    [sent] = wab.sent
    assert {k: sent[k] for k in ("messaging_product", "recipient_type", "to", "type", "text")} == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": ADA_WA_ID,
        "type": "text",
        "text": {"preview_url": False, "body": "Yes: which item?"},
    }
    assert sent["phone_number_id"] == number.phone_number_id
    events = await wait_for_events(stack.store, tenant, lambda log: bool(of(log, ev.MessageSent)), timeout=20)
    [confirmed] = of(events, ev.MessageSent)
    assert (confirmed.data.message_id, confirmed.data.provider_message_id) == (reply_id, sent["wamid"])
    # Meta's sent / delivered / read statuses carry no canonical event.
    before = len(events)
    for status in ("sent", "delivered", "read"):
        assert await _post(api, connection_id, wab.status(number, sent, status), number.app_secret) == 200
    assert len(await tenant_events(stack.store, tenant)) == before

    # Later, Meta reports it failed: the window had closed (131047, asynchronously).
    failed_status = wab.status(number, sent, "failed", error_code=131047)
    for _ in range(2):  # a redelivered status is recorded once
        assert await _post(api, connection_id, failed_status, number.app_secret) == 200
    events = await tenant_events(stack.store, tenant)
    [late] = of(events, ev.MessageSendFailed)
    assert late.aggregate_id == ada
    assert late.data == ev.MessageSendFailedData(
        message_id=reply_id, connection_id=connection_id, code=OUTSIDE_WINDOW, reason=OUTSIDE_WINDOW_REASON
    )
    assert "template messages" in late.data.reason and "24 hours" in late.data.reason

    # Outside the window, Meta refuses at once (400, 131047): not sent, failed with the reason.
    wab.close_window(ADA_WA_ID)
    refused_id = await _send(api, owner, ada, "Are you still there?")

    def refused(log: list[ev.Event]) -> bool:
        return any(e.data.message_id == refused_id for e in of(log, ev.MessageSendFailed))

    events = await wait_for_events(stack.store, tenant, refused, timeout=20)
    [failed] = [e for e in of(events, ev.MessageSendFailed) if e.data.message_id == refused_id]
    assert (failed.data.code, failed.data.reason) == (OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON)
    assert failed.aggregate_id == ada
    assert len(wab.sent) == 1  # nothing more went out

    async def shown_failed() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in await _messages(api, owner, ada)
                if m["message_id"] == refused_id and m["status"] == "failed"
            ),
            None,
        )

    await _until(shown_failed, "the refused message shown as failed")


# --- the connector and the session, without the gateway ---------------------------------------------

TENANT = "t_01JWABTEST0000000000000000"
CONNECTION = "cn_01JWABTEST0000000000000000"


def _command(text: str, to: str = ADA_WA_ID) -> SendMessage:
    message = ids.new_id(ids.MESSAGE)
    return SendMessage(
        command_id=f"send:{TENANT}:{message}",
        tenant_id=TENANT,
        conversation_id=conversation_id(CONNECTION, to),
        connection_id=CONNECTION,
        channel="whatsapp_business",
        message_id=message,
        to=to,
        text=text,
        sender=ev.Sender(id="user:u_1", name="Ada"),
        requested_at=datetime.now(UTC),
        causation_id=ids.ulid(),
    )


async def test_the_connector_maps_metas_refusals(wab: FakeWhatsAppBusiness) -> None:
    number = wab.add_number()

    async def credentials(connection_id: str) -> Mapping[str, Any]:
        assert connection_id == CONNECTION
        return {"token": number.token, "phone_number_id": number.phone_number_id}

    connector = WhatsAppBusinessConnector(credentials, api_base=wab.api_base)
    try:
        delivered = await connector.send(_command("to a username", to=BSUID))
        assert wab.sent[-1]["recipient"] == BSUID and "to" not in wab.sent[-1]
        assert delivered.provider_message_id == wab.sent[-1]["wamid"]
        wab.fail_next_send(429, 130429, "(#130429) Rate limit hit", retry_after=7)
        with pytest.raises(SendDeferred) as limited:
            await connector.send(_command("too fast"))
        assert limited.value.retry_after == 7.0
        wab.fail_next_send(503, 131016, "Service unavailable")
        with pytest.raises(SendDeferred):
            await connector.send(_command("meta down"))
        wab.fail_next_send(400, 131030, "(#131030) Recipient phone number not in allowed list")
        with pytest.raises(SendRejected) as not_allowed:
            await connector.send(_command("to a stranger"))
        assert not_allowed.value.code == "recipient_not_allowed"
        with pytest.raises(SendRejected) as too_long:
            await connector.send(_command("x" * 4097))
        assert too_long.value.code == "bad_request"
        wab.close_window(ADA_WA_ID)
        with pytest.raises(SendRejected) as window:
            await connector.send(_command("a day later"))
        assert (window.value.code, window.value.reason) == (OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON)
        wab.revoke(number.token)
        with pytest.raises(SendRejected) as revoked:
            await connector.send(_command("still there?"))
        assert revoked.value.code == "token_revoked"
    finally:
        await connector.aclose()
    assert [m.get("to") or m.get("recipient") for m in wab.sent] == [BSUID]


async def test_the_session_reports_connected_then_a_revoked_token(
    store: EventStore, wab: FakeWhatsAppBusiness
) -> None:
    number = wab.add_number()
    env = SessionEnv(
        store=store, tenant_id=TENANT, connection_id=CONNECTION,
        secret={"token": number.token, "phone_number_id": number.phone_number_id},
        endpoints=ProviderEndpoints(whatsapp_business_api_base=wab.api_base), media=None,
    )  # fmt: skip
    session = WhatsAppBusinessSession(env, recheck_every=0.1)
    async with running(session) as task:
        await until(lambda: session.state == "connected")
        wab.revoke(number.token)
        await asyncio.wait_for(asyncio.shield(task), 10)  # run() returns by itself
    events = await tenant_events(store, TENANT)
    assert states(events) == [
        ("connecting", "connecting"),
        ("connected", "ok"),
        ("action_required", "token_revoked"),
    ]
    last = of(events, ev.ConnectionStateChanged)[-1].data
    assert last.action == "reconnect"
    assert "24 hours" in last.message
