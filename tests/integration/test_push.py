"""Browser push over the whole product (gateway, projections, outbox, connectors, the notifier
and, where drafts are concerned, the agent) with a fake push service on 127.0.0.1 that checks
each request's VAPID signature and decrypts its payload with the browser's own key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from adapters.mail.outbox import StoredMail, list_mail, outbox_folder, read_mail, text_body
from adapters.nats.event_store import EVENTS_STREAM
from adapters.postgres.database import connection as pg_connection
from adapters.push.config import PushConfig
from adapters.push.notifier import CONSUMER as NOTIFIER_CONSUMER
from adapters.vault.cipher import Keyring
from domain import events as ev
from domain.mail import Mailer
from domain.plans import Catalog
from gateway.auth import Tokens
from moltbot.roles import run_notifier
from projections import rebuild, tenants_queries
from projections.tenants import TenantsProjection
from tests.conftest import roomy_catalog
from tests.fakes.push_service import Browser, FakePushService, fake_push_service
from tests.integration.conftest import Stack, member_token
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _visitor_says, _widget


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # a second person in the inbox; the AI allowance as plans.yaml has it


@pytest.fixture
async def push_service(push_config: PushConfig) -> AsyncIterator[FakePushService]:
    async with fake_push_service(push_config.key.application_server_key) as service:
        yield service


@pytest.fixture
async def notifier(
    api: httpx.AsyncClient,
    stack: Stack,
    keyring: Keyring,
    push_config: PushConfig,
    plan_catalog: Catalog,
    mailer: Mailer,
) -> AsyncIterator[None]:
    """The notifier role beside ``api``, as `moltbot up` runs it (the digest's mail in the
    gateway's folder outbox)."""
    inbox = "https://inbox.moltbot.example"
    notifying = run_notifier(
        stack.roles, stack.database_url, push_config, keyring=keyring, catalog=plan_catalog, mailer=mailer,
        inbox_url=inbox,
    )  # fmt: skip
    role = asyncio.create_task(notifying)
    yield
    role.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await role


async def _handled(nc: Client, seq: int) -> None:
    """Wait until the notifier is done with every event up to ``seq`` (it acks an event once it
    sent its notifications, or decided there are none)."""
    jetstream = nc.jetstream()

    async def acked() -> bool:
        with contextlib.suppress(NotFoundError):
            info = await jetstream.consumer_info(EVENTS_STREAM, NOTIFIER_CONSUMER)
            return info.ack_floor.stream_seq >= seq
        return False

    await _until(acked, f"the notifier to handle seq {seq}")


async def _subscribe(api: httpx.AsyncClient, account: dict[str, str], browser: Browser) -> dict[str, Any]:
    response = await api.post("/v1/push/subscriptions", json=browser.subscription(), headers=_auth(account))
    assert response.status_code == 201, response.text
    subscribed: dict[str, Any] = response.json()
    return subscribed


async def _subscribed(
    api: httpx.AsyncClient, service: FakePushService, email: str
) -> tuple[dict[str, str], Browser]:
    """A new owner with one browser subscribed."""
    owner = await _signup(api, email)
    browser = service.browser()
    await _subscribe(api, owner, browser)
    return owner, browser


async def _webchat_mode(api: httpx.AsyncClient, owner: dict[str, str], mode: str) -> dict[str, Any]:
    """The owner's website chat set to ``mode``; the widget."""
    widget = await _widget(api, owner)
    changed = await api.patch(
        f"/v1/channels/{widget['connection_id']}", json={"agent_mode": mode}, headers=_auth(owner)
    )
    assert changed.status_code == 202, changed.text
    return widget


async def _delivered(service: FakePushService, browser: Browser, count: int = 1) -> list[dict[str, Any]]:
    async def arrived() -> list[dict[str, Any]] | None:
        got = service.to(browser)
        return got if len(got) >= count else None

    result: list[dict[str, Any]] = await _until(arrived, f"{count} push(es) to the browser")
    return result


async def test_a_message_where_the_agent_drafts_reaches_the_owners_browser_decrypted(
    api: httpx.AsyncClient, nc: Client, push_service: FakePushService, notifier: None, push_config: PushConfig
) -> None:
    key = await api.get("/v1/push/key")
    assert key.json() == {"public_key": push_config.key.application_server_key}
    owner = await _signup(api, "push-owner@example.com")
    browser = push_service.browser()
    subscribed = await _subscribe(api, owner, browser)
    assert subscribed["push_service"] == "127.0.0.1"
    assert set(subscribed) == {"subscription_id", "push_service", "device", "created_at", "last_sent_at"}
    widget = await _webchat_mode(api, owner, "draft")

    text = "Hello! Could you   tell me when the shop opens on Sunday morning, please?"
    said = await _visitor_says(api, widget["widget_key"], text, name="Lea Visitor")

    [payload] = await _delivered(push_service, browser)
    conversation = said["conversation_id"]
    assert payload == {
        "title": "Lea Visitor",
        "body": "Hello! Could you tell me when the shop opens on Sunday morning, please?",
        "url": f"/#conversation={conversation}",
        "tag": f"conversation-{conversation}",
    }
    [delivery] = push_service.deliveries
    assert delivery.claims["aud"] == push_service.base_url
    assert delivery.claims["sub"] == push_config.subject
    assert delivery.headers["urgency"] == "high"
    assert int(delivery.headers["ttl"]) > 0
    assert push_service.refusals == []
    await _handled(nc, said["seq"])
    [listed] = (await api.get("/v1/push/subscriptions", headers=_auth(owner))).json()
    assert listed["subscription_id"] == subscribed["subscription_id"]
    assert listed["last_sent_at"] is not None


async def test_a_conversation_the_agent_answers_by_itself_notifies_nobody(
    api: httpx.AsyncClient, nc: Client, push_service: FakePushService, notifier: None
) -> None:
    owner, browser = await _subscribed(api, push_service, "push-auto@example.com")
    widget = await _widget(api, owner)  # the website chat answers by itself (auto) until changed

    said = await _visitor_says(api, widget["widget_key"], "Do you ship to Norway?", name="Ole")
    await _handled(nc, said["seq"])
    assert push_service.requests == 0

    # The same inbox with the agent off: the next message is the owner's to answer.
    await _webchat_mode(api, owner, "off")
    again = await _visitor_says(
        api, widget["widget_key"], "Hello?", name="Ole", visitor_token=said["visitor_token"]
    )
    [payload] = await _delivered(push_service, browser)
    assert (payload["title"], payload["body"]) == ("Ole", "Hello?")
    await _handled(nc, again["seq"])


async def test_a_draft_waiting_is_pushed_after_the_message(
    api: httpx.AsyncClient, push_service: FakePushService, notifier: None, assistant: None
) -> None:
    owner, browser = await _subscribed(api, push_service, "push-drafts@example.com")
    widget = await _webchat_mode(api, owner, "draft")

    said = await _visitor_says(api, widget["widget_key"], "Can I book a table for two tonight?", name="Mia")

    payloads = await _delivered(push_service, browser, 2)
    conversation = said["conversation_id"]
    message, draft = sorted(payloads, key=lambda p: p["title"].startswith("Draft"))
    assert message["title"] == "Mia"
    assert draft["title"].startswith("Draft ready: ")
    assert "Can I book a table for two tonight?" in draft["body"]  # the offline model quotes it
    assert draft["url"] == f"/#conversation={conversation}"
    assert draft["tag"] == message["tag"] == f"conversation-{conversation}"  # the draft replaces it


async def test_quiet_hours_in_the_owners_time_zone_hold_pushes_back(
    api: httpx.AsyncClient, stack: Stack, nc: Client, push_service: FakePushService, notifier: None
) -> None:
    owner, browser = await _subscribed(api, push_service, "push-quiet@example.com")
    widget = await _webchat_mode(api, owner, "off")
    # Kathmandu is UTC+5:45: the hours that are quiet there now are not now in UTC.
    zone = "Asia/Kathmandu"
    local = datetime.now(ZoneInfo(zone)).hour
    quiet = {"start": local, "end": (local + 2) % 24}
    assert datetime.now(UTC).hour not in (local, (local + 1) % 24)
    chosen = await api.put(
        "/v1/me/preferences", json={"time_zone": zone, "quiet_hours": quiet}, headers=_auth(owner)
    )
    assert chosen.status_code == 202, chosen.text
    me = (await api.get("/v1/me", params={"min_seq": chosen.json()["seq"]}, headers=_auth(owner))).json()
    assert (me["time_zone"], me["quiet_hours"]) == (zone, quiet)
    subject = f"ev.{owner['tenant_id']}.user.{owner['user_id']}.user_preferences_changed"
    stored = await nc.jetstream().get_last_msg(EVENTS_STREAM, subject)
    assert b"Kathmandu" not in stored.data and b'"start":' in stored.data  # the zone is sealed
    await stack.wait_caught_up()
    async with pg_connection(stack.database_url) as conn:
        assert await tenants_queries.owner_time_zone(conn, owner["tenant_id"]) == zone  # the agent's read
        rebuilt = await rebuild.verify(conn, TenantsProjection(), stack.store)
        assert rebuilt.identical, rebuilt  # a replay of the log brings the preferences back

    said = await _visitor_says(api, widget["widget_key"], "Are you there?", name="Noor")
    await _handled(nc, said["seq"])
    assert push_service.requests == 0  # held back: not sent, not queued

    # Outside the quiet hours (the same hours, on UTC's clock) it is pushed.
    awake = await api.put(
        "/v1/me/preferences", json={"time_zone": "UTC", "quiet_hours": quiet}, headers=_auth(owner)
    )
    assert awake.status_code == 202, awake.text
    await stack.wait_caught_up()
    again = await _visitor_says(
        api, widget["widget_key"], "Hello?", name="Noor", visitor_token=said["visitor_token"]
    )
    [payload] = await _delivered(push_service, browser)
    assert payload["body"] == "Hello?"
    await _handled(nc, again["seq"])
    assert len(push_service.deliveries) == 1


async def test_a_gone_device_is_removed_a_flaky_one_retried_the_others_served(
    api: httpx.AsyncClient, nc: Client, push_service: FakePushService, notifier: None
) -> None:
    owner = await _signup(api, "push-gone@example.com")
    gone, flaky, healthy = push_service.browser(), push_service.browser(), push_service.browser()
    gone.answers.append(410)
    flaky.answers.append(503)
    subscribed = {
        name: await _subscribe(api, owner, b)
        for name, b in (("gone", gone), ("flaky", flaky), ("healthy", healthy))
    }
    widget = await _webchat_mode(api, owner, "draft")

    said = await _visitor_says(api, widget["widget_key"], "Ping", name="Sam")
    await _handled(nc, said["seq"])
    assert push_service.to(healthy) == push_service.to(flaky) == [
        {"title": "Sam", "body": "Ping", "url": f"/#conversation={said['conversation_id']}",
         "tag": f"conversation-{said['conversation_id']}"},
    ]  # fmt: skip
    assert push_service.to(gone) == []
    left = (await api.get("/v1/push/subscriptions", headers=_auth(owner))).json()
    ids = {s["subscription_id"] for s in left}
    assert ids == {subscribed["flaky"]["subscription_id"], subscribed["healthy"]["subscription_id"]}


async def test_a_channel_needing_its_owner_goes_to_owners_and_messages_to_everyone(
    api: httpx.AsyncClient, stack: Stack, nc: Client, push_service: FakePushService, notifier: None,
    tmp_path: Path,
) -> None:  # fmt: skip
    owner = await _signup(api, "push-channel@example.com")
    member = {"token": await member_token(stack, tmp_path / "jwt.pem", owner["tenant_id"], "member")}
    owners_browser, members_browser = push_service.browser(), push_service.browser()
    await _subscribe(api, owner, owners_browser)
    await _subscribe(api, member, members_browser)
    widget = await _webchat_mode(api, owner, "draft")

    broken = ev.new_event(
        ev.ConnectionStateChanged, tenant_id=owner["tenant_id"], aggregate_id=widget["connection_id"],
        actor="connector:webchat:test",
        data=ev.ConnectionStateChangedData(
            state="action_required", code="token_revoked",
            message="The provider no longer accepts this token.", action="reconnect",
        ),
    )  # fmt: skip
    appended = await stack.store.append(broken)
    [payload] = await _delivered(push_service, owners_browser)
    assert payload["title"].endswith(" needs you")
    assert payload["body"] == "The provider no longer accepts this token."
    assert (payload["url"], payload["tag"]) == ("/#channels", f"connection-{widget['connection_id']}")
    await _handled(nc, appended.seq)
    assert push_service.to(members_browser) == []

    said = await _visitor_says(api, widget["widget_key"], "Hi both", name="Kim")
    await _delivered(push_service, members_browser)
    await _delivered(push_service, owners_browser, 2)
    await _handled(nc, said["seq"])


async def test_the_ai_allowance_used_up_is_pushed_once_a_month(
    api: httpx.AsyncClient, stack: Stack, nc: Client, push_service: FakePushService, notifier: None
) -> None:
    owner, browser = await _subscribed(api, push_service, "push-budget@example.com")

    def spent(micros: int) -> ev.UsageRecorded:
        return ev.new_event(
            ev.UsageRecorded, tenant_id=owner["tenant_id"], aggregate_id=owner["tenant_id"],
            actor="agent:test", data=ev.UsageRecordedData(metric="cost_micros", quantity=micros),
        )  # fmt: skip

    below = await stack.store.append(spent(1_500_000))  # $1.50 of the Free plan's $2
    await _handled(nc, below.seq)
    assert push_service.requests == 0
    reached = await stack.store.append(spent(600_000))
    [payload] = await _delivered(push_service, browser)
    assert payload["title"] == "This month's AI allowance is used up"
    assert (payload["url"], payload["tag"]) == ("/#usage", "ai-allowance")
    beyond = await stack.store.append(spent(100_000))
    await _handled(nc, max(reached.seq, beyond.seq))
    assert len(push_service.deliveries) == 1


async def test_a_person_who_leaves_the_inbox_leaves_their_devices_there(
    api: httpx.AsyncClient, stack: Stack, push_service: FakePushService, notifier: None, tmp_path: Path
) -> None:
    owner = await _signup(api, "push-leaving@example.com")
    key_file = tmp_path / "jwt.pem"  # the gateway's signing key (the api fixture's)
    member = {"token": await member_token(stack, key_file, owner["tenant_id"], "member")}
    subscribed = await _subscribe(api, member, push_service.browser())
    leaving = Tokens.from_pem_file(key_file).verify(member["token"]).user_id
    removed = await api.delete(f"/v1/members/{leaving}", headers=_auth(owner))
    assert removed.status_code == 200, removed.text

    async def forgotten() -> bool:
        async with pg_connection(stack.database_url) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM push.subscriptions WHERE subscription_id = %s",
                (subscribed["subscription_id"],),
            )
            row = await cur.fetchone()
            return row is not None and row["n"] == 0

    await _until(forgotten, "the removed member's device to be forgotten")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endpoint": "https://fcm.example/x"}, "keys"),
        ({"keys": {"p256dh": "x", "auth": "y"}}, "endpoint"),
        ({"endpoint": "https://evil.example/push/1", "keys": None}, "keys"),
        ("not json at all", None),
        ({"endpoint": "https://attacker.example/push/1", "keys": "BROWSER"}, "endpoint"),
        ({"endpoint": "ftp://127.0.0.1/push/1", "keys": "BROWSER"}, "endpoint"),
        ({"endpoint": "http://user:pw@127.0.0.1/push/1", "keys": "BROWSER"}, "endpoint"),
        ({"endpoint": "http://127.0.0.1/" + "x" * 3000, "keys": "BROWSER"}, "endpoint"),
        ({"endpoint": "SERVICE", "keys": {"p256dh": "AAAA", "auth": "AUTH"}}, "keys.p256dh"),
        ({"endpoint": "SERVICE", "keys": {"p256dh": "BPOINT-NOT-ON-CURVE", "auth": "AUTH"}}, "keys.p256dh"),
        ({"endpoint": "SERVICE", "keys": {"p256dh": "P256DH", "auth": "c2hvcnQ"}}, "keys.auth"),
        ({"endpoint": "SERVICE", "keys": {"p256dh": "P256DH", "auth": "!!!!"}}, "keys.auth"),
        ({"endpoint": "SERVICE", "keys": {"p256dh": "P256DH", "auth": "AUTH"}, "extra": 1}, None),
    ],
)
async def test_a_subscription_that_cannot_be_pushed_to_is_refused(
    api: httpx.AsyncClient, push_service: FakePushService, body: Any, field: str | None
) -> None:
    owner = await _signup(api, "push-bad@example.com")
    good = push_service.browser().subscription()
    if isinstance(body, dict):
        body = dict(body)
        if body.get("endpoint") == "SERVICE":
            body["endpoint"] = good["endpoint"]
        if body.get("keys") == "BROWSER":
            body["keys"] = good["keys"]
        elif isinstance(body.get("keys"), dict):
            keys = dict(body["keys"])
            keys["p256dh"] = {"P256DH": good["keys"]["p256dh"], "BPOINT-NOT-ON-CURVE": "BA" + "A" * 85}.get(
                keys["p256dh"], keys["p256dh"]
            )
            keys["auth"] = good["keys"]["auth"] if keys["auth"] == "AUTH" else keys["auth"]
            body["keys"] = keys
        response = await api.post("/v1/push/subscriptions", json=body, headers=_auth(owner))
    else:
        response = await api.post(
            "/v1/push/subscriptions",
            content=body,
            headers={**_auth(owner), "content-type": "application/json"},
        )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["detail"]
    if field is not None:  # named as the field at fault, or in the words (a field the body lacks)
        assert answer.get("field") == field or f"`{field}`" in answer["detail"], answer
    assert (await api.get("/v1/push/subscriptions", headers=_auth(owner))).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"time_zone": "Europe/Berlin", "quiet_hours": {"start": 25, "end": 7}}, "quiet_hours"),
        ({"time_zone": "Europe/Berlin", "quiet_hours": {"start": 7, "end": 7}}, "quiet_hours"),
        ({"quiet_hours": {"start": 22, "end": 7}}, "time_zone"),
    ],
)
async def test_preferences_that_make_no_sense_are_refused(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    owner = await _signup(api, "prefs-bad@example.com")
    response = await api.put("/v1/me/preferences", json=body, headers=_auth(owner))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer.get("field") == field or f"`{field}`" in answer["detail"], answer


async def test_subscriptions_are_each_persons_in_each_inbox(
    api: httpx.AsyncClient, nc: Client, push_service: FakePushService, notifier: None
) -> None:
    ada, bob = await _signup(api, "push-ada@example.com"), await _signup(api, "push-bob@example.com")
    adas_browser, bobs_browser = push_service.browser(), push_service.browser()
    adas = await _subscribe(api, ada, adas_browser)
    await _subscribe(api, bob, bobs_browser)

    bobs_list = (await api.get("/v1/push/subscriptions", headers=_auth(bob))).json()
    assert adas["subscription_id"] not in {s["subscription_id"] for s in bobs_list}
    refused = await api.delete(f"/v1/push/subscriptions/{adas['subscription_id']}", headers=_auth(bob))
    assert refused.status_code == 404
    assert [
        s["subscription_id"] for s in (await api.get("/v1/push/subscriptions", headers=_auth(ada))).json()
    ] == [adas["subscription_id"]]

    widget = await _webchat_mode(api, bob, "draft")
    said = await _visitor_says(api, widget["widget_key"], "For Bob only", name="Zoe")
    await _delivered(push_service, bobs_browser)
    await _handled(nc, said["seq"])
    assert push_service.to(adas_browser) == []  # another inbox's message never reaches Ada

    # Subscribing the same browser again keeps one row; unsubscribing removes it.
    again = await _subscribe(api, ada, adas_browser)
    assert again["subscription_id"] == adas["subscription_id"]
    gone = await api.delete(f"/v1/push/subscriptions/{adas['subscription_id']}", headers=_auth(ada))
    assert gone.status_code == 204
    assert (await api.get("/v1/push/subscriptions", headers=_auth(ada))).json() == []


async def test_while_away_pushes_are_held_and_coming_back_says_what_came_in(
    api: httpx.AsyncClient, stack: Stack, nc: Client, push_service: FakePushService, notifier: None
) -> None:
    owner, browser = await _subscribed(api, push_service, "push-away@example.com")
    widget = await _webchat_mode(api, owner, "off")
    until = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    away = await api.put("/v1/away", json={"until": until, "message": "Back soon."}, headers=_auth(owner))
    assert away.status_code == 202, away.text
    await stack.wait_caught_up()
    said = await _visitor_says(api, widget["widget_key"], "Hello, anyone?", name="Noor")
    await _handled(nc, said["seq"])
    assert push_service.requests == 0  # held back while away

    [payload] = await _delivered(push_service, browser)  # the period runs out by itself
    assert payload == {
        "title": "Welcome back",
        "body": "1 message in 1 conversation while you were away; 1 still needs a reply.",
        "url": "/#digest",
        "tag": "away",
    }
    again = await _visitor_says(
        api, widget["widget_key"], "Hello again", name="Noor", visitor_token=said["visitor_token"]
    )
    [_, after] = await _delivered(push_service, browser, 2)  # back: pushed as ever
    assert after["body"] == "Hello again"
    await _handled(nc, again["seq"])


async def test_the_morning_digest_comes_once_by_push_and_by_mail(
    api: httpx.AsyncClient,
    stack: Stack,
    nc: Client,
    push_service: FakePushService,
    notifier: None,
    tmp_path: Path,
) -> None:
    owner, browser = await _subscribed(api, push_service, "push-digest@example.com")
    widget = await _webchat_mode(api, owner, "off")
    await _visitor_says(api, widget["widget_key"], "Could you send me the menu?", name="Lea")
    [message_push] = await _delivered(push_service, browser)
    assert message_push["body"] == "Could you send me the menu?"
    if datetime.now(UTC).minute == 59 and datetime.now(UTC).second > 50:
        await asyncio.sleep(11)  # the digest hour is this hour: not one that ends in a moment
    hour = datetime.now(UTC).hour
    chosen = await api.put(
        "/v1/me/preferences", json={"time_zone": "UTC", "digest_hour": hour}, headers=_auth(owner)
    )
    assert chosen.status_code == 202, chosen.text
    me = (await api.get("/v1/me", params={"min_seq": chosen.json()["seq"]}, headers=_auth(owner))).json()
    assert (me["digest_hour"], me["digest_email"]) == (hour, True)

    [_, payload] = await _delivered(push_service, browser, 2)  # the scheduler's next tick
    assert payload == {
        "title": "Your day at a glance",
        "body": "1 conversation needs a reply.",
        "url": "/#digest",
        "tag": "digest",
    }
    folder = outbox_folder(tmp_path)

    async def mailed() -> list[StoredMail]:
        return [m for m in list_mail(folder) if m.kind == "digest"]

    [mail] = await _until(mailed, "the digest's mail")
    assert mail.to == "push-digest@example.com"
    text = text_body(read_mail(folder, mail.name))
    assert "1 conversation needs a reply" in text and "Could you send me the menu?" in text
    assert "https://inbox.moltbot.example/#digest" in text
    await asyncio.sleep(2.5)  # more ticks of the scheduler in the same hour
    due = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if isinstance(s.event, ev.DigestDue)
    ]
    assert len(due) == 1 and due[0].data.date == datetime.now(UTC).date()
    await _handled(nc, await stack.store.last_seq())
    assert len(push_service.deliveries) == 2 and len(await mailed()) == 1
