"""The runtime every connector shares: take commands from the COMMANDS work queue, let
the connector talk to its provider, and record the outcome as events.

- A send the provider accepts is confirmed with ``message.sent`` (then the command is
  acked). Its dedupe key is the message id, so a confirmation repeated after a crash is
  stored once.
- A transient failure (``SendDeferred``, or an unexpected error) is retried: nak with
  the provider's retry-after, or the consumer's backoff step.
- A permanent failure (``SendRejected``), or the last allowed delivery failing, records
  ``message.send_failed`` (the inbox shows it) and a dead letter
  (``dlq.connector-<kind>.send_failed``), and terminates the command.
- A command delivered again (the connector died after the provider took it) is first
  looked up in the log: if its ``message.sent`` is there, it is acked without a second
  send. A process that dies between the provider's answer and that record can still send
  twice where the provider has no idempotency key (docs/connectors.md).
- A command that cannot be read is dead-lettered as ``malformed``; the runtime goes on.
- ``edit_message`` (the agent's reply growing in place, for connectors that edit): an edit
  before the final one is tried once (the next one carries more text); the final one is
  retried like a send and, once the provider accepts it, recorded as ``message.edited``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from adapters.nats.consume import consume
from adapters.nats.dead_letters import DeadLetter, DeadLetters
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev
from domain import subjects
from domain.commands import (
    EDIT_MESSAGE,
    SEND_MESSAGE,
    EditMessage,
    SendMessage,
    edited_event,
    failed_event,
    sent_event,
)
from domain.connectors import Connector, EditingConnector, SendDeferred, SendRejected
from domain.ports import EventStore

log = structlog.get_logger()

COMMANDS_STREAM = "COMMANDS"
DEFAULT_BACKOFF = (5.0, 15.0, 60.0, 300.0)
PROGRESS_EVERY = 2.0  # seconds between "still working" signals while a provider is slow


class _ConfirmedId(msgspec.Struct):
    message_id: str


class _Confirmation(msgspec.Struct):
    """Just enough of a stored ``message.sent`` to name its message (never sealed)."""

    data: _ConfirmedId


def consumer_name(kind: str) -> str:
    return f"connector-{kind}"


async def _keep_in_progress(msg: Msg) -> None:
    """Extend the ack deadline while the provider takes its time (a command in flight is ours)."""
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        await msg.in_progress()
        raise_if_cancelled()  # a publish can swallow the cancellation


class ConnectorRuntime:
    def __init__(
        self,
        nc: Client,
        connector: Connector,
        *,
        store: EventStore,
        max_deliver: int = 5,
        backoff: tuple[float, ...] = DEFAULT_BACKOFF,
    ) -> None:
        self._nc = nc
        self.connector = connector
        self.consumer = consumer_name(connector.kind)
        self._max_deliver = max_deliver
        self._backoff = backoff or DEFAULT_BACKOFF
        self._store = store
        self._dead_letters = DeadLetters(nc.jetstream(timeout=10))
        self._actor = f"connector:{connector.kind}"

    async def run(self) -> None:
        log.info("connector_running", kind=self.connector.kind, consumer=self.consumer)
        await consume(self._nc, COMMANDS_STREAM, self.consumer, self.handle, batch=20)

    async def handle(self, msg: Msg) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        try:
            if kind == EDIT_MESSAGE and self.connector.capabilities.edits:
                edit = msgspec.json.decode(await self._store.open(msg.data), type=EditMessage)
                await self._edit(msg, edit)
                return
            if kind != SEND_MESSAGE:
                raise ValueError(f"{self.connector.kind} connectors do not understand {kind!r} commands")
            command = msgspec.json.decode(await self._store.open(msg.data), type=SendMessage)
        except (ValueError, msgspec.DecodeError) as exc:  # msgspec.ValidationError is a ValueError
            await self._dead_letter(msg, "malformed", str(exc))
            await msg.term()
            return
        deliveries = msg.metadata.num_delivered
        if deliveries > 1 and await self._recorded_as_sent(command):
            log.info("send_already_recorded", message_id=command.message_id, attempt=deliveries)
            await msg.ack()
            return
        progress = asyncio.create_task(_keep_in_progress(msg))
        try:
            delivered = await self.connector.send(command)
        except SendRejected as exc:
            await self._fail(msg, command, exc.code, exc.reason)
            return
        except Exception as exc:  # a provider outage, a timeout, a bug: retry, then give up
            retry_after = exc.retry_after if isinstance(exc, SendDeferred) else None
            reason = exc.reason if isinstance(exc, SendDeferred) else repr(exc)
            if self._max_deliver > 0 and deliveries >= self._max_deliver:
                await self._fail(msg, command, "gave_up", f"Not sent after {deliveries} attempts: {reason}")
                return
            delay = (
                retry_after
                if retry_after is not None
                else self._backoff[min(deliveries, len(self._backoff)) - 1]
            )
            log.warning(
                "send_retrying", message_id=command.message_id, attempt=deliveries, delay=delay, error=reason
            )
            await msg.nak(delay=delay)
            return
        finally:
            progress.cancel()
        sent = sent_event(command, delivered.provider_message_id, delivered.sent_at, self._actor)
        await self._store.append(sent)
        await msg.ack()

    async def _recorded_as_sent(self, command: SendMessage) -> bool:
        """Whether the log has this message's ``message.sent`` (read only for a command
        delivered again, from its conversation's confirmations)."""
        subject = subjects.event_subject(
            command.tenant_id, ev.CONVERSATION, command.conversation_id, ev.MessageSent.TYPE
        )
        async for record in self._store.read(subject=subject):
            if msgspec.json.decode(record.data, type=_Confirmation).data.message_id == command.message_id:
                return True
        return False

    async def _edit(self, msg: Msg, command: EditMessage) -> None:
        connector: EditingConnector = self.connector  # type: ignore[assignment]  # its capabilities say so
        deliveries = msg.metadata.num_delivered
        try:
            await connector.edit(command)
        except Exception as exc:
            retry_after = exc.retry_after if isinstance(exc, SendDeferred) else None
            reason = exc.reason if isinstance(exc, SendRejected | SendDeferred) else repr(exc)
            retry = command.final and not isinstance(exc, SendRejected)
            if retry and (self._max_deliver <= 0 or deliveries < self._max_deliver):
                delay = (
                    retry_after
                    if retry_after is not None
                    else self._backoff[min(deliveries, len(self._backoff)) - 1]
                )
                log.warning(
                    "edit_retrying",
                    message_id=command.message_id,
                    attempt=deliveries,
                    delay=delay,
                    error=reason,
                )
                await msg.nak(delay=delay)
                return
            # An edit on the way is superseded by the next; a final one that cannot be made
            # leaves the message as the provider has it (the log says what was sent).
            log.warning("edit_dropped", message_id=command.message_id, final=command.final, error=reason)
            if command.final:
                await self._dead_letter(msg, "edit_failed", reason)
            await msg.term()
            return
        if command.final:
            await self._store.append(edited_event(command, datetime.now(UTC), self._actor))
        await msg.ack()

    async def _fail(self, msg: Msg, command: SendMessage, code: str, reason: str) -> None:
        await self._store.append(failed_event(command, code, reason, self._actor))
        await self._dead_letter(msg, "send_failed", f"{code}: {reason}")
        await msg.term()
        log.warning("send_failed", message_id=command.message_id, code=code, reason=reason)

    async def _dead_letter(self, msg: Msg, reason: str, error: str) -> None:
        letter = DeadLetter(
            COMMANDS_STREAM, msg.metadata.sequence.stream, msg.subject, self.consumer, reason, error, msg.data
        )
        await self._dead_letters.publish(letter)
