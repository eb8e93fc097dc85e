"""Delivering a reply to a website visitor is confirming it: the visitor's socket reads the
conversation from the event log, so ``send`` accepts every command and the runtime records
``message.sent``, which the visitor's socket then carries."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.channels.webchat import CAPABILITIES, KIND
from domain.commands import SendMessage
from domain.connectors import Delivered


class WebchatConnector:
    kind = KIND
    capabilities = CAPABILITIES

    async def send(self, command: SendMessage) -> Delivered:
        return Delivered(provider_message_id=command.message_id, sent_at=datetime.now(UTC))
