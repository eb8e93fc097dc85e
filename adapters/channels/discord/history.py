"""A Discord bot's recent history (:mod:`adapters.channels.backfill`): the text channels of
the servers it is in, and the last messages of each one active in the window, read over
REST as raw JSON (``GET /users/@me/guilds``, ``/guilds/{id}/channels``,
``/channels/{id}/messages``) so they are normalized exactly as the gateway's
``MESSAGE_CREATE`` dispatches are. Direct messages stay at Discord: a bot cannot list its
DM channels. A channel the bot may not read (403) is skipped.

httpx rather than hikari here: hikari answers with its own objects, and the connector's one
normalization reads Discord's JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx

from adapters.channels.backfill import PER_CONVERSATION, Delivered, History
from adapters.channels.discord.normalize import (
    Json,
    channel_title,
    conversation_created,
    normalize,
    snowflake_time,
)
from domain import events as ev

DEFAULT_API_BASE = "https://discord.com/api/v10"
_TEXT_CHANNELS = frozenset({0, 5})  # text, announcement


class HistoryRefused(Exception):
    """Discord refused a history read the bot needs (a 401, or an error not about one channel)."""


def discord_history(
    token: str,
    api_base: str | None,
    *,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    owner_user_id: str | None,
    log: Any,
    guild_id: str | None = None,
) -> History:
    """``guild_id``: that server only (a connection added with "Add to server")."""

    def events_of(message: Json, guild: Json, title: str) -> Delivered:
        dispatch = {"op": 0, "t": "MESSAGE_CREATE", "d": {**message, "guild_id": guild["id"]}}
        events = normalize(
            dispatch, tenant_id=tenant_id, connection_id=connection_id, bot_user_id=bot_user_id,
            owner_user_id=owner_user_id,
        )  # fmt: skip
        return conversation_created(
            dispatch, tenant_id=tenant_id, connection_id=connection_id, title=title
        ), events

    async def channel(http: httpx.AsyncClient, guild: Json, found: Json, since: datetime) -> Delivered:
        path = f"/channels/{found['id']}/messages"
        try:
            messages = await _get(http, path, params={"limit": PER_CONVERSATION})
        except _Forbidden:
            log.info("backfill_channel_skipped", channel_id=found["id"], reason="forbidden")
            return None, []
        title = channel_title(str(found.get("name") or found["id"]), guild.get("name"))
        created: ev.ConversationCreated | None = None
        events: list[ev.Event] = []
        for message in reversed(messages):  # Discord answers newest first
            if snowflake_time(message["id"]) >= since:
                made, more = events_of(message, guild, title)
                created, events = created or made, [*events, *more]
        return created, events

    async def history(since: datetime) -> AsyncIterator[Delivered]:
        base = api_base or DEFAULT_API_BASE
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bot {token}"}, timeout=15
        ) as http:
            guilds = await _get(http, "/users/@me/guilds")
            for guild in (g for g in guilds if guild_id is None or str(g["id"]) == guild_id):
                for found in await _get(http, f"/guilds/{guild['id']}/channels"):
                    last = found.get("last_message_id")
                    if found.get("type") in _TEXT_CHANNELS and last and snowflake_time(last) >= since:
                        yield await channel(http, guild, found, since)

    return history


class _Forbidden(Exception):
    pass


async def _get(http: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None) -> list[Any]:
    response = await http.get(path, params=params)
    if response.status_code == 403:
        raise _Forbidden(path)
    if response.status_code >= 400:
        raise HistoryRefused(f"GET {path}: {response.status_code} {response.text[:200]}")
    answer = response.json()
    if not isinstance(answer, list):
        raise HistoryRefused(f"GET {path}: not a list")
    return answer
