"""A website visitor's message as canonical events (pure): the visitor's conversation
(``conversation.created``, one per visitor token) and ``message.received`` with
``webchat:<connection>:<provider id>`` as dedupe key. A visitor is known by a random
token the widget keeps; the inbox only ever sees a one-way id derived from it."""

from __future__ import annotations

from datetime import datetime

from adapters.channels.normalize import Origin, connection_actor
from adapters.channels.webchat import KIND
from domain import events as ev
from domain import ids


def visitor_id(connection_id: str, visitor_token: str) -> str:
    return ids.stable_id("v", f"{connection_id}:{visitor_token}")


def conversation_id(connection_id: str, visitor_token: str) -> str:
    return ids.stable_id(
        ids.CONVERSATION, f"{KIND}:{connection_id}:{visitor_id(connection_id, visitor_token)}"
    )


def actor(connection_id: str) -> str:
    return connection_actor(KIND, connection_id)


def conversation_created(
    *,
    tenant_id: str,
    connection_id: str,
    visitor_token: str,
    name: str,
    now: datetime | None = None,
    preview: bool = False,
) -> ev.ConversationCreated:
    """The visitor's conversation: direct, titled with their name, external id their visitor
    id; ``preview``: the owner's own "Try it" chat."""
    return Origin(KIND, tenant_id, connection_id, now).conversation_created(
        conversation_id(connection_id, visitor_token),
        "direct",
        "Try it (you)" if preview else f"{name} (website)",
        visitor_id(connection_id, visitor_token),
        preview=preview,
    )


def message_received(
    *,
    tenant_id: str,
    connection_id: str,
    visitor_token: str,
    name: str,
    text: str,
    client_message_id: str,
    sent_at: datetime,
    now: datetime | None = None,
) -> ev.MessageReceived:
    """The visitor's message; ``client_message_id`` (the widget's, or a fresh one) makes its
    provider id, within the visitor's own ids: one visitor's ids never touch another's."""
    visitor = visitor_id(connection_id, visitor_token)
    provider_id = f"{visitor}:{client_message_id}"
    dedupe = f"{KIND}:{connection_id}:{provider_id}"  # = the event's Nats-Msg-Id
    return Origin(KIND, tenant_id, connection_id, now).event(
        ev.MessageReceived, conversation_id(connection_id, visitor_token),
        ev.MessageReceivedData(
            message_id=ids.stable_id(ids.MESSAGE, dedupe), connection_id=connection_id, channel=KIND,
            provider_message_id=provider_id, sender=ev.Sender(id=f"{KIND}:{visitor}", name=name),
            text=text, sent_at=sent_at,
        ),
    )  # fmt: skip
