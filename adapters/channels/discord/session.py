"""What one Discord bot's gateway delivers, into the log: the names of guilds and channels
(for conversation titles), each message dispatch's canonical events (the channel's
conversation first when it is new) and its attachments, fetched from Discord's CDN
(:func:`download_attachment`). The gateway protocol that delivers them is
``gateway_session.py``."""

from __future__ import annotations

from typing import Any

import httpx

from adapters.channels.discord.normalize import Json, channel_title, conversation_created, normalize
from adapters.channels.errors import ProviderUnreachable
from adapters.channels.inbound import Intake
from domain import events as ev

CDN = "https://cdn.discordapp.com"


class DispatchInbox:
    def __init__(self, intake: Intake, *, tenant_id: str, connection_id: str, log: Any) -> None:
        self._intake = intake
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self._log = log
        self._guild_names: dict[str, str] = {}
        self._channel_titles: dict[str, str] = {}

    def remember_names(self, name: str, data: Json) -> None:
        """Guild and channel names, for the titles of conversations created later."""
        if name.startswith("GUILD_"):
            guild_id = str(data.get("id"))
            self._guild_names[guild_id] = str(data.get("name") or guild_id)
            for channel in [*(data.get("channels") or ()), *(data.get("threads") or ())]:
                self.remember_names("CHANNEL_CREATE", {"guild_id": guild_id, **channel})
            return
        if data.get("name") and data.get("id"):
            guild = self._guild_names.get(str(data.get("guild_id")))
            self._channel_titles[str(data["id"])] = channel_title(str(data["name"]), guild)

    async def store(self, message: Json, bot_user_id: str, owner_user_id: str | None = None) -> None:
        """Append what one message dispatch says (the channel's conversation first if new)."""
        try:
            events = normalize(
                message,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                bot_user_id=bot_user_id,
                owner_user_id=owner_user_id,
            )
            created = conversation_created(
                message,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                title=self._channel_titles.get(str((message.get("d") or {}).get("channel_id"))),
            )
        except Exception as exc:  # one unreadable dispatch must not stop the connection for good
            self._log.error(
                "discord_dispatch_unreadable", event=message.get("t"), seq=message.get("s"), error=repr(exc)
            )
            return
        await self._intake.take(created, events, gateway_seq=message.get("s"))


async def download_attachment(attachment: ev.Attachment, cdn_base: str | None) -> bytes:
    """An attachment from Discord's CDN (its signed URL is the provider file id); ``cdn_base``
    stands in for the CDN (None: Discord's own)."""
    url = attachment.provider_file_id
    if not url.startswith(CDN):
        raise ProviderUnreachable(f"not a downloadable attachment: {attachment.kind}")
    if cdn_base is not None:
        url = cdn_base.rstrip("/") + url[len(CDN) :]
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(url)
    if response.status_code != 200:
        raise ProviderUnreachable(f"Discord's CDN answered {response.status_code} for an attachment")
    return response.content
