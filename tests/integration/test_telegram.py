"""The Telegram connector end to end: the real aiogram client against a fake Bot API on
127.0.0.1 (tests/fakes/telegram_api.py), with a real nats-server and PostgreSQL.

In: updates become conversation.created / message.received / message.edited with ids
derived from Telegram's, a repeated update is stored once, and the connection's health
is reported (connected, degraded, action_required when the token is revoked).
Out: sends go to the bot's chat, and Telegram's refusals map onto the contract's
SendDeferred / SendRejected; through the outbox and runtime a send request ends as
message.sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.client import Client

from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.errors import TokenRejected
from adapters.channels.registry import SessionEnv
from adapters.channels.runtime import ConnectorRuntime
from adapters.channels.telegram import CAPABILITIES as TELEGRAM_CAPABILITIES
from adapters.channels.telegram.client import BotIdentity, validate_token
from adapters.channels.telegram.connector import TelegramConnector
from adapters.channels.telegram.normalize import conversation_id, message_id, normalize
from adapters.channels.telegram.session import TelegramSession
from adapters.nats.event_store import EventStore
from adapters.nats.outbox import Outbox
from adapters.nats.streams import ConsumerSpec, StreamsFile, apply_streams
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import ids
from domain.commands import SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected
from projections.registry import by_name
from tests.fakes.telegram_api import ADA, CHARLES, FakeTelegram, fake_telegram, group_chat, private_chat
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

TENANT = "t_telegram"
CONNECTION = "cn_telegram1"
BOT = "moltbot_test_bot"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as server:
        yield server


@pytest.fixture
def token(fake: FakeTelegram) -> str:
    return fake.add_bot(BOT, "Moltbot")


def _session(store: EventStore, fake: FakeTelegram, token: str) -> TelegramSession:
    endpoints = ProviderEndpoints(telegram_api_base=fake.base_url)
    return TelegramSession(
        SessionEnv(store, TENANT, CONNECTION, {"token": token}, endpoints, media=None),
        poll_timeout=1,
        first_backoff=0.05,
    )


async def _events(store: EventStore) -> list[ev.Event]:
    return await tenant_events(store, TENANT)


async def _wait_for(
    store: EventStore, check: Callable[[list[ev.Event]], bool], timeout: float = 10.0
) -> list[ev.Event]:
    return await wait_for_events(store, TENANT, check, timeout)


async def test_validate_token_names_the_bot_and_refuses_a_bad_token(fake: FakeTelegram, token: str) -> None:
    identity = await validate_token(token, api_base=fake.base_url)
    assert identity == BotIdentity(id=int(token.split(":")[0]), username=BOT, display_name="Moltbot")
    with pytest.raises(TokenRejected, match="Telegram does not accept this bot token"):
        await validate_token("123456:not-a-token-telegram-issued", api_base=fake.base_url)
    with pytest.raises(TokenRejected, match="not a Telegram bot token"):
        await validate_token("hello world", api_base=fake.base_url)
    fake.revoke(token)
    with pytest.raises(TokenRejected):
        await validate_token(token, api_base=fake.base_url)


# --- in -----------------------------------------------------------------------------------


async def test_a_private_message_becomes_a_conversation_and_a_message(
    store: EventStore, fake: FakeTelegram, token: str
) -> None:
    update = fake.push_message(private_chat(ADA), ADA, "Can you move my dentist appointment?")
    session = _session(store, fake, token)
    async with _running(session):
        events = await _wait_for(store, _received(1))
        await _until(lambda: session.offset == update["update_id"] + 1)
    chat_id = ADA["id"]
    conversation = conversation_id(CONNECTION, chat_id)
    assert conversation == ids.stable_id("c", f"telegram:{CONNECTION}:{chat_id}")
    [created] = _of(events, ev.ConversationCreated)
    assert created.aggregate_id == conversation
    assert created.actor == f"connector:telegram:{CONNECTION}"
    assert created.data == ev.ConversationCreatedData(
        channel="telegram",
        connection_id=CONNECTION,
        kind="direct",
        title="Ada Lovelace",
        external_id="5551234",
    )
    [received] = _of(events, ev.MessageReceived)
    assert received.aggregate_id == conversation
    provider_id = f"{chat_id}:{update['message']['message_id']}"
    data = received.data
    assert data.provider_message_id == provider_id
    assert data.message_id == ids.stable_id("m", f"telegram:{CONNECTION}:{provider_id}")
    assert data.sender == ev.Sender(id="tg:5551234", name="Ada Lovelace", is_bot=False)
    assert data.text == "Can you move my dentist appointment?"
    assert data.sent_at == datetime.fromtimestamp(update["message"]["date"], UTC)
    assert (data.attachments, data.reply_to_message_id, data.mentions_agent) == ((), None, False)
    assert _states(events) == [("connecting", "connecting"), ("connected", "ok")]
    [connected] = _of(events, ev.ConnectionStateChanged)[1:]
    assert connected.aggregate_id == CONNECTION
    assert connected.data.message == f"Connected to Telegram as @{BOT}"


async def test_an_update_delivered_again_is_stored_once(
    store: EventStore, fake: FakeTelegram, token: str
) -> None:
    update = fake.push_message(private_chat(ADA), ADA, "only once, please")
    session = _session(store, fake, token)
    async with _running(session):
        await _wait_for(store, _received(1))
        # Telegram delivers the same message again under a new update id.
        again = fake.push_update({"message": update["message"]})
        await _until(lambda: session.offset == again["update_id"] + 1)
    # A crash before the offset was confirmed: the next session gets the update again.
    fake.push_update(update)
    restarted = _session(store, fake, token)
    async with _running(restarted):
        await _until(lambda: restarted.offset == update["update_id"] + 1)
        await _until(lambda: restarted.state == "connected")
    events = await _events(store)
    assert len(_of(events, ev.MessageReceived)) == 1
    assert len(_of(events, ev.ConversationCreated)) == 1


async def test_in_a_group_the_agent_is_mentioned_by_name_or_by_a_reply(
    store: EventStore, fake: FakeTelegram, token: str
) -> None:
    group = group_chat()
    bot_user = fake.valid_tokens[token]
    earlier = fake.message(group, bot_user, "I can help with that.")  # the bot's own message
    fake.push_message(group, ADA, "lunch at noon?")
    fake.push_message(group, CHARLES, f"@{BOT} book a table for two")
    fake.push_message(group, ADA, "yes, at the usual place", reply_to=earlier)
    async with _running(_session(store, fake, token)):
        events = await _wait_for(store, _received(3))
    [created] = _of(events, ev.ConversationCreated)
    assert (created.data.kind, created.data.title, created.data.external_id) == (
        "group",
        "Analytical Engine Club",
        str(group["id"]),
    )
    plain, mention, reply = (e.data for e in _of(events, ev.MessageReceived))
    assert (plain.mentions_agent, mention.mentions_agent, reply.mentions_agent) == (False, True, True)
    assert mention.sender == ev.Sender(id="tg:5559876", name="Charles Babbage")
    assert reply.reply_to_message_id == message_id(CONNECTION, group["id"], earlier["message_id"])


async def test_media_arrive_as_attachments_and_edits_as_message_edited(
    store: EventStore, fake: FakeTelegram, token: str
) -> None:
    chat = private_chat(ADA)
    photo = fake.push_message(chat, ADA, caption="the engine, finally", photo=True)
    document = fake.push_message(
        chat, ADA, document={"file_name": "notes.pdf", "mime_type": "application/pdf", "content": b"%PDF-1.7"}
    )
    text = fake.push_message(chat, ADA, "see you on Fridey")
    edit = fake.push_edit(text["message"], "see you on Friday")
    session = _session(store, fake, token)
    async with _running(session):
        await _wait_for(store, lambda events: bool(_of(events, ev.MessageEdited)))
        # The same edit again (a crash before its offset moved) is stored once.
        again = fake.push_update({"edited_message": edit["edited_message"]})
        await _until(lambda: session.offset == again["update_id"] + 1)
    events = await _events(store)
    with_photo, with_document, _ = (e.data for e in _of(events, ev.MessageReceived))
    largest = photo["message"]["photo"][-1]
    assert with_photo.text == "the engine, finally"
    assert with_photo.attachments == (
        ev.Attachment(
            kind="image", provider_file_id=largest["file_id"], mime="image/jpeg", size=largest["file_size"]
        ),
    )
    doc = document["message"]["document"]
    assert with_document.text == ""
    assert with_document.attachments == (
        ev.Attachment(
            kind="document", provider_file_id=doc["file_id"], mime="application/pdf", size=8, name="notes.pdf"
        ),
    )
    [edited] = _of(events, ev.MessageEdited)
    assert edited.data.message_id == message_id(CONNECTION, ADA["id"], text["message"]["message_id"])
    assert edited.data.text == "see you on Friday"
    assert edited.data.edited_at == datetime.fromtimestamp(edit["edited_message"]["edit_date"], UTC)


async def test_a_revoked_token_asks_for_a_reconnect_and_stops_the_session(
    store: EventStore, fake: FakeTelegram, token: str
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
    assert (last.message, last.action) == ("Telegram no longer accepts this bot token", "reconnect")


async def test_an_outage_is_reported_once_as_degraded_then_connected_again(
    store: EventStore, fake: FakeTelegram, token: str
) -> None:
    fake.unavailable = True
    session = _session(store, fake, token)
    async with _running(session):
        await _until(lambda: session.state == "degraded")
        failed_polls = len(fake.requests)
        await _until(lambda: len(fake.requests) >= failed_polls + 3)  # retried with backoff
        fake.unavailable = False
        await _until(lambda: session.state == "connected")
        fake.push_message(private_chat(ADA), ADA, "are you back?")
        events = await _wait_for(store, _received(1))
    assert _states(events) == [
        ("connecting", "connecting"),
        ("degraded", "telegram_unreachable"),
        ("connected", "ok"),
    ]


def test_normalize_ignores_updates_that_are_not_messages() -> None:
    member_joined = {
        "update_id": 1,
        "message": {
            "message_id": 7,
            "date": 1_700_000_000,
            "chat": group_chat(),
            "from": ADA,
            "new_chat_members": [CHARLES],
        },
    }
    callback = {"update_id": 2, "callback_query": {"id": "1", "from": ADA, "chat_instance": "x", "data": "y"}}
    for update in (member_joined, callback):
        assert normalize(update, tenant_id=TENANT, connection_id=CONNECTION, bot_username=BOT) == []


# --- out ----------------------------------------------------------------------------------


def _command(text: str, to: int = ADA["id"]) -> SendMessage:
    message = ids.new_id(ids.MESSAGE)
    return SendMessage(
        command_id=f"send:{TENANT}:{message}",
        tenant_id=TENANT,
        conversation_id=conversation_id(CONNECTION, to),
        connection_id=CONNECTION,
        channel="telegram",
        message_id=message,
        to=str(to),
        text=text,
        sender=ev.Sender(id="user:u_1", name="Ada"),
        requested_at=datetime.now(UTC),
        causation_id=ids.ulid(),
    )


@contextlib.asynccontextmanager
async def _connector(fake: FakeTelegram, token: str) -> AsyncIterator[TelegramConnector]:
    async def credentials(connection_id: str) -> Mapping[str, Any]:
        assert connection_id == CONNECTION
        return {"token": token}

    connector = TelegramConnector(credentials, api_base=fake.base_url)
    try:
        yield connector
    finally:
        await connector.aclose()


async def test_send_posts_to_the_chat_and_returns_telegrams_id(fake: FakeTelegram, token: str) -> None:
    fake.add_chat(private_chat(ADA))
    async with _connector(fake, token) as connector:
        assert (connector.kind, connector.capabilities) == ("telegram", TELEGRAM_CAPABILITIES)
        delivered = await connector.send(_command("Done: Friday at 10:00."))
        assert await connector.typing(CONNECTION, ADA["id"]) is True
    [sent] = fake.sent
    assert (sent["token"], sent["chat_id"], sent["text"]) == (token, ADA["id"], "Done: Friday at 10:00.")
    assert delivered == Delivered(
        provider_message_id=f"{ADA['id']}:{sent['message_id']}",
        sent_at=datetime.fromtimestamp(sent["message"]["date"], UTC),
    )
    assert fake.chat_actions == [{"token": token, "chat_id": ADA["id"], "action": "typing"}]


async def test_telegrams_refusals_map_to_deferred_or_rejected(fake: FakeTelegram, token: str) -> None:
    fake.add_chat(private_chat(ADA))
    fake.add_chat(private_chat(CHARLES))
    fake.block(CHARLES["id"])
    async with _connector(fake, token) as connector:
        fake.rate_limit("sendMessage", retry_after=3)
        with pytest.raises(SendDeferred) as deferred:
            await connector.send(_command("too fast"))
        assert deferred.value.retry_after == 3
        fake.fail("sendMessage", 500, "Internal Server Error")
        with pytest.raises(SendDeferred):
            await connector.send(_command("provider down"))
        with pytest.raises(SendRejected) as blocked:
            await connector.send(_command("hello?", to=CHARLES["id"]))
        assert blocked.value.code == "bot_blocked"
        with pytest.raises(SendRejected) as gone:
            await connector.send(_command("anyone?", to=-1009999999999))
        assert gone.value.code == "chat_not_found"
        fake.revoke(token)
        with pytest.raises(SendRejected) as revoked:
            await connector.send(_command("still there?"))
        assert revoked.value.code == "token_revoked"
    assert fake.sent == []


async def test_a_send_request_reaches_the_telegram_chat_and_is_confirmed(
    stack: Stack, nc: Client, streams_spec: StreamsFile, fake: FakeTelegram, token: str
) -> None:
    webchat = streams_spec.consumer("connector-webchat").config
    consumer = {
        **webchat,
        "durable_name": "connector-telegram",
        "description": "Commands for the Telegram connector.",
        "filter_subject": "cmd.telegram.>",
    }
    await apply_streams(nc, StreamsFile(streams=[], consumers=[ConsumerSpec("COMMANDS", consumer)]))
    store = stack.store
    fake.push_message(private_chat(ADA), ADA, "What time is it in London?")
    async with _connector(fake, token) as connector, stack.projections([by_name("inbox")]):
        runtime = ConnectorRuntime(
            nc, connector, store=EventStore(nc, sealer=stack.store.sealer), max_deliver=3, backoff=(0.05,)
        )
        tasks = [
            asyncio.create_task(_session(store, fake, token).run()),
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
                    message_id=reply_id, connection_id=CONNECTION, channel="telegram",
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
    assert (sent["chat_id"], sent["text"]) == (ADA["id"], "It is 09:30 in London.")
    [confirmed] = _of(events, ev.MessageSent)
    assert confirmed.data.message_id == reply_id
    assert confirmed.data.provider_message_id == f"{ADA['id']}:{sent['message_id']}"
    assert confirmed.causation_id == request.id
    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute(
            "SELECT direction, status, provider_message_id FROM rm_inbox.messages"
            " WHERE conversation_id = %s ORDER BY seq",
            (created.aggregate_id,),
        )
        rows = [tuple(row.values()) for row in await cur.fetchall()]
    inbound = f"{ADA['id']}:{sent['message_id'] - 1}"
    assert rows == [("in", "received", inbound), ("out", "sent", confirmed.data.provider_message_id)]
