"""The website chat: the widget every tenant gets, with no provider account needed.

Inbound, the gateway's public webchat endpoints play the provider's webhook: they turn a
visitor's message into ``conversation.created`` / ``message.received`` with
``normalize`` (see ``gateway/routes/webchat.py``). Outbound, ``connector`` confirms
each reply: the visitor's socket reads the conversation from the log. This module stays
light: the registry reads what the kind is from here.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "webchat"
MAX_TEXT_LENGTH = 4000
CAPABILITIES = Capabilities(max_text_length=MAX_TEXT_LENGTH, typing=True)
