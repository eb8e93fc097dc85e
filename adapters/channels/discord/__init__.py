"""Discord: a bot (token from the Developer Portal) linked to a tenant's inbox.

``normalize`` (gateway dispatches → canonical events, pure), ``client`` (hikari REST:
check a token), ``gateway_session`` (the gateway WebSocket, ours: hikari's GatewayBot
moves its sequence on receipt, ours once events are stored), ``session`` (what the
gateway delivers, into the log: names, events, attachments), ``connector`` (sends,
chunked, with nonces). This module stays light: the registry reads what the kind is
without importing hikari.

Ids are derived from Discord's: a channel is ``stable_id("c", "discord:<connection>:<channel
id>")``, a message ``stable_id("m", "discord:<connection>:<channel id>:<message id>")``.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "discord"
CAPABILITIES = Capabilities(
    max_text_length=2000, edits=True, deletes=True, reactions=True, typing=True, media=True
)
