"""What one Discord bot's gateway delivers, into the log: the names of guilds and channels
(for conversation titles), each message dispatch's canonical events (the channel's
conversation first when it is new) and its attachments, fetched from Discord's CDN. The
gateway protocol that delivers them is ``gateway_session.py``."""

from __future__ import annotations

from typing import Any

import httpx

from adapters.channels.discord.normalize import Json, actor, conversation_created, normalize
from adapters.channels.errors import ProviderUnreachable
from adapters.channels.inbound import store_delivered
from adapters.media.store import MediaStore
from domain import events as ev
from domain.ports import EventStore

CDN = "https://cdn.discordapp.com"


class DispatchInbox:
    def __init__(
        self,
        store: EventStore,
        *,
        tenant_id: str,
        connection_id: str,
        media: MediaStore | None,
        cdn_base: str | None,
        log: Any,
    ) -> None:
        self._store = store
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self._media = media  # where attachments are kept; None: they stay on Discord's CDN
        self._cdn_base = cdn_base
        self._log = log
        self._known_conversations: set[str] = set()
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
            title = f"#{data['name']}"
            self._channel_titles[str(data["id"])] = f"{title} ({guild})" if guild else title

    async def store(self, message: Json, bot_user_id: str) -> None:
        """Append what one message dispatch says (the channel's conversation first if new)."""
        try:
            events = normalize(
                message,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                bot_user_id=bot_user_id,
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
        if not events:
            return
        await store_delivered(
            self._store, created, events, self._known_conversations, media=self._media,
            download=self._download, actor=actor(self.connection_id), log=self._log,
            stored_as="discord_dispatch_stored", gateway_seq=message.get("s"),
        )  # fmt: skip

    async def _download(self, attachment: ev.Attachment) -> bytes:
        """An attachment from Discord's CDN (its signed URL is the provider file id)."""
        url = attachment.provider_file_id
        if not url.startswith(CDN):
            raise ProviderUnreachable(f"not a downloadable attachment: {attachment.kind}")
        if self._cdn_base is not None:
            url = self._cdn_base.rstrip("/") + url[len(CDN) :]
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(url)
        if response.status_code != 200:
            raise ProviderUnreachable(f"Discord's CDN answered {response.status_code} for an attachment")
        return response.content
