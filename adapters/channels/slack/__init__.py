"""Slack: a Slack app installed in a workspace, linked to a tenant's inbox.

``normalize`` (Events API payloads → canonical events, pure), ``client`` (slack_sdk
calls: check a token, the OAuth install, files), ``session`` (Socket Mode), ``webhook``
(the Events API: signatures, workspaces, deliveries), ``install`` ("Add to Slack"),
``connector`` (sends). This module stays light: the registry reads what the kind is
without importing slack_sdk.

Ids are derived from Slack's: a message's provider id is ``<channel>:<ts>`` and its id
``stable_id("m", "slack:<connection>:<channel>:<ts>")``; a channel (or direct message) is
the conversation ``stable_id("c", "slack:<connection>:<channel>")`` with external id
``<channel>``, and a thread its own conversation of kind ``thread``,
``stable_id("c", "slack:<connection>:<channel>:<thread ts>")``, external id
``<channel>:<thread ts>`` (so a reply sent there goes back into the thread).
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "slack"
CAPABILITIES = Capabilities(
    max_text_length=40000, edits=True, deletes=True, reactions=True, typing=False, media=False, threads=True
)
