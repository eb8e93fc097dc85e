"""Microsoft Teams: a bot registered with the Bot Framework (an Azure Bot resource with the
Teams channel on), linked to a tenant's inbox. The Bot Connector posts Activities to the
connection's webhook; replies go back through the Bot Connector REST API.

``normalize`` (Activities → canonical events, pure), ``auth`` (the Bot Connector's JWT on
each delivery: OpenID metadata, signing keys and their endorsements, the claims),
``client`` (httpx: the app's token by the client-credentials flow, sending an Activity),
``session`` (the connection's health: Microsoft still issues the app a token),
``connector`` (sends), ``webhook`` (checks the token, then stores). This module stays light:
the registry reads what the kind is without importing httpx or PyJWT.

Ids are derived from Teams': a conversation (a personal chat, a group chat, or one thread of
a channel) is ``stable_id("c", "teams:<connection>:<Teams conversation id>")``; a message's
provider id is ``<Teams conversation id>/<activity id>`` and its id ``stable_id("m",
"teams:<connection>:<provider id>")``. The conversation's external id is its conversation
reference, ``<Teams conversation id>|<serviceUrl>|<bot id>``, taken from a validated
Activity: the connector sends only there, so the app's token only ever goes to a serviceUrl
the Bot Connector itself vouched for.

The Bot Framework SDK (botbuilder) is deliberately not used: it pins msrest (deprecated since
2022) and fetches its OpenID metadata with blocking ``requests`` calls inside async code.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "teams"
# Teams takes about 28 KB per message; 7000 characters stay under it even at 4 bytes each.
# The connector only sends text (no edits: the agent's replies arrive whole).
CAPABILITIES = Capabilities(max_text_length=7000, threads=True)

DEFAULT_LOGIN_BASE = "https://login.microsoftonline.com"  # + /<tenant>/oauth2/v2.0/token
DEFAULT_OPENID_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
MULTI_TENANT = "botframework.com"  # the token endpoint's tenant for multi-tenant bots
SCOPE = "https://api.botframework.com/.default"
ISSUER = "https://api.botframework.com"  # the issuer of the Bot Connector's tokens to bots
CHANNEL_ID = "msteams"  # an Activity's channelId from Teams
