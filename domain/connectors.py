"""The connector contract: what every channel integration declares and does.

A connector normalizes provider traffic into canonical events (``message.received``
with the provider's id as dedupe key, ``connection.state_changed``, ...) and executes
the commands on ``cmd.<kind>.<connection>.<command>``. The shared runtime
(``adapters/channels/runtime.py``) does the queueing, retries, confirmations and dead
letters; a connector only says how to talk to its provider. See docs/connectors.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

import msgspec

from domain import subjects
from domain.commands import EditMessage, SendMessage


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel supports; domain code shapes replies to fit (e.g. chunking)."""

    max_text_length: int
    edits: bool = False  # a sent message can be edited: the agent's reply grows in place
    # the shortest time between two edits of a message in a direct chat, and in a group
    # (providers limit edits per chat; groups more tightly)
    edit_every: float = 1.0
    group_edit_every: float = 3.0
    deletes: bool = False
    reactions: bool = False
    typing: bool = False
    media: bool = False
    threads: bool = False


class Delivered(msgspec.Struct, frozen=True):
    """The provider accepted the message."""

    provider_message_id: str
    sent_at: datetime


class SendRejected(Exception):
    """The provider refused for good (blocked by the user, chat gone, token revoked)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SendDeferred(Exception):
    """Try again later (rate limited, provider unavailable); ``retry_after`` in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def typing_subject(tenant_id: str, channel: str, connection_id: str) -> str:
    """Where the agent says "I am writing here" (live only; payload ``{"to": …}``)."""
    return subjects.live_subject(tenant_id, "typing", channel, connection_id)


def typing_filter(channel: str) -> str:
    return f"{subjects.LIVE_PREFIX}.*.typing.{subjects.token('channel', channel)}.*"


class PairingCode(msgspec.Struct, frozen=True, kw_only=True):
    """What a connection that pairs with a phone shows its owner, on LIVE only
    (``live.<tenant>.qr.<connection>``, :func:`qr_subject`): a QR code to scan or a code to
    type, while it is valid. It is a secret: it is never logged or stored in EVENTS.
    ``kind`` "none" says there is no code to show any more (paired, or stopped asking)."""

    connection_id: str
    kind: Literal["qr", "pair_code", "none"]
    code: str | None = None
    expires_at: datetime | None = None


def qr_subject(tenant_id: str, connection_id: str) -> str:
    return subjects.live_subject(tenant_id, "qr", connection_id)


def qr_filter(tenant_id: str) -> str:
    return subjects.live_subject(tenant_id, "qr") + ".*"


class Connector(Protocol):
    kind: str  # the channel token in subjects: "webchat", "telegram", ...
    capabilities: Capabilities

    async def send(self, command: SendMessage) -> Delivered:
        """Deliver one message; raise SendRejected or SendDeferred when it cannot."""
        ...


class EditingConnector(Connector, Protocol):
    """A connector of a kind whose capabilities include ``edits``."""

    async def edit(self, command: EditMessage) -> None:
        """Replace a sent message's text; raise SendRejected or SendDeferred when it cannot.
        An edit that changes nothing (the provider says "not modified") is done."""
        ...
