"""WhatsApp: a linked device of the user's own WhatsApp account, through neonize (whatsmeow).

In progress (issue 15): ``normalize`` turns neonize's ``MessageEv`` into canonical events
and ``states`` says what a session's happenings mean on the channels page (both pure,
table-tested; the first on real protobuf messages). The session (QR and phone-code pairing, the
session store), the connector and the registry entry come next; until then WhatsApp is not
a channel anyone can connect. This module stays light: nothing here imports neonize, whose
import loads its native library and configures the root logger.

Ids are derived from WhatsApp's: a chat is ``stable_id("c", "whatsapp:<connection>:<chat
jid>")``, a message ``stable_id("m", "whatsapp:<connection>:<chat jid>:<message id>")``.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "whatsapp"
CAPABILITIES = Capabilities(
    # edits=False: the agent's replies do not grow in place here (each edit shows "Edited" on
    # the phone, and WhatsApp allows few); the inbound edits of people are folded all the same
    max_text_length=4096,
    edits=False,
    deletes=True,
    reactions=True,
    typing=True,
    media=True,
)
