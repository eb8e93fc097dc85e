"""The send path below the API: send requests in the log → outbox → COMMANDS → the
connector runtime → message.sent / message.send_failed, with retries, dead letters and
expiry. The provider side is a small connector written here (the contract's Protocol);
NATS, the outbox, the runtime and the read model are the real ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client

from adapters.channels.runtime import ConnectorRuntime
from adapters.nats.event_store import EventStore
from adapters.nats.outbox import Outbox
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import ids
from domain.commands import SendMessage, sent_event
from domain.connectors import Capabilities, Delivered, SendDeferred, SendRejected
from projections.registry import by_name
from tests.integration.conftest import Stack

TENANT = "t_outbox"
CONNECTION = "cn_webchat1"


class ScriptedProvider:
    """A webchat provider that answers each attempt as the test scripted it."""

    kind = "webchat"
    capabilities = Capabilities(max_text_length=4000)

    def __init__(self, answer: Callable[[int], Exception | None], *, only: str | None = None) -> None:
        self._answer = answer
        self._only = only  # script only the message with this text; deliver the others
        self.attempts: dict[str, int] = {}
        self.delivered: list[str] = []

    async def send(self, command: SendMessage) -> Delivered:
        attempt = self.attempts[command.message_id] = self.attempts.get(command.message_id, 0) + 1
        error = self._answer(attempt) if self._only in (None, command.text) else None
        if error is not None:
            raise error
        self.delivered.append(command.message_id)
        return Delivered(f"p-{command.message_id}", datetime.now(UTC))


@contextlib.asynccontextmanager
async def _running(
    stack: Stack, nc: Client, provider: ScriptedProvider, max_deliver: int = 3
) -> AsyncIterator[None]:
    runtime = ConnectorRuntime(
        nc,
        provider,
        store=EventStore(nc, sealer=stack.store.sealer),
        max_deliver=max_deliver,
        backoff=(0.05,),
    )
    tasks = [asyncio.create_task(Outbox(nc, store=EventStore(nc)).run()), asyncio.create_task(runtime.run())]
    async with stack.projections([by_name("inbox")]):
        yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _conversation(stack: Stack) -> str:
    conversation_id = ids.new_id(ids.CONVERSATION)
    created = ev.new_event(
        ev.ConversationCreated, tenant_id=TENANT, aggregate_id=conversation_id, actor="test",
        data=ev.ConversationCreatedData(
            channel="webchat", connection_id=CONNECTION, kind="direct", title="Visitor", external_id="v_1"
        ),
    )  # fmt: skip
    await stack.store.append(created)
    return conversation_id


async def _request(stack: Stack, conversation_id: str, text: str, *, age: timedelta = timedelta()) -> str:
    message_id = ids.new_id(ids.MESSAGE)
    request = ev.new_event(
        ev.MessageSendRequested, tenant_id=TENANT, aggregate_id=conversation_id, actor="user:u_1",
        occurred_at=datetime.now(UTC) - age,
        data=ev.MessageSendRequestedData(
            message_id=message_id, connection_id=CONNECTION, channel="webchat", to="v_1", text=text,
            sender=ev.Sender(id="user:u_1", name="Ada"),
        ),
    )  # fmt: skip
    await stack.store.append(request)
    return message_id


async def _status(stack: Stack, message_id: str, want: str) -> None:
    await stack.wait_caught_up(names=["inbox"])  # the read model exists
    async with pg_connection(stack.database_url) as conn:
        for _ in range(400):
            cur = await conn.execute(
                "SELECT status FROM rm_inbox.messages WHERE message_id = %s", (message_id,)
            )
            row = await cur.fetchone()
            if row is not None and row["status"] == want:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} is {row and row['status']}, not {want}")


async def _outcomes(stack: Stack, message_id: str) -> list[ev.Event]:
    return [
        stored.event
        async for stored in stack.store.read_events(subject=f"ev.{TENANT}.>")
        if getattr(stored.event.data, "message_id", None) == message_id
    ]


async def test_transient_failures_are_retried_and_the_message_is_sent_once(stack: Stack, nc: Client) -> None:
    provider = ScriptedProvider(lambda attempt: SendDeferred("rate limited", 0.05) if attempt < 3 else None)
    conversation = await _conversation(stack)
    async with _running(stack, nc, provider):
        message_id = await _request(stack, conversation, "third time lucky")
        await _status(stack, message_id, "sent")
    assert provider.attempts[message_id] == 3
    assert provider.delivered == [message_id]
    outcomes = await _outcomes(stack, message_id)
    assert [e.type for e in outcomes] == ["message.send_requested", "message.sent"]
    sent = outcomes[1]
    assert isinstance(sent, ev.MessageSent)
    assert sent.data.provider_message_id == f"p-{message_id}"
    assert sent.causation_id == outcomes[0].id


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (lambda attempt: SendRejected("chat_gone", "The visitor closed the chat."), "chat_gone"),
        (lambda attempt: SendDeferred("provider down"), "gave_up"),
        (lambda attempt: RuntimeError("bug in the provider library"), "gave_up"),
    ],
)
async def test_a_send_that_cannot_succeed_is_reported_and_dead_lettered(
    stack: Stack, nc: Client, answer: Callable[[int], Exception], code: str
) -> None:
    provider = ScriptedProvider(answer, only="will not arrive")
    conversation = await _conversation(stack)
    async with _running(stack, nc, provider):
        doomed = await _request(stack, conversation, "will not arrive")
        await _status(stack, doomed, "failed")
        fine = await _request(stack, conversation, "after the failure")  # the runtime goes on
        await _status(stack, fine, "sent")
    assert provider.attempts[doomed] == (1 if code == "chat_gone" else 3)
    failed = (await _outcomes(stack, doomed))[-1]
    assert isinstance(failed, ev.MessageSendFailed)
    assert failed.data.code == code
    js = nc.jetstream()
    letter = await js.get_last_msg("DLQ", "dlq.connector-webchat.send_failed")
    assert letter.headers is not None
    assert letter.headers["Moltbot-Origin-Stream"] == "COMMANDS"
    assert json.loads(letter.data or b"{}")["message_id"] == doomed
    assert provider.delivered == [fine]


async def test_a_stale_request_fails_instead_of_being_sent_late(stack: Stack, nc: Client) -> None:
    provider = ScriptedProvider(lambda attempt: None)
    conversation = await _conversation(stack)
    stale = await _request(stack, conversation, "hours ago", age=timedelta(hours=3))
    async with _running(stack, nc, provider):
        fresh = await _request(stack, conversation, "just now")
        await _status(stack, stale, "failed")
        await _status(stack, fresh, "sent")
    assert stale not in provider.attempts
    failed = (await _outcomes(stack, stale))[-1]
    assert isinstance(failed, ev.MessageSendFailed)
    assert failed.data.code == "expired"


async def test_a_malformed_command_is_dead_lettered_and_the_runtime_goes_on(stack: Stack, nc: Client) -> None:
    provider = ScriptedProvider(lambda attempt: None)
    conversation = await _conversation(stack)
    js = nc.jetstream()
    await js.publish(f"cmd.webchat.{CONNECTION}.send_message", b'{"not": "a command"}')
    await js.publish(f"cmd.webchat.{CONNECTION}.dance", b"{}")
    async with _running(stack, nc, provider):
        message_id = await _request(stack, conversation, "still works")
        await _status(stack, message_id, "sent")
    malformed = await js.get_last_msg("DLQ", "dlq.connector-webchat.malformed")
    assert malformed.headers is not None
    assert "dance" in malformed.headers["Moltbot-Error"]
    info = await js.stream_info("DLQ", subjects_filter="dlq.connector-webchat.malformed")
    assert info.state.messages == 2
    assert provider.delivered == [message_id]


async def test_a_slow_provider_keeps_its_command_and_sends_once(stack: Stack, nc: Client) -> None:
    started: list[str] = []

    class SlowProvider(ScriptedProvider):
        async def send(self, command: SendMessage) -> Delivered:
            started.append(command.message_id)
            await asyncio.sleep(7)  # longer than the consumer's ack wait (its first backoff step, 5 s)
            return await super().send(command)

    provider = SlowProvider(lambda attempt: None)
    conversation = await _conversation(stack)
    runtime = ConnectorRuntime(
        nc, provider, store=EventStore(nc, sealer=stack.store.sealer)
    )  # the consumer as streams.yaml declares it
    tasks = [asyncio.create_task(Outbox(nc, store=EventStore(nc)).run()), asyncio.create_task(runtime.run())]
    try:
        async with stack.projections([by_name("inbox")]):
            message_id = await _request(stack, conversation, "worth the wait")
            await _status(stack, message_id, "sent")
            await asyncio.sleep(1)  # a redelivery (had the command been lost) would start now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert started == [message_id]
    assert provider.delivered == [message_id]


async def test_a_command_delivered_again_after_its_confirmation_was_recorded_is_not_sent_twice(
    stack: Stack, nc: Client
) -> None:
    """The connector recorded ``message.sent`` and died before acking (here: the first
    attempt records it, then fails as a crash would): the command comes back, the runtime
    finds the confirmation in the log and acks without asking the provider again."""

    class DiesAfterRecording(ScriptedProvider):
        async def send(self, command: SendMessage) -> Delivered:
            delivered = await super().send(command)
            if self.attempts[command.message_id] == 1:
                sent = sent_event(
                    command, delivered.provider_message_id, delivered.sent_at, "connector:webchat"
                )
                await stack.store.append(sent)
                raise RuntimeError("the process died before its ack")
            return delivered

    provider = DiesAfterRecording(lambda attempt: None)
    conversation = await _conversation(stack)
    async with _running(stack, nc, provider):
        message_id = await _request(stack, conversation, "only once, please")
        await _status(stack, message_id, "sent")
        await asyncio.sleep(0.5)  # the redelivery (backoff 0.05 s) has come and gone
    assert provider.attempts[message_id] == 1  # never asked again
    assert [e.type for e in await _outcomes(stack, message_id)] == ["message.send_requested", "message.sent"]
