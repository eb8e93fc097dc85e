"""iMessage: the Messages app of the user's own Mac, reached through the Personal Bridge.

Everything here runs on the device, inside the bridge program, never in the cloud:
``rows`` (what one chat.db row holds), ``typedstream`` (the text inside a row's
``attributedBody``), ``chatdb`` (reading ``~/Library/Messages/chat.db``, read-only),
``normalize`` (rows → canonical events, pure), ``source`` (polling with a cursor, and the
first backfill), ``send`` (sending through ``osascript`` and AppleScript). This module
stays light: the registry and the bridge read what the kind is without importing sqlite.

Ids are derived from Apple's: a chat is ``stable_id("c", "imessage:<connection>:<chat
guid>")``, a message ``stable_id("m", "imessage:<connection>:<message guid>")``.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "imessage"
# AppleScript's Messages dictionary can only send text and files to a chat: it has no
# verb for a tapback, an edit, an unsend or a typing indicator (those need Apple's private
# API), so the agent must never count on them here.
CAPABILITIES = Capabilities(max_text_length=20_000, media=True)
