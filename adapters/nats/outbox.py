"""The outbox: ``message.send_requested`` events (and ``message.send_released``, a scheduled
one whose time came; a request with ``send_at`` waits for it) become
``cmd.<channel>.<connection>.send_message`` commands on the COMMANDS work queue.

Reading the log (durable consumer ``outbox``, streams.yaml) rather than publishing the
command beside the event means a request, once in the log, is always dispatched, even
if its writer dies right after appending it. The command's ``Nats-Msg-Id`` is derived
from the message id, so a request redelivered to the outbox is queued once. Other
event types are skipped by subject, without decoding.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from adapters.nats.consume import consume
from adapters.nats.dead_letters import DeadLetter, DeadLetters
from adapters.nats.event_store import EVENTS_STREAM
from adapters.nats.pull import ack_position
from domain import events as ev
from domain.commands import EditMessage, SendMessage, dispatch
from domain.errors import InvalidEvent
from domain.ports import EventStore

log = structlog.get_logger()

CONSUMER = "outbox"
_SENDS = tuple("." + cls.TYPE.replace(".", "_") for cls in (ev.MessageSendRequested, ev.MessageSendReleased))


class CommandQueue:
    """Puts commands on the COMMANDS work queue, each once (its ``Nats-Msg-Id``: the command id)."""

    def __init__(self, nc: Client) -> None:
        self._js = nc.jetstream(timeout=10)

    async def put(self, command: SendMessage | EditMessage) -> None:
        await self._js.publish(
            command.subject, msgspec.json.encode(command), headers={"Nats-Msg-Id": command.command_id}
        )


class Outbox:
    def __init__(self, nc: Client, *, store: EventStore) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=10)
        self._commands = CommandQueue(nc)
        self._store = store
        self._codec = store.codec
        self._dead_letters = DeadLetters(self._js)
        self.dispatched = 0

    async def run(self) -> None:
        log.info("outbox_running", consumer=CONSUMER)
        await consume(self._nc, EVENTS_STREAM, CONSUMER, self.handle, batch=500)

    async def handle(self, msg: Msg) -> None:
        if msg.subject.endswith(_SENDS):
            await self._dispatch(msg)
        await msg.ack()

    async def _dispatch(self, msg: Msg) -> None:
        try:
            event = self._codec.decode(msg.data)
            if not isinstance(event, ev.MessageSendRequested | ev.MessageSendReleased):
                raise InvalidEvent("invalid", f"a {event.type} event on a send request subject")
        except InvalidEvent as exc:
            seq, _ = ack_position(msg.reply)
            letter = DeadLetter(EVENTS_STREAM, seq, msg.subject, CONSUMER, exc.reason, str(exc), msg.data)
            await self._dead_letters.publish(letter)
            return
        outcome = dispatch(event, datetime.now(UTC))
        if outcome is None:
            return  # scheduled: its release (message.send_released) is sent
        if isinstance(outcome, SendMessage):
            await self._commands.put(outcome)
            self.dispatched += 1
        else:
            await self._store.append(outcome)
            log.warning("send_request_expired", message_id=event.data.message_id, event_id=event.id)
