"""Telegram: a bot (token from @BotFather) linked to a tenant's inbox.

``normalize`` (updates → canonical events, pure), ``client`` (aiogram calls: check a
token, set a webhook), ``session`` (long polling), ``connector`` (sends), ``webhook``
(updates Telegram posts to the gateway). This module stays light: the registry reads
what the kind is without importing aiogram.

Ids are derived from Telegram's: a chat is ``stable_id("c", "telegram:<connection>:<chat
id>")``, a message ``stable_id("m", "telegram:<connection>:<chat id>:<message id>")``.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "telegram"
CAPABILITIES = Capabilities(
    max_text_length=4096, edits=True, deletes=False, reactions=False, typing=True, media=True
)
