"""WhatsApp Business: a business phone number on Meta's Cloud API (the Graph API), linked
to a tenant's inbox. Not the personal WhatsApp of ``adapters/channels/whatsapp/``.

``normalize`` (webhook payloads → canonical events, pure), ``client`` (Graph API calls over
httpx: whose number a token reaches, sends, media), ``session`` (the connection's health:
the token still reaches the number), ``connector`` (sends), ``webhook`` (Meta's
subscription check, signed deliveries). This module stays light: the registry reads what
the kind is without importing httpx.

Ids are derived from Meta's: a customer is keyed by their WhatsApp id (``wa_id``, their
phone number) or, when a webhook carries no phone (WhatsApp usernames, 2026), by their
business-scoped user id (``user_id``, e.g. ``US.13491208655302741918``); the conversation
is ``stable_id("c", "whatsapp_business:<connection>:<key>")`` with external id ``<key>``;
a message's provider id is its ``wamid.…`` and its id
``stable_id("m", "whatsapp_business:<connection>:<wamid>")``.

Free-form messages may only be sent within 24 hours of the customer's last message (the
customer-service window); outside it Meta refuses them with error 131047, at once or later
as a ``failed`` status. Both become ``message.send_failed`` with :data:`OUTSIDE_WINDOW`.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "whatsapp_business"
CAPABILITIES = Capabilities(max_text_length=4096, media=True)
DEFAULT_API_BASE = "https://graph.facebook.com/v21.0"

REENGAGEMENT_ERROR = 131047  # Meta's "Re-engagement message": the 24-hour window is closed
OUTSIDE_WINDOW = "outside_24h_window"
OUTSIDE_WINDOW_REASON = (
    "Not sent: WhatsApp only allows template messages more than 24 hours after the customer last"
    " wrote, and Moltbot sends free-form text. It can be sent once the customer writes again."
)
