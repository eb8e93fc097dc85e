"""Commands: what connectors are asked to do, on ``cmd.<channel>.<connection>.<kind>``.

A command is not history: it is work, taken once from the COMMANDS work queue. The
history is the events around it — ``message.send_requested`` before, ``message.sent``
or ``message.send_failed`` after — so a command carries the id of the event it came
from (``causation_id``) and everything the connector needs without a lookup.

The outbox decides, purely, what a send request becomes: a command, or (when it sat
undelivered longer than ``SEND_EXPIRY``, e.g. a consumer created on an old log) a
failure, because a message sent hours late is worse than one reported as not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from domain import events as ev
from domain import subjects

SEND_MESSAGE = "send_message"
EDIT_MESSAGE = "edit_message"
SEND_EXPIRY = timedelta(minutes=15)

CommandKind = Literal["send_message", "edit_message", "start_login", "stop", "refresh_status"]


class SendMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    command_id: str  # also its Nats-Msg-Id: a re-dispatched request is queued once
    tenant_id: str
    conversation_id: str
    connection_id: str
    channel: str
    message_id: str
    to: str
    text: str
    sender: ev.Sender
    requested_at: datetime
    causation_id: str  # the message.send_requested event
    correlation_id: str | None = None
    reply_to_message_id: str | None = None
    agent_run_id: str | None = None

    @property
    def subject(self) -> str:
        return subjects.command_subject(self.channel, self.connection_id, SEND_MESSAGE)


class EditMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replace the text of a message we sent: the agent's reply growing as the model writes
    it, on channels whose capabilities include edits. Edits before the ``final`` one are
    best effort (a later one carries more text); the final one is retried and, once the
    provider accepts it, recorded as ``message.edited``."""

    command_id: str  # also its Nats-Msg-Id: "edit:<tenant>:<message>:<n>" or "…:final"
    tenant_id: str
    conversation_id: str
    connection_id: str
    channel: str
    message_id: str  # ours (message.sent names it)
    provider_message_id: str  # the provider's, from message.sent
    text: str
    final: bool
    requested_at: datetime
    causation_id: str  # the message the reply answers
    correlation_id: str | None = None

    @property
    def subject(self) -> str:
        return subjects.command_subject(self.channel, self.connection_id, EDIT_MESSAGE)


def edited_event(command: EditMessage, edited_at: datetime, actor: str) -> ev.MessageEdited:
    """The connector's confirmation of the final edit of a message we sent."""
    return ev.new_event(
        ev.MessageEdited,
        tenant_id=command.tenant_id,
        aggregate_id=command.conversation_id,
        actor=actor,
        causation_id=command.causation_id,
        correlation_id=command.correlation_id,
        data=ev.MessageEditedData(message_id=command.message_id, text=command.text, edited_at=edited_at),
    )


SendEvent = ev.MessageSendRequested | ev.MessageSendReleased


def release_event(request: ev.MessageSendRequested, *, at: datetime) -> ev.MessageSendReleased:
    """A scheduled request's time came: the same message, released to the outbox (keyed by
    the message, so a release repeated by another scheduler is stored once)."""
    return ev.new_event(
        ev.MessageSendReleased,
        tenant_id=request.tenant_id,
        aggregate_id=request.aggregate_id,
        actor="system:scheduler",
        causation_id=request.id,
        correlation_id=request.correlation_id or request.id,
        occurred_at=at,
        data=request.data,
    )


def reminder_event(
    tenant_id: str, conversation_id: str, follow_up_id: str, note: str | None, *, at: datetime
) -> ev.ReminderDue:
    """A follow-up's time came with its condition holding (keyed by the follow-up: once)."""
    return ev.new_event(
        ev.ReminderDue,
        tenant_id=tenant_id,
        aggregate_id=conversation_id,
        actor="system:scheduler",
        occurred_at=at,
        data=ev.ReminderDueData(follow_up_id=follow_up_id, note=note),
    )


def send_command(event: SendEvent) -> SendMessage:
    d = event.data
    return SendMessage(
        command_id=f"send:{event.tenant_id}:{d.message_id}",
        tenant_id=event.tenant_id,
        conversation_id=event.aggregate_id,
        connection_id=d.connection_id,
        channel=d.channel,
        message_id=d.message_id,
        to=d.to,
        text=d.text,
        sender=d.sender,
        requested_at=event.occurred_at,
        causation_id=event.id,
        correlation_id=event.correlation_id or event.id,
        reply_to_message_id=d.reply_to_message_id,
        agent_run_id=d.agent_run_id,
    )


def dispatch(event: SendEvent, now: datetime) -> SendMessage | ev.MessageSendFailed | None:
    """The command for a send request (or a scheduled one released), its failure when it is
    too old to send (counted from its scheduled time, if it had one), or None for a request
    scheduled for later: its release sends it."""
    if isinstance(event, ev.MessageSendRequested) and event.data.send_at is not None:
        return None
    if now - (event.data.send_at or event.occurred_at) > SEND_EXPIRY:
        return ev.new_event(
            ev.MessageSendFailed,
            tenant_id=event.tenant_id,
            aggregate_id=event.aggregate_id,
            actor="system:outbox",
            causation_id=event.id,
            correlation_id=event.correlation_id or event.id,
            data=ev.MessageSendFailedData(
                message_id=event.data.message_id,
                connection_id=event.data.connection_id,
                code="expired",
                reason=f"Not sent: it waited more than {SEND_EXPIRY.seconds // 60} minutes for its channel.",
            ),
        )
    return send_command(event)


def _outcome(event_cls: type[ev.E], command: SendMessage, actor: str, data: ev.Payload) -> ev.E:
    """An event on the command's conversation, caused by the send request it came from."""
    return ev.new_event(
        event_cls,
        tenant_id=command.tenant_id,
        aggregate_id=command.conversation_id,
        actor=actor,
        causation_id=command.causation_id,
        correlation_id=command.correlation_id,
        data=data,
    )


def sent_event(
    command: SendMessage, provider_message_id: str, sent_at: datetime, actor: str
) -> ev.MessageSent:
    """The connector's confirmation of a command the provider accepted."""
    return _outcome(
        ev.MessageSent,
        command,
        actor,
        ev.MessageSentData(
            message_id=command.message_id,
            connection_id=command.connection_id,
            channel=command.channel,
            provider_message_id=provider_message_id,
            text=command.text,
            sent_at=sent_at,
            sender=command.sender,
            agent_run_id=command.agent_run_id,
        ),
    )


def failed_event(command: SendMessage, code: str, reason: str, actor: str) -> ev.MessageSendFailed:
    return _outcome(
        ev.MessageSendFailed,
        command,
        actor,
        ev.MessageSendFailedData(
            message_id=command.message_id, connection_id=command.connection_id, code=code, reason=reason
        ),
    )
