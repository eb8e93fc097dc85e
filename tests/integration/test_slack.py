"""The Slack connector end to end: the real slack_sdk client against a fake Web API and
Socket Mode on 127.0.0.1 (tests/fakes/slack_api.py), with a real nats-server and PostgreSQL.

Connect: a bot token is checked (auth.test), an OAuth install's code is exchanged; through
the gateway, "Add to Slack" completes only in the browser that started it (its cookie) and
only once the person confirms the inbox.
In: a signed Events API request verifies (a bad or stale signature is refused), is refused
if it is for another workspace than its connection's (the gateway routes the app's
deliveries by api_app_id and team_id), and
becomes conversation.created / message.received with ids derived from Slack's; a thread
is its own conversation; edits, deletes and reactions become events; a redelivery is
stored once; the Socket Mode session acks envelopes once stored and reports its health
(connected, action_required when the token is revoked).
Out: sends go to the channel (or thread), Slack's refusals map onto SendDeferred /
SendRejected; through the outbox and runtime a send request ends as message.sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from nats.aio.client import Client

from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.errors import BadSignature, InstallRejected, TokenRejected, WrongWorkspace
from adapters.channels.registry import SessionEnv
from adapters.channels.runtime import ConnectorRuntime
from adapters.channels.slack import CAPABILITIES as SLACK_CAPABILITIES
from adapters.channels.slack.client import (
    SlackInstall,
    WorkspaceIdentity,
    exchange_code,
    install_url,
    validate_token,
)
from adapters.channels.slack.connector import SlackConnector
from adapters.channels.slack.normalize import (
    channel_conversation_id,
    message_id,
    normalize,
    slack_time,
    thread_conversation_id,
)
from adapters.channels.slack.session import SlackSocketSession
from adapters.channels.slack.webhook import SlackEvents, append_delivery, verify_request
from adapters.channels.webhooks import HookTarget
from adapters.nats.event_store import EventStore
from adapters.nats.outbox import Outbox
from adapters.nats.streams import ConsumerSpec, StreamsFile, apply_streams
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import ids
from domain.commands import SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected
from gateway.context import SlackApp
from gateway.routes.installs import install_cookie
from projections.registry import by_name
from tests.fakes.slack_api import FakeSlack, Team, Workspace, fake_slack, signed_request, url_verification
from tests.integration.conftest import Stack
from tests.integration.connector_log import (
    of as _of,
)
from tests.integration.connector_log import (
    received as _received,
)
from tests.integration.connector_log import (
    running as _running,
)
from tests.integration.connector_log import (
    states as _states,
)
from tests.integration.connector_log import (
    tenant_events,
    wait_for_events,
)
from tests.integration.connector_log import (
    until as _until,
)
from tests.integration.test_agent import _until as _eventually
from tests.integration.test_gateway import _auth, _signup

TENANT = "t_slack"
CONNECTION = "cn_slack1"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ADA = "U0ADA00001"
CHARLES = "U0CHARLES2"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as server:
        yield server


@pytest.fixture
def workspace(fake: FakeSlack) -> Workspace:
    return fake.add_workspace("Analytical Engines", "moltbot")


def _now() -> datetime:
    return datetime.now(UTC)


async def _events(store: EventStore) -> list[ev.Event]:
    return await tenant_events(store, TENANT)


async def _wait_for(
    store: EventStore, check: Callable[[list[ev.Event]], bool], timeout: float = 10.0
) -> list[ev.Event]:
    return await wait_for_events(store, TENANT, check, timeout)


async def _webhook(store: EventStore, workspace: Workspace, payload: dict[str, Any]) -> Any:
    """What the gateway's Events API route does with a signed request: verify, answer, append."""
    headers, body = signed_request(SECRET, payload)
    target = HookTarget(
        tenant_id=TENANT,
        connection_id=CONNECTION,
        secret={"bot_user_id": workspace.team.bot_user_id},
        team_id=workspace.team.id,
    )
    answer = SlackEvents(SECRET).handle(headers, body, target, now=_now())
    if answer.delivery is not None:
        await append_delivery(store, answer.delivery)
    return answer


# --- connect ------------------------------------------------------------------------------


async def test_validate_token_names_the_workspace_and_refuses_a_bad_token(
    fake: FakeSlack, workspace: Workspace
) -> None:
    identity = await validate_token(workspace.bot_token, api_base=fake.api_base)
    team = workspace.team
    assert identity == WorkspaceIdentity(
        team_id=team.id,
        team_name="Analytical Engines",
        bot_user_id=team.bot_user_id,
        bot_name="moltbot",
        bot_id=team.bot_id,
        url=f"https://{team.domain}.slack.com/",
    )
    with pytest.raises(TokenRejected, match="Slack does not accept this bot token"):
        await validate_token("xoxb-1-never-issued", api_base=fake.api_base)
    with pytest.raises(TokenRejected, match="not a Slack bot token"):
        await validate_token(workspace.app_token, api_base=fake.api_base)
    fake.revoke(workspace.bot_token)
    with pytest.raises(TokenRejected):
        await validate_token(workspace.bot_token, api_base=fake.api_base)


async def test_an_oauth_install_gives_the_workspace_and_its_bot_token(
    fake: FakeSlack, workspace: Workspace
) -> None:
    client_id, redirect = "1234567890.0987654321", "https://moltbot.example/v1/channels/slack/callback?x=1"
    url = install_url(client_id, redirect, "st&ate", ["chat:write", "channels:history"])
    query = parse_qs(urlsplit(url).query)
    assert url.startswith("https://slack.com/oauth/v2/authorize?")
    assert query == {
        "client_id": [client_id],
        "scope": ["chat:write,channels:history"],
        "redirect_uri": [redirect],
        "state": ["st&ate"],
    }
    fake.oauth_app(client_id, "s3cr3t")
    code = fake.authorize(workspace.team, client_id, redirect)
    with pytest.raises(InstallRejected, match="client secret"):
        await exchange_code(client_id, "wrong", code, redirect, api_base=fake.api_base)
    install = await exchange_code(client_id, "s3cr3t", code, redirect, api_base=fake.api_base)
    assert install == SlackInstall(
        team_id=workspace.team.id,
        team_name="Analytical Engines",
        bot_user_id=workspace.team.bot_user_id,
        bot_token=workspace.bot_token,
        app_id=workspace.team.app_id,
        scopes=("app_mentions:read", "channels:history", "chat:write", "im:history", "reactions:read"),
        authed_user_id="U0INSTALLER",  # who installed it: the inbox's owner in Slack
    )
    with pytest.raises(InstallRejected, match="already used"):
        await exchange_code(client_id, "s3cr3t", code, redirect, api_base=fake.api_base)


# --- in: the Events API ---------------------------------------------------------------------


def test_signatures_are_verified_and_stale_or_forged_requests_refused(fake: FakeSlack) -> None:
    workspace = fake.add_workspace()
    payload = fake.message(workspace.team, "C1", ADA, "hello")
    headers, body = signed_request(SECRET, payload)
    verify_request(SECRET, headers, body, now=_now())  # Slack's: no error
    lowered = {k.lower(): v for k, v in headers.items()}
    verify_request(SECRET, lowered, body, now=_now())  # header names in any case
    with pytest.raises(BadSignature, match="does not match"):
        verify_request(SECRET, headers, body.replace(b"hello", b"hellO"), now=_now())
    with pytest.raises(BadSignature, match="does not match"):
        verify_request("another-apps-secret", headers, body, now=_now())
    with pytest.raises(BadSignature, match="no Slack signature"):
        verify_request(SECRET, {"Content-Type": "application/json"}, body, now=_now())
    stale_headers, stale_body = signed_request(SECRET, payload, timestamp=int(_now().timestamp()) - 6 * 60)
    with pytest.raises(BadSignature, match="stale"):
        verify_request(SECRET, stale_headers, stale_body, now=_now())
    # A signature made 4 minutes ago is still good; "now" is the caller's clock.
    recent_headers, recent_body = signed_request(SECRET, payload, timestamp=int(_now().timestamp()) - 4 * 60)
    verify_request(SECRET, recent_headers, recent_body, now=_now())
    with pytest.raises(BadSignature, match="stale"):
        verify_request(SECRET, recent_headers, recent_body, now=_now() + timedelta(minutes=2))


def test_url_verification_answers_the_challenge() -> None:
    headers, body = signed_request(SECRET, url_verification("chall-3nge"))
    target = HookTarget(
        tenant_id=TENANT, connection_id=CONNECTION, secret={"bot_user_id": "U0BOT"}, team_id="T0OURS"
    )
    answer = SlackEvents(SECRET).handle(headers, body, target, now=_now())
    assert (answer.challenge, answer.delivery) == ("chall-3nge", None)
    forged_headers, _ = signed_request("not-our-secret", url_verification("chall-3nge"))
    with pytest.raises(BadSignature):
        SlackEvents(SECRET).handle(forged_headers, body, target, now=_now())


def test_a_delivery_for_another_workspace_or_app_is_refused(fake: FakeSlack) -> None:
    """Item 9 (adapter): one app installed in many workspaces signs all their deliveries
    alike, so the signature alone does not say which connection a delivery is for."""
    ours = fake.add_workspace("Lovelace & Co", app_id="A0SHARED1")
    theirs = fake.add_workspace("Intruders Ltd", app_id="A0SHARED1")
    other_app = fake.add_workspace("Lovelace & Co, another app")
    target = HookTarget(
        tenant_id=TENANT,
        connection_id=CONNECTION,
        secret={"bot_user_id": ours.team.bot_user_id},
        team_id=ours.team.id,
        app_id="A0SHARED1",
    )
    events = SlackEvents(SECRET)

    def handle(payload: dict[str, Any]) -> Any:
        headers, body = signed_request(SECRET, payload)
        return events.handle(headers, body, target, now=_now())

    for foreign in (
        fake.message(theirs.team, "C1", CHARLES, "not for this inbox"),
        fake.message(ours.team, "C1", ADA, "hello") | {"team_id": theirs.team.id},
        fake.message(ours.team, "C1", ADA, "hello") | {"api_app_id": other_app.team.app_id},
    ):
        with pytest.raises(WrongWorkspace):
            handle(foreign)
    answer = handle(fake.message(ours.team, "C1", ADA, "for this inbox"))
    assert answer.team_id == ours.team.id
    assert answer.delivery is not None
    [received] = _of(list(answer.delivery.events), ev.MessageReceived)
    assert received.data.text == "for this inbox"


async def test_a_signed_channel_message_becomes_a_group_conversation_and_a_message(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    channel = fake.add_channel(workspace.team, "engine-room")
    bot = workspace.team.bot_user_id
    payload = fake.message(workspace.team, channel, ADA, f"<@{bot}> can you summarise the thread?")
    answer = await _webhook(store, workspace, payload)
    assert answer.team_id == workspace.team.id
    await _webhook(store, workspace, payload)  # Slack retries the same request: stored once
    events = await _events(store)
    ts = payload["event"]["ts"]
    conversation = channel_conversation_id(CONNECTION, channel)
    assert conversation == ids.stable_id("c", f"slack:{CONNECTION}:{channel}")
    [created] = _of(events, ev.ConversationCreated)
    assert created.aggregate_id == conversation
    assert created.actor == f"connector:slack:{CONNECTION}"
    assert created.data == ev.ConversationCreatedData(
        channel="slack",
        connection_id=CONNECTION,
        kind="group",
        title=f"Slack channel {channel}",
        external_id=channel,
    )
    [received] = _of(events, ev.MessageReceived)
    data = received.data
    assert received.aggregate_id == conversation
    assert data.provider_message_id == f"{channel}:{ts}"
    assert data.message_id == ids.stable_id("m", f"slack:{CONNECTION}:{channel}:{ts}")
    assert data.message_id == message_id(CONNECTION, channel, ts)
    assert data.sender == ev.Sender(id=f"slack:{ADA}", name=ADA)
    assert data.text == f"<@{bot}> can you summarise the thread?"
    assert data.sent_at == slack_time(ts)
    assert data.mentions_agent is True


async def test_a_thread_reply_is_a_conversation_of_its_own(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    dm = fake.add_channel(team, im=True)
    parent = fake.message(team, channel, ADA, "lunch at noon?")
    thread_ts = parent["event"]["ts"]
    reply = fake.message(
        team, channel, CHARLES, "yes, the usual place", thread_ts=thread_ts, parent_user_id=ADA
    )
    direct = fake.message(team, dm, ADA, "a private question")
    for payload in (parent, reply, direct):
        await _webhook(store, workspace, payload)
    events = await _events(store)
    in_channel, in_thread, in_dm = _of(events, ev.ConversationCreated)
    assert (in_channel.data.kind, in_channel.data.external_id) == ("group", channel)
    assert in_thread.aggregate_id == thread_conversation_id(CONNECTION, channel, thread_ts)
    assert in_thread.aggregate_id == ids.stable_id("c", f"slack:{CONNECTION}:{channel}:{thread_ts}")
    assert (in_thread.data.kind, in_thread.data.external_id) == ("thread", f"{channel}:{thread_ts}")
    assert (in_dm.data.kind, in_dm.data.external_id) == ("direct", dm)
    first, second, third = _of(events, ev.MessageReceived)
    assert first.aggregate_id == in_channel.aggregate_id
    assert second.aggregate_id == in_thread.aggregate_id
    assert second.data.provider_message_id == f"{channel}:{reply['event']['ts']}"
    assert third.aggregate_id == in_dm.aggregate_id
    assert [e.data.mentions_agent for e in (first, second, third)] == [False, False, False]
    # In a thread the bot started, a reply is addressed to the bot.
    ours = fake.message(
        team, channel, ADA, "and book it", thread_ts=fake.next_ts(), parent_user_id=team.bot_user_id
    )
    [to_bot] = normalize(ours, tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=team.bot_user_id)
    assert isinstance(to_bot, ev.MessageReceived)
    assert to_bot.data.mentions_agent is True


async def test_edits_deletes_and_reactions_become_events(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    original = fake.message(team, channel, ADA, "see you on Fridey")
    in_thread = fake.message(team, channel, CHARLES, "typo", thread_ts=original["event"]["ts"])
    edit = fake.edit(original, "see you on Friday")
    thumbs = fake.reaction(original, "thumbsup", CHARLES)
    unthumbs = fake.reaction(original, "thumbsup", CHARLES, added=False)
    custom = fake.reaction(original, "shipit", ADA)
    deleted = fake.delete(in_thread)
    for payload in (original, in_thread, edit, edit, thumbs, thumbs, unthumbs, custom, deleted, deleted):
        await _webhook(store, workspace, payload)  # each repeat is stored once
    events = await _events(store)
    original_id = message_id(CONNECTION, channel, original["event"]["ts"])
    [edited] = _of(events, ev.MessageEdited)
    assert edited.aggregate_id == channel_conversation_id(CONNECTION, channel)
    assert edited.data == ev.MessageEditedData(
        message_id=original_id,
        text="see you on Friday",
        edited_at=slack_time(edit["event"]["message"]["edited"]["ts"]),
    )
    [gone] = _of(events, ev.MessageDeleted)
    assert gone.aggregate_id == thread_conversation_id(CONNECTION, channel, original["event"]["ts"])
    assert gone.data == ev.MessageDeletedData(
        message_id=message_id(CONNECTION, channel, in_thread["event"]["ts"]),
        deleted_at=slack_time(deleted["event"]["event_ts"]),
    )
    added = [e.data for e in _of(events, ev.ReactionAdded)]
    assert added == [
        ev.ReactionData(message_id=original_id, emoji="👍", sender_id=f"slack:{CHARLES}"),
        ev.ReactionData(message_id=original_id, emoji=":shipit:", sender_id=f"slack:{ADA}"),
    ]
    [removed] = _of(events, ev.ReactionRemoved)
    assert removed.data == ev.ReactionData(message_id=original_id, emoji="👍", sender_id=f"slack:{CHARLES}")


def test_normalize_skips_bots_our_own_messages_and_non_edits(fake: FakeSlack) -> None:
    workspace = fake.add_workspace()
    team = workspace.team
    ours = fake.message(team, "C1", team.bot_user_id, "I can help with that.")
    other_bot = fake.message(team, "C1", "U0OTHER", "deploy finished")
    other_bot["event"] |= {"subtype": "bot_message", "bot_id": "B0OTHER"}
    joined = fake.message(team, "C1", ADA, "<@U0ADA00001> has joined the channel")
    joined["event"]["subtype"] = "channel_join"
    unfurl = fake.edit(fake.message(team, "C1", ADA, "https://example.com"), "https://example.com")
    del unfurl["event"]["message"]["edited"]  # an unfurl, not an edit
    our_edit = fake.edit(ours, "I can help with that!")
    other_type = fake.callback(team, {"type": "channel_created", "channel": {"id": "C9", "name": "new"}})
    for payload in (ours, other_bot, joined, unfurl, our_edit, other_type, url_verification()):
        assert (
            normalize(payload, tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=team.bot_user_id) == []
        )


# --- in: Socket Mode --------------------------------------------------------------------------


def _session(store: EventStore, fake: FakeSlack, workspace: Workspace) -> SlackSocketSession:
    secret = {"app_token": workspace.app_token, "token": workspace.bot_token}
    endpoints = ProviderEndpoints(slack_api_base=fake.api_base)
    return SlackSocketSession(
        SessionEnv(store, TENANT, CONNECTION, secret, endpoints, media=None),
        check_every=0.05,
        first_backoff=0.05,
    )


async def test_socket_mode_stores_an_envelope_acks_it_and_reports_connected(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    fake.emails[(team.id, ADA)] = "Ada@Example.com"  # on her profile (users:read.email)
    first = fake.push_event(fake.message(team, channel, ADA, "sent while we were away"))  # queued
    session = _session(store, fake, workspace)
    async with _running(session):
        await _until(lambda: first in fake.acks)
        second_payload = fake.message(team, channel, CHARLES, "and one more")
        second = fake.push_event(second_payload)
        await _until(lambda: second in fake.acks)
        # Slack did not see the ack in time and sends the envelope again: acked, stored once.
        fake.redeliver(second)
        await _until(lambda: fake.acks.count(second) == 2)
        events = await _events(store)
        assert session.state == "connected"
    assert fake.acks == [first, second, second] == session.acked
    assert len(_of(events, ev.ConversationCreated)) == 1
    texts = [e.data.text for e in _of(events, ev.MessageReceived)]
    assert texts == ["sent while we were away", "and one more"]
    # Each sender's profile e-mail looked up once (people across channels); Charles has none.
    assert [e.data.sender.email for e in _of(events, ev.MessageReceived)] == ["ada@example.com", None]
    assert sorted(p["user"] for method, p in fake.requests if method == "users.info") == sorted(
        [ADA, CHARLES]
    )
    assert _states(events) == [("connecting", "connecting"), ("connected", "ok")]
    connected = _of(events, ev.ConnectionStateChanged)[-1]
    assert connected.aggregate_id == CONNECTION
    assert connected.data.message == "Connected to Slack workspace Analytical Engines as @moltbot"


async def test_on_connect_the_recent_history_comes_in_once_marked_as_backfill(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    team = workspace.team
    day = 86400.0
    engine_room = fake.add_channel(team, "engine-room")
    fake.said_before(team, engine_room, ADA, "Too old to bring in", ago=20 * day)
    first = fake.said_before(team, engine_room, ADA, "Did the gears arrive?", ago=2 * day)
    fake.said_before(team, engine_room, CHARLES, "Yes, on Tuesday", ago=1 * day)
    direct = fake.add_channel(team, "ada", im=True)
    fake.said_before(team, direct, ADA, "Can we talk tomorrow?", ago=3 * day)
    fake.said_before(team, direct, ADA, "Or on Friday?", ago=3 * day - 60)
    fake.add_channel(team, "quiet")  # nothing in the window: no conversation
    fake.add_channel(team, "elsewhere", bot_member=False)  # the bot is not in it
    # The newest history message also arrives live (Slack sends it while we read): stored once.
    live = fake.message(team, engine_room, CHARLES, "Yes, on Tuesday", ts=fake.history[engine_room][-1]["ts"])
    fake.push_event(live)
    session = _session(store, fake, workspace)
    async with _running(session):
        events = await _wait_for(store, lambda log: bool(_of(log, ev.ConnectionBackfilled)))
    received = _of(events, ev.MessageReceived)
    assert sorted(e.data.text for e in received) == sorted(
        ["Did the gears arrive?", "Yes, on Tuesday", "Can we talk tomorrow?", "Or on Friday?"]
    )
    history = [e for e in received if e.data.backfill]
    assert {e.data.text for e in history} >= {
        "Did the gears arrive?",
        "Can we talk tomorrow?",
        "Or on Friday?",
    }
    in_direct = [
        e.data.text for e in history if e.aggregate_id == channel_conversation_id(CONNECTION, direct)
    ]
    assert in_direct == ["Can we talk tomorrow?", "Or on Friday?"]  # oldest first, as they were said
    older = next(e for e in received if e.data.text == "Did the gears arrive?")
    assert older.data.message_id == message_id(CONNECTION, engine_room, first["ts"])  # as if it came live
    [done] = _of(events, ev.ConnectionBackfilled)
    assert (done.data.conversations, done.data.messages) == (2, 4)
    assert done.aggregate_id == CONNECTION and done.actor == f"connector:slack:{CONNECTION}"

    # Connected again (a restart): the log says it was done; nothing is read or stored again.
    reads = sum(1 for method, _ in fake.requests if method == "conversations.history")
    again = _session(store, fake, workspace)
    async with _running(again):
        await _until(lambda: again.state == "connected")
        await asyncio.sleep(0.3)
    assert sum(1 for method, _ in fake.requests if method == "conversations.history") == reads
    assert len(_of(await _events(store), ev.MessageReceived)) == 4


async def test_socket_mode_acks_but_does_not_store_another_workspaces_envelope(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    """An app installed in several workspaces has their events on one socket: the connection
    stores only its own workspace's (as the Events API webhook does)."""
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    theirs = fake.add_workspace("Intruders Ltd")
    foreign_payload = fake.message(theirs.team, channel, CHARLES, "not for this inbox")
    foreign = fake.push_event(foreign_payload, app_token=workspace.app_token)
    ours = fake.push_event(fake.message(team, channel, ADA, "for this inbox"))
    session = _session(store, fake, workspace)
    async with _running(session):
        await _until(lambda: ours in fake.acks)
        events = await _events(store)
    assert fake.acks == [foreign, ours] == session.acked
    assert [e.data.text for e in _of(events, ev.MessageReceived)] == ["for this inbox"]
    assert len(_of(events, ev.ConversationCreated)) == 1


async def test_socket_mode_follows_a_refresh_and_a_revoked_token_asks_for_a_reconnect(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    session = _session(store, fake, workspace)
    async with _running(session) as task:
        await _until(lambda: session.state == "connected" and fake.open_sockets() == 1)
        fake.disconnect(workspace.app_token)  # Slack's periodic refresh
        await _until(lambda: fake.connections_opened == 2 and fake.open_sockets() == 1)
        envelope = fake.push_event(fake.message(team, channel, ADA, "after the refresh"))
        await _until(lambda: envelope in fake.acks)
        fake.revoke(workspace.bot_token)  # the app is uninstalled: Slack says tokens_revoked
        await asyncio.wait_for(asyncio.shield(task), 10)  # run() returns by itself
    events = await _events(store)
    assert [e.data.text for e in _of(events, ev.MessageReceived)] == ["after the refresh"]
    assert _states(events) == [
        ("connecting", "connecting"),
        ("connected", "ok"),
        ("action_required", "token_revoked"),
    ]
    last = _of(events, ev.ConnectionStateChanged)[-1].data
    assert (last.message, last.action) == ("Slack no longer accepts this app's bot token", "reconnect")


async def test_socket_mode_a_revoked_app_level_token_asks_for_a_reconnect(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    session = _session(store, fake, workspace)
    async with _running(session) as task:
        await _until(lambda: session.state == "connected")
        fake.revoke(workspace.app_token)  # the socket closes; apps.connections.open refuses it
        await asyncio.wait_for(asyncio.shield(task), 10)
    assert _states(await _events(store))[-1] == ("action_required", "app_token_revoked")
    assert fake.open_sockets() == 0


async def test_socket_mode_reports_an_outage_as_degraded_then_connects(
    store: EventStore, fake: FakeSlack, workspace: Workspace
) -> None:
    fake.unavailable = True
    session = _session(store, fake, workspace)
    async with _running(session):
        await _until(lambda: session.state == "degraded")
        fake.unavailable = False
        await _until(lambda: session.state == "connected")
    assert _states(await _events(store)) == [
        ("connecting", "connecting"),
        ("degraded", "slack_unreachable"),
        ("connected", "ok"),
    ]


# --- out ----------------------------------------------------------------------------------


def _command(text: str, to: str, conversation_id: str | None = None) -> SendMessage:
    message = ids.new_id(ids.MESSAGE)
    return SendMessage(
        command_id=f"send:{TENANT}:{message}",
        tenant_id=TENANT,
        conversation_id=conversation_id or channel_conversation_id(CONNECTION, to.split(":")[0]),
        connection_id=CONNECTION,
        channel="slack",
        message_id=message,
        to=to,
        text=text,
        sender=ev.Sender(id="user:u_1", name="Ada"),
        requested_at=datetime.now(UTC),
        causation_id=ids.ulid(),
    )


@contextlib.asynccontextmanager
async def _connector(fake: FakeSlack, workspace: Workspace) -> AsyncIterator[SlackConnector]:
    async def credentials(connection_id: str) -> Mapping[str, Any]:
        assert connection_id == CONNECTION
        return {"token": workspace.bot_token, "signing_secret": SECRET}

    connector = SlackConnector(credentials, api_base=fake.api_base)
    try:
        yield connector
    finally:
        await connector.aclose()


async def test_send_posts_to_the_channel_or_the_thread(fake: FakeSlack, workspace: Workspace) -> None:
    channel = fake.add_channel(workspace.team, "engine-room")
    thread_ts = fake.next_ts()
    async with _connector(fake, workspace) as connector:
        assert (connector.kind, connector.capabilities) == ("slack", SLACK_CAPABILITIES)
        to_channel = await connector.send(_command("Done: Friday at 10:00.", channel))
        to_thread = await connector.send(_command("Booked.", f"{channel}:{thread_ts}"))
    first, second = fake.sent
    assert (first["token"], first["channel"], first["text"], first["thread_ts"]) == (
        workspace.bot_token,
        channel,
        "Done: Friday at 10:00.",
        None,
    )
    assert (second["channel"], second["text"], second["thread_ts"]) == (channel, "Booked.", thread_ts)
    assert to_channel == Delivered(
        provider_message_id=f"{channel}:{first['ts']}", sent_at=slack_time(first["ts"])
    )
    assert to_thread.provider_message_id == f"{channel}:{second['ts']}"


async def test_slacks_refusals_map_to_deferred_or_rejected(fake: FakeSlack, workspace: Workspace) -> None:
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    left = fake.add_channel(team, "random", bot_member=False)
    old = fake.add_channel(team, "2019-offsite")
    fake.archive(old)
    async with _connector(fake, workspace) as connector:
        fake.rate_limit("chat.postMessage", retry_after=7)
        with pytest.raises(SendDeferred) as deferred:
            await connector.send(_command("too fast", channel))
        assert deferred.value.retry_after == 7
        fake.fail("chat.postMessage", "internal_error", status=500)
        with pytest.raises(SendDeferred):
            await connector.send(_command("provider down", channel))
        expected = {
            "C99999999": ("channel_not_found", "cannot find this channel"),
            left: ("not_in_channel", "invite it"),
            old: ("is_archived", "archived"),
        }
        for to, (code, reason) in expected.items():
            with pytest.raises(SendRejected) as rejected:
                await connector.send(_command("anyone?", to))
            assert rejected.value.code == code
            assert reason in rejected.value.reason
        fake.revoke(workspace.bot_token)
        with pytest.raises(SendRejected) as revoked:
            await connector.send(_command("still there?", channel))
        assert revoked.value.code == "token_revoked"
        assert "reconnect Slack" in revoked.value.reason
    assert fake.sent == []


async def test_a_send_request_reaches_the_slack_thread_and_is_confirmed(
    stack: Stack, nc: Client, streams_spec: StreamsFile, fake: FakeSlack, workspace: Workspace
) -> None:
    telegram = streams_spec.consumer("connector-telegram").config
    consumer = {
        **telegram,
        "durable_name": "connector-slack",
        "description": "Commands for the Slack connector.",
        "filter_subject": "cmd.slack.>",
    }
    await apply_streams(nc, StreamsFile(streams=[], consumers=[ConsumerSpec("COMMANDS", consumer)]))
    store = stack.store
    team = workspace.team
    channel = fake.add_channel(team, "engine-room")
    parent_ts = fake.next_ts()
    fake.push_event(
        fake.message(team, channel, ADA, f"<@{team.bot_user_id}> what time is it?", thread_ts=parent_ts)
    )
    async with _connector(fake, workspace) as connector, stack.projections([by_name("inbox")]):
        runtime = ConnectorRuntime(
            nc, connector, store=EventStore(nc, sealer=stack.store.sealer), max_deliver=3, backoff=(0.05,)
        )
        tasks = [
            asyncio.create_task(_session(store, fake, workspace).run()),
            asyncio.create_task(Outbox(nc, store=EventStore(nc)).run()),
            asyncio.create_task(runtime.run()),
        ]
        try:
            events = await _wait_for(store, _received(1))
            [created] = _of(events, ev.ConversationCreated)
            assert (created.data.kind, created.data.external_id) == ("thread", f"{channel}:{parent_ts}")
            reply_id = ids.new_id(ids.MESSAGE)
            request = ev.new_event(
                ev.MessageSendRequested, tenant_id=TENANT, aggregate_id=created.aggregate_id, actor="user:u1",
                data=ev.MessageSendRequestedData(
                    message_id=reply_id, connection_id=CONNECTION, channel="slack",
                    to=created.data.external_id, text="It is 09:30 in London.",
                    sender=ev.Sender(id="user:u_1", name="Ada"),
                ),
            )  # fmt: skip
            await store.append(request)
            events = await _wait_for(store, lambda events: bool(_of(events, ev.MessageSent)))
            await stack.wait_caught_up(names=["inbox"])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    [sent] = fake.sent
    assert (sent["channel"], sent["thread_ts"], sent["text"]) == (
        channel,
        parent_ts,
        "It is 09:30 in London.",
    )
    [confirmed] = _of(events, ev.MessageSent)
    assert confirmed.aggregate_id == created.aggregate_id
    assert confirmed.data.message_id == reply_id
    assert confirmed.data.provider_message_id == f"{channel}:{sent['ts']}"
    assert confirmed.causation_id == request.id
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute(
            "SELECT kind, external_id, message_count FROM rm_inbox.conversations WHERE conversation_id = %s",
            (created.aggregate_id,),
        )
        assert tuple((await cur.fetchone()).values()) == ("thread", f"{channel}:{parent_ts}", 2)
        cur = await conn.execute(
            "SELECT direction, status, provider_message_id FROM rm_inbox.messages"
            " WHERE conversation_id = %s ORDER BY seq",
            (created.aggregate_id,),
        )
        rows = [tuple(row.values()) for row in await cur.fetchall()]
    [inbound] = _of(events, ev.MessageReceived)
    assert rows == [
        ("in", "received", inbound.data.provider_message_id),
        ("out", "sent", confirmed.data.provider_message_id),
    ]


def test_shared_files_arrive_as_attachments(fake: FakeSlack) -> None:
    team = fake.add_workspace().team
    files = [
        {"id": "F0PHOTO1", "name": "engine.jpg", "mimetype": "image/jpeg", "size": 52_000},
        {"id": "F0NOTES2", "name": "notes.pdf", "mimetype": "application/pdf", "size": 8},
    ]
    payload = fake.message(team, "C1", ADA, "the engine, finally", files=files)
    [received] = normalize(payload, tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=team.bot_user_id)
    assert isinstance(received, ev.MessageReceived)
    assert received.data.attachments == (
        ev.Attachment(
            kind="image", provider_file_id="F0PHOTO1", mime="image/jpeg", size=52_000, name="engine.jpg"
        ),
        ev.Attachment(
            kind="document", provider_file_id="F0NOTES2", mime="application/pdf", size=8, name="notes.pdf"
        ),
    )


def test_an_app_mention_is_the_same_message_as_its_message_event(fake: FakeSlack) -> None:
    team = fake.add_workspace().team
    payload = fake.message(team, "C1", ADA, f"<@{team.bot_user_id}> hello")
    mention = fake.callback(
        team, {k: v for k, v in payload["event"].items() if k != "channel_type"} | {"type": "app_mention"}
    )
    options = {"tenant_id": TENANT, "connection_id": CONNECTION, "bot_user_id": team.bot_user_id}
    [as_message] = normalize(payload, **options)
    [as_mention] = normalize(mention, **options)
    assert isinstance(as_message, ev.MessageReceived) and isinstance(as_mention, ev.MessageReceived)
    assert as_message.data == as_mention.data  # one dedupe key: stored once
    assert as_mention.aggregate_id == channel_conversation_id(CONNECTION, "C1")


# --- through the gateway: "Add to Slack" and the Events API routes ---------------------------

APP_ID = "A0MOLTBOT1"  # the deployment's app, installed in several workspaces
SLACK_APP = SlackApp(
    client_id="1234567890.0987654321",
    client_secret="s3cr3t",
    signing_secret=SECRET,
    # http here: a Secure cookie would not go back to the test's http://127.0.0.1 gateway
    redirect_uri="http://moltbot.test/v1/channels/slack/oauth/callback",
)
CALLBACK = "/v1/channels/slack/oauth/callback"


@pytest.fixture
def endpoints(fake: FakeSlack) -> ProviderEndpoints:
    return ProviderEndpoints(slack_api_base=fake.api_base)


@pytest.fixture
def slack_app(fake: FakeSlack) -> SlackApp:
    fake.oauth_app(SLACK_APP.client_id, SLACK_APP.client_secret)
    return SLACK_APP


async def _start_install(browser: httpx.AsyncClient, owner: dict[str, str]) -> str:
    """Press "Add to Slack" in ``browser`` (which keeps the install cookie): the state."""
    start = await browser.get("/v1/channels/slack/install", headers=_auth(owner))
    assert start.status_code == 200, start.text
    return parse_qs(urlsplit(start.json()["url"]).query)["state"][0]


async def _slack_channels(api: httpx.AsyncClient, owner: dict[str, str]) -> list[dict[str, Any]]:
    return [
        c for c in (await api.get("/v1/channels", headers=_auth(owner))).json() if c["channel"] == "slack"
    ]


async def _add_to_slack(api: httpx.AsyncClient, fake: FakeSlack, owner: dict[str, str], team: Team) -> str:
    """The whole install in one browser: start, Slack's consent, the page, confirm; the connection."""
    state = await _start_install(api, owner)
    code = fake.authorize(team, SLACK_APP.client_id, SLACK_APP.redirect_uri)
    page = await api.get(CALLBACK, params={"code": code, "state": state})
    assert page.status_code == 200, page.text
    confirmed = await api.post(CALLBACK, data={"state": state, "code": code})
    assert confirmed.status_code == 303, confirmed.text

    async def connected() -> list[dict[str, Any]]:
        return [c for c in await _slack_channels(api, owner) if c["display_name"] == team.name]

    [channel] = await _eventually(connected, f"{team.name} in the channels list")
    return str(channel["connection_id"])


async def test_add_to_slack_completes_only_in_the_browser_that_started_it_once_confirmed(
    api: httpx.AsyncClient, fake: FakeSlack, stack: Stack
) -> None:
    """Item 8: the OAuth state is bound to the starting browser's cookie, and the inbox is
    confirmed before the workspace is connected."""
    owner = await _signup(api, "slack-oauth@example.com")
    workspace = fake.add_workspace("Lovelace & Co", app_id=APP_ID)
    start = await api.get("/v1/channels/slack/install", headers=_auth(owner))
    assert start.status_code == 200
    query = parse_qs(urlsplit(start.json()["url"]).query)
    assert query["client_id"] == [SLACK_APP.client_id]
    assert query["redirect_uri"] == [SLACK_APP.redirect_uri]
    attributes = [a.strip().lower() for a in start.headers["set-cookie"].split(";")]
    assert attributes[0].startswith("moltbot_slack_install=")
    assert {"httponly", "samesite=lax", f"path={CALLBACK}", "max-age=600"} <= set(attributes)
    assert "secure" not in attributes  # http here; https below
    probe = await api.head("/v1/channels/slack/install", headers=_auth(owner))  # the web inbox's
    assert (probe.status_code, "set-cookie" in probe.headers) == (200, False)  # starts nothing
    assert (await api.head("/v1/channels/slack/install")).status_code == 401

    forged = await api.get(CALLBACK, params={"code": "x", "state": "made-up"})
    assert (forged.status_code, forged.json()["error"]) == (400, "invalid_state")

    async with httpx.AsyncClient(base_url=api.base_url) as other_browser:
        # The callback opened in another browser (a link sent to someone, or one stolen):
        # refused, the state spent, nothing connected.
        state = query["state"][0]
        code = fake.authorize(workspace.team, SLACK_APP.client_id, SLACK_APP.redirect_uri)
        elsewhere = await other_browser.get(CALLBACK, params={"code": code, "state": state})
        assert elsewhere.status_code == 403, elsewhere.headers.get("location")
        assert elsewhere.json()["error"] == "wrong_browser"
        assert "another browser" in elsewhere.json()["detail"]
        spent = await api.get(CALLBACK, params={"code": code, "state": state})
        assert (spent.status_code, spent.json()["error"]) == (400, "invalid_state")
        # The confirmation posted without the cookie (another browser, or a cross-site form:
        # the Lax cookie stays home): refused, the state spent.
        state = await _start_install(api, owner)
        code = fake.authorize(workspace.team, SLACK_APP.client_id, SLACK_APP.redirect_uri)
        posted = await other_browser.post(CALLBACK, data={"state": state, "code": code})
        assert (posted.status_code, posted.json()["error"]) == (403, "wrong_browser")
        assert (await api.post(CALLBACK, data={"state": state, "code": code})).status_code == 400
    assert not any(method == "oauth.v2.access" for method, _ in fake.requests)  # no code was exchanged

    # The same browser: a page names the inbox, and only the confirmation connects it.
    state = await _start_install(api, owner)
    code = fake.authorize(workspace.team, SLACK_APP.client_id, SLACK_APP.redirect_uri)
    page = await api.get(CALLBACK, params={"code": code, "state": state})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "<strong>Personal</strong> (owner: <strong>slack-oauth@example.com</strong>)" in page.text
    assert f'action="{CALLBACK}"' in page.text
    assert await _slack_channels(api, owner) == []
    confirmed = await api.post(CALLBACK, data={"state": state, "code": code})
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == "/?slack=connected#channels"
    assert "max-age=0" in confirmed.headers["set-cookie"].lower()  # the cookie is spent too
    replayed = await api.post(CALLBACK, data={"state": state, "code": code})
    assert replayed.status_code == 400  # a state works once

    async def connected_workspace() -> list[dict[str, Any]]:
        return await _slack_channels(api, owner)

    [channel] = await _eventually(connected_workspace, "the installed workspace")
    assert channel["display_name"] == "Lovelace & Co"
    # Behind https (the public URL), the cookie is Secure.
    https = SlackApp("id", "secret", "signing", "https://moltbot.example/v1/channels/slack/oauth/callback")
    cookie = install_cookie(https, "value")
    assert (cookie.secure, cookie.httponly, cookie.samesite, cookie.path) == (True, True, "lax", CALLBACK)


async def _slack_texts(stack: Stack, tenant_id: str) -> list[str]:
    log = [s.event async for s in stack.store.read_events(subject=f"ev.{tenant_id}.>")]
    return [e.data.text for e in log if isinstance(e, ev.MessageReceived) and e.data.channel == "slack"]


async def test_events_api_deliveries_are_stored_only_for_the_connected_workspace(
    api: httpx.AsyncClient, fake: FakeSlack, stack: Stack
) -> None:
    """Item 9: a correctly signed delivery of the right app for another workspace is refused
    and stores nothing; the app's Request URL routes by (api_app_id, team_id)."""
    owner = await _signup(api, "slack-events@example.com")
    ours = fake.add_workspace("Lovelace & Co", app_id=APP_ID)
    theirs = fake.add_workspace("Intruders Ltd", app_id=APP_ID)  # the same app, another workspace
    here, there = fake.add_channel(ours.team, "general"), fake.add_channel(theirs.team, "general")

    async def post(url: str, payload: dict[str, Any]) -> httpx.Response:
        headers, raw = signed_request(SECRET, payload)
        return await api.post(url, content=raw, headers=headers)

    # A connection made with pasted tokens and the signing secret: its own URL.
    body = {"bot_token": ours.bot_token, "signing_secret": SECRET}
    pasted = await api.post("/v1/channels/slack/connect", json=body, headers=_auth(owner))
    assert pasted.status_code == 202, pasted.text
    url = f"/v1/webhooks/slack/{pasted.json()['connection_id']}"
    assert (await post(url, url_verification("abc"))).json() == {"challenge": "abc"}
    foreign = await post(url, fake.message(theirs.team, there, CHARLES, "not for this inbox"))
    assert foreign.status_code == 403, foreign.text
    assert foreign.json()["error"] == "wrong_workspace"
    assert (await post(url, fake.message(ours.team, here, ADA, "pasted: ours"))).status_code == 200
    assert await _slack_texts(stack, owner["tenant_id"]) == ["pasted: ours"]
    # One recorded before workspaces were learns its workspace from Slack (auth.test), once.
    async with pg_connection(stack.database_url) as conn:
        await conn.execute("UPDATE gateway.webhooks SET team_id = NULL WHERE team_id IS NOT NULL")
    foreign = await post(url, fake.message(theirs.team, there, CHARLES, "still not for this inbox"))
    assert (foreign.status_code, foreign.json()["error"]) == (403, "wrong_workspace")
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT team_id FROM gateway.webhooks WHERE team_id IS NOT NULL")
        assert [row["team_id"] for row in await cur.fetchall()] == [ours.team.id]
    removed = await api.delete(f"/v1/channels/{pasted.json()['connection_id']}", headers=_auth(owner))
    assert removed.status_code == 202

    # "Add to Slack": the app's one Request URL, deliveries routed by (api_app_id, team_id).
    connection_id = await _add_to_slack(api, fake, owner, ours.team)
    app_url = "/v1/webhooks/slack"
    assert (await post(app_url, url_verification("xyz"))).json() == {"challenge": "xyz"}
    for target, status in ((app_url, 404), (f"/v1/webhooks/slack/{connection_id}", 403)):
        refused = await post(target, fake.message(theirs.team, there, CHARLES, "Intruders here"))
        assert refused.status_code == status, refused.text
    other_app = fake.message(ours.team, here, ADA, "from another app") | {"api_app_id": "A0OTHER99"}
    assert (await post(app_url, other_app)).status_code == 404
    assert (await post(app_url, fake.message(ours.team, here, ADA, "installed: ours"))).status_code == 200
    direct = await post(f"/v1/webhooks/slack/{connection_id}", fake.message(ours.team, here, ADA, "and here"))
    assert direct.status_code == 200
    assert await _slack_texts(stack, owner["tenant_id"]) == ["pasted: ours", "installed: ours", "and here"]

    # The workspace receives into one inbox: installing it into another is refused.
    someone = await _signup(api, "someone-else@example.com")
    state = await _start_install(api, someone)
    code = fake.authorize(ours.team, SLACK_APP.client_id, SLACK_APP.redirect_uri)
    assert (await api.get(CALLBACK, params={"code": code, "state": state})).status_code == 200
    taken = await api.post(CALLBACK, data={"state": state, "code": code})
    assert (taken.status_code, taken.json()["error"]) == (409, "already_connected")
    assert "another Moltbot inbox" in taken.json()["detail"]
    assert await _slack_channels(api, someone) == []
