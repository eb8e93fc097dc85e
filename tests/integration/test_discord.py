"""The Discord connector end to end: hikari's REST client and our gateway client against a
fake Discord on 127.0.0.1 (tests/fakes/discord_api.py), with a real nats-server and
PostgreSQL.

In: gateway dispatches become conversation.created / message.received / message.edited /
message.deleted / reaction.added / reaction.removed with ids derived from Discord's, a
repeated dispatch is stored once, a dropped socket is resumed with the last stored
sequence (nothing lost), and the connection's health is reported (connected, degraded,
action_required when the token is reset or the Message Content intent is off).
Out: sends go to the channel (long replies in parts, each with an enforced nonce), and
Discord's refusals map onto SendDeferred / SendRejected; through the outbox and runtime
a send request ends as message.sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.client import Client

from adapters.channels.discord import CAPABILITIES as DISCORD_CAPABILITIES
from adapters.channels.discord.client import BotIdentity, validate_token
from adapters.channels.discord.connector import DiscordConnector
from adapters.channels.discord.gateway_session import INTENTS, DiscordSession
from adapters.channels.discord.normalize import conversation_id, message_id, normalize
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.errors import TokenRejected
from adapters.channels.registry import SessionEnv
from adapters.channels.runtime import ConnectorRuntime
from adapters.nats.event_store import EventStore
from adapters.nats.outbox import Outbox
from adapters.nats.streams import ConsumerSpec, StreamsFile, apply_streams
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import ids
from domain.commands import SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected
from projections.registry import by_name
from tests.fakes.discord_api import (
    ADA,
    CHARLES,
    CREATE_MESSAGE,
    MESSAGE_CONTENT_INTENT,
    FakeDiscord,
    fake_discord,
    user,
)
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

TENANT = "t_discord"
CONNECTION = "cn_discord1"
GUILD = "Analytical Engine Club"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with fake_discord() as server:
        server.heartbeat_interval_ms = 250  # beats often enough to be seen in a test
        yield server


@pytest.fixture
def token(fake: FakeDiscord) -> str:
    return fake.add_bot("moltbot", "Moltbot")


@pytest.fixture
def general(fake: FakeDiscord) -> str:
    """The #general channel of a server the bot is in."""
    guild = fake.add_guild(GUILD, channels=("general", "random"))
    return str(guild["channels"][0]["id"])


def _session(
    store: EventStore, fake: FakeDiscord, token: str, gateway_url: str | None = None
) -> DiscordSession:
    endpoints = ProviderEndpoints(discord_api_base=fake.api_base, discord_gateway_url=gateway_url)
    return DiscordSession(
        SessionEnv(store, TENANT, CONNECTION, {"token": token}, endpoints, media=None),
        first_backoff=0.05,
        connect_timeout=5.0,
    )


async def _events(store: EventStore) -> list[ev.Event]:
    return await tenant_events(store, TENANT)


async def _wait_for(
    store: EventStore, check: Callable[[list[ev.Event]], bool], timeout: float = 10.0
) -> list[ev.Event]:
    return await wait_for_events(store, TENANT, check, timeout)


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp).astimezone(UTC)


# --- identity -----------------------------------------------------------------------------


async def test_validate_token_names_the_bot_and_refuses_a_bad_token(fake: FakeDiscord, token: str) -> None:
    identity = await validate_token(token, api_base=fake.api_base)
    bot = fake.bot_user(token)
    assert identity == BotIdentity(id=int(bot["id"]), username="moltbot", display_name="Moltbot")
    pasted = f"Bot {token}\n"  # with the Authorization scheme and a newline
    assert await validate_token(pasted, api_base=fake.api_base) == identity
    with pytest.raises(TokenRejected, match="Discord does not accept this bot token"):
        await validate_token("MTIzNDU2.not-a.token-discord-issued", api_base=fake.api_base)
    with pytest.raises(TokenRejected, match="not a Discord bot token"):
        await validate_token("hello world", api_base=fake.api_base)
    fake.revoke(token)
    with pytest.raises(TokenRejected):
        await validate_token(token, api_base=fake.api_base)


# --- in -----------------------------------------------------------------------------------


async def test_a_guild_message_becomes_a_group_conversation_and_a_message(
    store: EventStore, fake: FakeDiscord, token: str, general: str
) -> None:
    message = fake.push_message(general, ADA, "Can you move my dentist appointment?")
    session = _session(store, fake, token)
    async with _running(session):
        events = await _wait_for(store, _received(1))
        await _until(lambda: len(fake.heartbeats) >= 2)
    conversation = conversation_id(CONNECTION, general)
    assert conversation == ids.stable_id("c", f"discord:{CONNECTION}:{general}")
    [created] = _of(events, ev.ConversationCreated)
    assert created.aggregate_id == conversation
    assert created.actor == f"connector:discord:{CONNECTION}"
    assert created.data == ev.ConversationCreatedData(
        channel="discord",
        connection_id=CONNECTION,
        kind="group",
        title=f"#general ({GUILD})",
        external_id=general,
    )
    [received] = _of(events, ev.MessageReceived)
    provider_id = f"{general}:{message['id']}"
    data = received.data
    assert received.aggregate_id == conversation
    assert data.provider_message_id == provider_id
    assert data.message_id == ids.stable_id("m", f"discord:{CONNECTION}:{provider_id}")
    assert data.sender == ev.Sender(id=f"dc:{ADA['id']}", name="Ada Lovelace", is_bot=False)
    assert data.text == "Can you move my dentist appointment?"
    assert data.sent_at == _at(message["timestamp"])
    assert (data.attachments, data.reply_to_message_id, data.mentions_agent) == ((), None, False)
    assert _states(events) == [("connecting", "connecting"), ("connected", "ok")]
    [connected] = _of(events, ev.ConnectionStateChanged)[1:]
    assert connected.aggregate_id == CONNECTION
    assert connected.data.message == "Connected to Discord as moltbot"
    # The gateway's address came from GET /gateway/bot; IDENTIFY asked for what we read.
    assert ("GET", "/gateway/bot") in fake.requests
    assert fake.connections == ["/"]
    [identify] = fake.identifies
    assert (identify["token"], identify["intents"]) == (token, int(INTENTS))
    assert identify["intents"] & MESSAGE_CONTENT_INTENT
    assert fake.heartbeats[-1] == session.seq  # heartbeats carry the last sequence


async def test_on_connect_the_servers_recent_history_comes_in_once_marked_as_backfill(
    store: EventStore, fake: FakeDiscord, token: str
) -> None:
    day = 86400.0
    guild = fake.add_guild(GUILD, channels=("general", "random", "mods", "quiet"))
    general, random_, mods, _quiet = (str(c["id"]) for c in guild["channels"])
    fake.said_before(general, ADA, "Too old to bring in", ago=20 * day)
    asked = fake.said_before(general, ADA, "Is the engine ready?", ago=2 * day)
    fake.said_before(general, CHARLES, "Almost: the mill is done", ago=1 * day)
    fake.said_before(random_, CHARLES, "Tea at five?", ago=3 * day)
    fake.said_before(mods, ADA, "Private notes", ago=1 * day)
    fake.forbid(mods, 50001, "Missing Access")  # the bot may not read it: skipped, the rest goes on
    session = _session(store, fake, token)
    async with _running(session):
        events = await _wait_for(store, lambda log: bool(_of(log, ev.ConnectionBackfilled)))
    received = _of(events, ev.MessageReceived)
    assert [(e.aggregate_id, e.data.text) for e in received] == [
        (conversation_id(CONNECTION, general), "Is the engine ready?"),  # oldest first, per channel
        (conversation_id(CONNECTION, general), "Almost: the mill is done"),
        (conversation_id(CONNECTION, random_), "Tea at five?"),
    ]
    assert all(e.data.backfill for e in received)
    first = received[0].data
    assert first.message_id == message_id(CONNECTION, general, asked["id"])  # as the gateway's would be
    assert first.sent_at == _at(asked["timestamp"])
    titles = {e.aggregate_id: e.data.title for e in _of(events, ev.ConversationCreated)}
    assert titles[conversation_id(CONNECTION, general)] == f"#general ({GUILD})"
    [done] = _of(events, ev.ConnectionBackfilled)
    assert (done.data.conversations, done.data.messages) == (2, 3)

    # Connected again: the log says it was done; no history is read or stored twice.
    reads = sum(1 for method, path in fake.requests if method == "GET" and path.endswith("/messages"))
    again = _session(store, fake, token)
    async with _running(again):
        await _until(lambda: again.state == "connected")
        await asyncio.sleep(0.3)
    assert sum(1 for method, path in fake.requests if method == "GET" and path.endswith("/messages")) == reads
    assert len(_of(await _events(store), ev.MessageReceived)) == 3


async def test_a_direct_message_is_a_direct_conversation_with_attachments(
    store: EventStore, fake: FakeDiscord, token: str
) -> None:
    dm = fake.dm_channel(ADA)
    image = {"filename": "engine.png", "content_type": "image/png", "size": 2048}
    fake.push_message(dm, ADA, "the engine, finally", attachments=[image])
    document = fake.push_message(
        dm, ADA, attachments=[{"filename": "notes.pdf", "content_type": "application/pdf", "size": 8}]
    )
    async with _running(_session(store, fake, token)):
        events = await _wait_for(store, _received(2))
    [created] = _of(events, ev.ConversationCreated)
    assert (created.data.kind, created.data.title, created.data.external_id) == ("direct", "Ada Lovelace", dm)
    with_image, with_document = (e.data for e in _of(events, ev.MessageReceived))
    assert with_image.text == "the engine, finally"
    [picture] = with_image.attachments
    assert (picture.kind, picture.mime, picture.size, picture.name) == (
        "image",
        "image/png",
        2048,
        "engine.png",
    )
    assert with_document.text == ""
    assert with_document.attachments == (
        ev.Attachment(
            kind="document",
            provider_file_id=document["attachments"][0]["url"],
            mime="application/pdf",
            size=8,
            name="notes.pdf",
        ),
    )


async def test_in_a_guild_the_agent_is_addressed_by_a_mention_or_a_reply(
    store: EventStore, fake: FakeDiscord, token: str, general: str
) -> None:
    bot = fake.bot_user(token)
    earlier = fake.push_message(general, bot, "I can help with that.")  # the bot's own: ignored
    fake.push_message(general, ADA, "lunch at noon?")
    mention = fake.push_message(general, CHARLES, f"<@{bot['id']}> book a table for two", mentions=[bot])
    fake.push_message(general, ADA, "yes, at the usual place", reply_to=earlier)
    other_bot = user(80351110224678999, "reminder", "Reminder Bot", bot=True)
    fake.push_message(general, other_bot, "Stand-up in 5 minutes")
    async with _running(_session(store, fake, token)):
        events = await _wait_for(store, _received(4))
    plain, mentioned, reply, from_bot = (e.data for e in _of(events, ev.MessageReceived))
    assert (plain.mentions_agent, mentioned.mentions_agent, reply.mentions_agent) == (False, True, True)
    assert mentioned.text == "@Moltbot book a table for two"
    assert mentioned.sender == ev.Sender(id=f"dc:{CHARLES['id']}", name="Charles Babbage")
    assert mentioned.provider_message_id == f"{general}:{mention['id']}"
    assert reply.reply_to_message_id == message_id(CONNECTION, general, earlier["id"])
    assert (from_bot.sender.is_bot, from_bot.mentions_agent) == (True, False)


async def test_edits_deletes_and_reactions_name_the_message(
    store: EventStore, fake: FakeDiscord, token: str, general: str
) -> None:
    message = fake.push_message(general, ADA, "see you on Fridey")
    edited = fake.push_edit(message, "see you on Friday")
    fake.push_reaction(message, CHARLES, "👍")
    fake.push_reaction(message, fake.bot_user(token), "👀")  # the bot's own: ignored
    fake.push_reaction(message, CHARLES, "👍", remove=True)
    fake.push_delete(message)
    session = _session(store, fake, token)
    async with _running(session):
        await _wait_for(store, lambda events: bool(_of(events, ev.MessageDeleted)))
        # The same edit and deletion again (Discord repeating itself) are stored once.
        fake.dispatch("MESSAGE_UPDATE", edited)
        fake.dispatch("MESSAGE_DELETE", {"id": message["id"], "channel_id": general})
        last = fake.last_seq(token)
        await _until(lambda: session.seq == last)
    events = await _events(store)
    ours = message_id(CONNECTION, general, message["id"])
    [edit] = _of(events, ev.MessageEdited)
    assert (edit.data.message_id, edit.data.text) == (ours, "see you on Friday")
    assert edit.data.edited_at == _at(edited["edited_timestamp"])
    [added] = _of(events, ev.ReactionAdded)
    [removed] = _of(events, ev.ReactionRemoved)
    expected = ev.ReactionData(message_id=ours, emoji="👍", sender_id=f"dc:{CHARLES['id']}")
    assert (added.data, removed.data) == (expected, expected)
    [deleted] = _of(events, ev.MessageDeleted)
    assert deleted.data.message_id == ours
    assert {e.aggregate_id for e in (edit, added, removed, deleted)} == {conversation_id(CONNECTION, general)}


async def test_the_same_message_dispatched_twice_is_stored_once(
    store: EventStore, fake: FakeDiscord, token: str, general: str
) -> None:
    message = fake.push_message(general, ADA, "only once, please")
    session = _session(store, fake, token)
    async with _running(session):
        await _wait_for(store, _received(1))
        fake.dispatch("MESSAGE_CREATE", message)
        last = fake.last_seq(token)
        await _until(lambda: session.seq == last)
    # A new session (a restart, with nothing remembered): Discord delivers the message once more.
    restarted = _session(store, fake, token)
    async with _running(restarted):
        await _until(lambda: restarted.state == "connected")
        fake.dispatch("MESSAGE_CREATE", message)
        last = fake.last_seq(token)
        await _until(lambda: restarted.seq == last)
    events = await _events(store)
    assert len(_of(events, ev.MessageReceived)) == 1
    assert len(_of(events, ev.ConversationCreated)) == 1
    assert len(fake.identifies) == 2


async def test_a_dropped_socket_is_resumed_with_the_last_seq_and_nothing_is_lost(
    store: EventStore, fake: FakeDiscord, token: str, general: str
) -> None:
    session = _session(store, fake, token)
    async with _running(session):
        fake.push_message(general, ADA, "first")
        await _wait_for(store, _received(1))
        session_id, seq_before = session.session_id, session.seq
        # The socket drops and Discord cannot be reached for a while; a message arrives meanwhile.
        fake.gateway_down = True
        fake.drop_connection()
        fake.push_message(general, CHARLES, "sent while you were away")
        await _until(lambda: session.state == "degraded")
        fake.gateway_down = False
        events = await _wait_for(store, _received(2))
        await _until(lambda: session.state == "connected")
        # A routine RECONNECT from Discord is resumed without a state change.
        fake.request_reconnect()
        await _until(lambda: len(fake.resumes) == 2)
        fake.push_message(general, ADA, "third")
        events = await _wait_for(store, _received(3))
    assert fake.resumes[0] == {"path": "/resume", "token": token, "session_id": session_id, "seq": seq_before}
    assert fake.resumes[1]["session_id"] == session_id
    assert len(fake.identifies) == 1
    texts = [e.data.text for e in _of(events, ev.MessageReceived)]
    assert texts == ["first", "sent while you were away", "third"]
    assert _states(events) == [
        ("connecting", "connecting"),
        ("connected", "ok"),
        ("degraded", "discord_unreachable"),
        ("connected", "ok"),
    ]


async def test_an_invalid_session_starts_a_new_one(
    store: EventStore, fake: FakeDiscord, token: str, general: str
) -> None:
    session = _session(store, fake, token)
    async with _running(session):
        await _until(lambda: session.state == "connected")
        first_session = session.session_id
        fake.invalidate_session(resumable=False)
        await _until(lambda: len(fake.identifies) == 2 and session.session_id != first_session)
        fake.push_message(general, ADA, "still there?")
        await _wait_for(store, _received(1))
    assert fake.resumes == []


async def test_a_revoked_token_asks_for_a_reconnect_and_stops_the_session(
    store: EventStore, fake: FakeDiscord, token: str
) -> None:
    session = _session(store, fake, token)
    async with _running(session) as task:
        await _until(lambda: session.state == "connected")
        fake.revoke(token)
        await asyncio.wait_for(asyncio.shield(task), 10)  # run() returns by itself
    events = await _events(store)
    assert _states(events) == [
        ("connecting", "connecting"),
        ("connected", "ok"),
        ("action_required", "token_revoked"),
    ]
    last = _of(events, ev.ConnectionStateChanged)[-1].data
    assert (last.message, last.action) == ("Discord no longer accepts this bot token", "reconnect")


async def test_a_bot_without_the_message_content_intent_is_told_how_to_fix_it(
    store: EventStore, fake: FakeDiscord
) -> None:
    token = fake.add_bot("quietbot", message_content=False)
    session = _session(store, fake, token, gateway_url=fake.gateway_url)
    await asyncio.wait_for(session.run(), 10)
    events = await _events(store)
    assert _states(events) == [("connecting", "connecting"), ("action_required", "intents_disallowed")]
    assert "Message Content Intent" in _of(events, ev.ConnectionStateChanged)[-1].data.message
    assert ("GET", "/gateway/bot") not in fake.requests  # the configured gateway was used


def test_normalize_ignores_what_is_not_conversation() -> None:
    bot_id = "1234"
    base = {"channel_id": "10", "guild_id": "20", "timestamp": "2024-05-01T12:00:00.000000+00:00"}
    joined = {**base, "id": "1", "type": 7, "content": "", "author": ADA}
    own = {**base, "id": "2", "type": 0, "content": "mine", "author": {"id": bot_id, "username": "moltbot"}}
    embed_only = {**base, "id": "3", "type": 0, "content": "", "author": ADA, "embeds": [{"title": "x"}]}
    unfurled = {**base, "id": "4", "content": "a link", "author": ADA, "edited_timestamp": None}
    typing = {"channel_id": "10", "user_id": ADA["id"], "timestamp": 1_700_000_000}
    for name, data in [
        ("MESSAGE_CREATE", joined),
        ("MESSAGE_CREATE", own),
        ("MESSAGE_CREATE", embed_only),
        ("MESSAGE_UPDATE", unfurled),
        ("TYPING_START", typing),
    ]:
        payload = {"op": 0, "t": name, "s": 5, "d": data}
        assert normalize(payload, tenant_id=TENANT, connection_id=CONNECTION, bot_user_id=bot_id) == []


# --- out ----------------------------------------------------------------------------------


def _command(text: str, to: str, *, message: str | None = None) -> SendMessage:
    message = message or ids.new_id(ids.MESSAGE)
    return SendMessage(
        command_id=f"send:{TENANT}:{message}",
        tenant_id=TENANT,
        conversation_id=conversation_id(CONNECTION, to),
        connection_id=CONNECTION,
        channel="discord",
        message_id=message,
        to=to,
        text=text,
        sender=ev.Sender(id="user:u_1", name="Ada"),
        requested_at=datetime.now(UTC),
        causation_id=ids.ulid(),
    )


@contextlib.asynccontextmanager
async def _connector(fake: FakeDiscord, token: str, **options: Any) -> AsyncIterator[DiscordConnector]:
    async def credentials(connection_id: str) -> Mapping[str, Any]:
        assert connection_id == CONNECTION
        return {"token": token}

    connector = DiscordConnector(credentials, api_base=fake.api_base, **options)
    try:
        yield connector
    finally:
        await connector.aclose()


async def test_send_posts_to_the_channel_once_and_returns_discords_id(
    fake: FakeDiscord, token: str, general: str
) -> None:
    async with _connector(fake, token) as connector:
        assert (connector.kind, connector.capabilities) == ("discord", DISCORD_CAPABILITIES)
        command = _command("Done: Friday at 10:00.", general)
        delivered = await connector.send(command)
        # The command delivered again (an ack lost): Discord knows the nonce, nothing is posted twice.
        assert await connector.send(command) == delivered
        assert await connector.typing(CONNECTION, general) is True
    [sent] = fake.sent
    assert (sent["token"], sent["channel_id"], sent["content"]) == (token, general, "Done: Friday at 10:00.")
    assert sent["nonce"] and len(sent["nonce"]) <= 25
    assert sent["allowed_mentions"] == {"parse": ["users"]}  # never @everyone or roles
    assert delivered == Delivered(
        provider_message_id=f"{general}:{sent['message_id']}", sent_at=_at(sent["message"]["timestamp"])
    )
    assert fake.typing == [{"token": token, "channel_id": general}]


async def test_a_long_reply_is_sent_as_parts_in_order(fake: FakeDiscord, token: str, general: str) -> None:
    words = [f"word{n}" for n in range(420)]
    text = " ".join(words)  # 2519 characters
    assert len(text) > 2500
    async with _connector(fake, token) as connector:
        delivered = await connector.send(_command(text, general))
    first, second = fake.sent
    assert all(len(part["content"]) <= 2000 for part in fake.sent)
    assert f"{first['content']} {second['content']}".split() == words
    assert first["nonce"] != second["nonce"]
    assert delivered.provider_message_id == f"{general}:{first['message_id']}"


async def test_discords_refusals_map_to_deferred_or_rejected(
    fake: FakeDiscord, token: str, general: str
) -> None:
    guild = fake.add_guild("Private Club", channels=("staff", "locked"))
    staff, locked = (str(channel["id"]) for channel in guild["channels"])
    dm_closed = fake.dm_channel(CHARLES)
    fake.forbid(locked, 50013, "Missing Permissions")
    fake.forbid(dm_closed, 50007, "Cannot send messages to this user")
    async with _connector(fake, token, max_retries=0) as connector:
        fake.rate_limit(CREATE_MESSAGE, retry_after=0.2)  # short: hikari waits it out itself
        await connector.send(_command("after a short wait", general))
        fake.rate_limit(CREATE_MESSAGE, retry_after=30)
        with pytest.raises(SendDeferred) as deferred:
            await connector.send(_command("too fast", staff))
        assert deferred.value.retry_after is not None
        assert 29 < deferred.value.retry_after < 31  # Discord's reset time, read back as a wait
        fake.fail(CREATE_MESSAGE, 502, "Bad Gateway")
        with pytest.raises(SendDeferred):
            await connector.send(_command("provider down", general))
        with pytest.raises(SendRejected) as forbidden:
            await connector.send(_command("hello?", locked))
        assert forbidden.value.code == "missing_permissions"
        with pytest.raises(SendRejected) as closed:
            await connector.send(_command("hello?", dm_closed))
        assert closed.value.code == "dm_closed"
        with pytest.raises(SendRejected) as gone:
            await connector.send(_command("anyone?", "999999999999999999"))
        assert gone.value.code == "channel_not_found"
        fake.revoke(token)
        with pytest.raises(SendRejected) as revoked:
            await connector.send(_command("still there?", general))
        assert revoked.value.code == "token_revoked"
    assert [sent["content"] for sent in fake.sent] == ["after a short wait"]


async def test_a_send_request_reaches_the_discord_channel_and_is_confirmed(
    stack: Stack, nc: Client, streams_spec: StreamsFile, fake: FakeDiscord, token: str, general: str
) -> None:
    telegram = streams_spec.consumer("connector-telegram").config
    consumer = {
        **telegram,
        "durable_name": "connector-discord",
        "description": "Commands for the Discord connector.",
        "filter_subject": "cmd.discord.>",
    }
    await apply_streams(nc, StreamsFile(streams=[], consumers=[ConsumerSpec("COMMANDS", consumer)]))
    store = stack.store
    fake.push_message(general, ADA, "What time is it in London?")
    async with _connector(fake, token) as connector, stack.projections([by_name("inbox")]):
        runtime = ConnectorRuntime(
            nc, connector, store=EventStore(nc, sealer=stack.store.sealer), max_deliver=3, backoff=(0.05,)
        )
        session = _session(store, fake, token)
        tasks = [
            asyncio.create_task(session.run()),
            asyncio.create_task(Outbox(nc, store=EventStore(nc)).run()),
            asyncio.create_task(runtime.run()),
        ]
        try:
            events = await _wait_for(store, _received(1))
            [created] = _of(events, ev.ConversationCreated)
            reply_id = ids.new_id(ids.MESSAGE)
            request = ev.new_event(
                ev.MessageSendRequested, tenant_id=TENANT, aggregate_id=created.aggregate_id, actor="user:u1",
                data=ev.MessageSendRequestedData(
                    message_id=reply_id, connection_id=CONNECTION, channel="discord",
                    to=created.data.external_id, text="It is 09:30 in London.",
                    sender=ev.Sender(id="user:u_1", name="Ada"),
                ),
            )  # fmt: skip
            await store.append(request)
            events = await _wait_for(store, lambda events: bool(_of(events, ev.MessageSent)))
            # Discord tells the bot of its own message; the session does not take it for a new one.
            echoed = fake.last_seq(token)
            await _until(lambda: session.seq == echoed)
            await stack.wait_caught_up(names=["inbox"])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    [sent] = fake.sent
    assert (sent["channel_id"], sent["content"]) == (general, "It is 09:30 in London.")
    [confirmed] = _of(events, ev.MessageSent)
    assert confirmed.data.message_id == reply_id
    assert confirmed.data.provider_message_id == f"{general}:{sent['message_id']}"
    assert confirmed.causation_id == request.id
    assert len(_of(await _events(store), ev.MessageReceived)) == 1
    async with pg_connection(stack.database_url) as conn:
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
