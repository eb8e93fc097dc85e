"""The webchat connector: the website chat widget every tenant gets, with no provider
account needed.

Inbound, the gateway's public webchat endpoints play the provider's webhook: they
normalize a visitor's message into ``conversation.created`` / ``message.received``
(see ``gateway/routes/webchat.py``). Outbound, the visitor's socket reads the
conversation from the event log, so delivering a reply is confirming it: ``send``
accepts every command and the runtime records ``message.sent``, which the visitor's
socket then carries.
"""

from __future__ import annotations

from datetime import UTC, datetime

from domain.commands import SendMessage
from domain.connectors import Capabilities, Delivered

KIND = "webchat"
MAX_TEXT_LENGTH = 4000


class WebchatConnector:
    kind = KIND
    capabilities = Capabilities(max_text_length=MAX_TEXT_LENGTH, typing=True)

    async def send(self, command: SendMessage) -> Delivered:
        return Delivered(provider_message_id=command.message_id, sent_at=datetime.now(UTC))
