"""History brought in from elsewhere (the self-hosted assistant, an export): what an import
batch holds and the canonical events it becomes.

Everything is named from the import and the source's own keys, so a rerun or a resumed run
names the same conversations and messages again and stores nothing twice:

- an import is ``stable_id("im", tenant, source, source_key)``;
- a conversation is ``stable_id("c", import, conversation key)`` on the import's own
  connection id for its channel (``stable_id("cim", import, channel)``: history, not a live
  channel; sending in it is refused, see :func:`is_imported`);
- a message is ``stable_id("m", import, line key)``, its provider id ``import:<line key>``.

Imported messages are marked ``backfill``: they are shown with their original times but
never wake the agent, never count as unread and never notify anyone. Model usage becomes
``usage.recorded`` token counts named ``import:<message id>``, never a cost: it does not
count against this month's AI allowance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from domain import events as ev
from domain import ids
from domain.envelope import ConversationKind

IMPORT = "im"
IMPORTED_CONNECTION = "cim"  # an import's stand-in connection: no channel behind it
ACTOR = "import"
IMPORTED_CHANNEL = "imported"  # sessions that name no channel
MAX_CONVERSATIONS = 500  # per batch
MAX_MESSAGES = 1000  # per batch
MAX_TEXT = 64_000  # characters of one message (longer ones are cut, and say so)

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
Source = Literal["openclaw", "export"]


class ImportStart(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/imports``: where the history comes from. ``source_key`` names the source
    (a state folder, an export file): the same key gives the same import, so a rerun
    continues it instead of copying it again."""

    source: Source
    source_key: Key
    label: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ImportedConversation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: Key  # the source's own name for it (a session key)
    channel: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = IMPORTED_CHANNEL
    kind: ConversationKind = "direct"
    peer: Annotated[str, msgspec.Meta(max_length=400)] = ""  # the provider's chat id, if known
    title: Annotated[str, msgspec.Meta(max_length=300)] = ""


class ImportedMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    line: Key  # unique within the import: e.g. "<agent>/<session id>:<entry id>"
    conversation: Key  # an ImportedConversation's key, in this batch or an earlier one
    direction: Literal["in", "out"]
    text: str
    sent_at: Annotated[datetime, msgspec.Meta(tz=True)]  # with its offset ("…Z", "…+01:00")
    sender_name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    tokens_in: Annotated[int, msgspec.Meta(ge=0)] = 0
    tokens_out: Annotated[int, msgspec.Meta(ge=0)] = 0


class ImportBatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/imports/{id}/batches``."""

    conversations: Annotated[list[ImportedConversation], msgspec.Meta(max_length=MAX_CONVERSATIONS)] = []
    messages: Annotated[list[ImportedMessage], msgspec.Meta(max_length=MAX_MESSAGES)] = []


def import_id(tenant_id: str, source: str, source_key: str) -> str:
    return ids.stable_id(IMPORT, f"{tenant_id}:{source}:{source_key}")


def conversation_id(import_: str, key: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"import:{import_}:{key}")


def connection_id(import_: str, channel: str) -> str:
    return ids.stable_id(IMPORTED_CONNECTION, f"import:{import_}:{channel}")


def is_imported(connection_id: str) -> bool:
    """Whether a conversation's connection is an import's: history, with nothing to send on."""
    return connection_id.startswith(f"{IMPORTED_CONNECTION}_")


def message_id(import_: str, line: str) -> str:
    return ids.stable_id(ids.MESSAGE, f"import:{import_}:{line}")


def conversation_events(
    tenant_id: str, import_: str, conversations: list[ImportedConversation], *, at: datetime
) -> list[ev.Event]:
    """``conversation.created`` for each conversation (the caller leaves out those it has)."""
    return [
        ev.new_event(
            ev.ConversationCreated,
            tenant_id=tenant_id,
            aggregate_id=conversation_id(import_, conversation.key),
            actor=ACTOR,
            occurred_at=at,
            data=ev.ConversationCreatedData(
                channel=conversation.channel,
                connection_id=connection_id(import_, conversation.channel),
                kind=conversation.kind,
                title=conversation.title or conversation.peer or "Imported conversation",
                external_id=conversation.peer or conversation.key,
                agent_enabled=False,  # history: there is no live channel to answer on
            ),
        )
        for conversation in conversations
    ]


def message_events(
    tenant_id: str,
    import_: str,
    message: ImportedMessage,
    conversation: ImportedConversation,
    *,
    agent_name: str = "Assistant",
) -> list[ev.Event]:
    """The message as ``message.received`` (in) or ``message.sent`` (out), at its original
    time, marked as history; with the model's token counts for an answer that has them."""
    at = message.sent_at
    mid = message_id(import_, message.line)
    aggregate = conversation_id(import_, conversation.key)
    connection = connection_id(import_, conversation.channel)
    provider_id, text = f"import:{message.line}", cut(message.text)
    if message.direction == "in":
        name = message.sender_name or conversation.title
        received = ev.MessageReceivedData(
            message_id=mid, connection_id=connection, channel=conversation.channel,
            provider_message_id=provider_id, text=text, sent_at=at, backfill=True,
            sender=ev.Sender(id=conversation.peer or conversation.key, name=name),
        )  # fmt: skip
        return [_at(ev.MessageReceived, tenant_id, aggregate, received, at)]
    sent = ev.MessageSentData(
        message_id=mid, connection_id=connection, channel=conversation.channel,
        provider_message_id=provider_id, text=text, sent_at=at, backfill=True,
        sender=ev.Sender(id="agent:imported", name=message.sender_name or agent_name, is_bot=True),
        model=message.model, tokens_in=message.tokens_in or None, tokens_out=message.tokens_out or None,
    )  # fmt: skip
    metrics: list[tuple[ev.UsageMetric, int]] = [
        ("tokens_in", message.tokens_in),
        ("tokens_out", message.tokens_out),
    ]
    usage = [
        _at(
            ev.UsageRecorded,
            tenant_id,
            tenant_id,
            ev.UsageRecordedData(metric=m, quantity=q, source_id=f"import:{mid}"),
            at,
        )
        for m, q in metrics
        if q
    ]
    return [_at(ev.MessageSent, tenant_id, aggregate, sent, at), *usage]


def _at(cls: type[ev.E], tenant_id: str, aggregate_id: str, data: msgspec.Struct, at: datetime) -> ev.E:
    return ev.new_event(
        cls, tenant_id=tenant_id, aggregate_id=aggregate_id, actor=ACTOR, data=data, occurred_at=at
    )


_CUT = "\n[… cut on import: the message was longer]"


def cut(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - len(_CUT)] + _CUT
