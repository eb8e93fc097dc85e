"""A Slack connection's recent history (:mod:`adapters.channels.backfill`): the channels,
private channels and direct messages the bot is in (``users.conversations``), and the last
messages of each one active in the window (``conversations.history``), normalized as the
live events are. Thread replies stay at Slack: the history holds a thread's first message.

Reading them needs the ``channels:read``, ``groups:read``, ``im:read`` and ``mpim:read``
scopes besides the history ones; an install without them has no history brought in (the
refusal is logged, and the live connection works as before)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.channels.backfill import PER_CONVERSATION, Delivered, History
from adapters.channels.slack.client import WorkspaceBot
from adapters.channels.slack.normalize import delivery
from adapters.channels.slack.people import SlackPeople
from domain import events as ev

_TYPES = "public_channel,private_channel,mpim,im"


def _channel_type(channel: Mapping[str, Any]) -> str:
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "group" if channel.get("is_private") else "channel"


def slack_history(
    web: AsyncWebClient,
    bot: WorkspaceBot,
    *,
    tenant_id: str,
    connection_id: str,
    owner_user_id: str | None,
    people: SlackPeople,
    token: str,
    api_base: str | None,
) -> History:
    async def history(since: datetime) -> AsyncIterator[Delivered]:
        cursor: str | None = None
        while True:
            page = await web.users_conversations(
                types=_TYPES, exclude_archived=True, limit=200, cursor=cursor
            )
            for channel in page.get("channels") or ():
                answer = await web.conversations_history(
                    channel=channel["id"], oldest=f"{since.timestamp():.6f}", limit=PER_CONVERSATION
                )
                messages = answer.get("messages") or []
                created: ev.ConversationCreated | None = None
                events: list[ev.Event] = []
                for message in reversed(messages):  # Slack answers newest first
                    where = {"channel": channel["id"], "channel_type": _channel_type(channel)}
                    callback = {
                        "type": "event_callback",
                        "team_id": bot.team_id,
                        "event": {**message, **where},
                    }
                    found = delivery(
                        callback, tenant_id=tenant_id, connection_id=connection_id,
                        bot_user_id=bot.bot_user_id, owner_user_id=owner_user_id,
                    )  # fmt: skip
                    found = await people.with_emails(found, token, api_base)
                    created = created or found.created
                    events.extend(found.events)
                if events:
                    yield created, events
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return

    return history
