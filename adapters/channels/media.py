"""Bringing a message's attachments into our own storage: download each one from the
provider, keep it under ``<tenant>/<media id>``, and record ``media.available`` with its
sha256, mime type and size. The media id derives from the message and the provider's file
id, so a redelivered message downloads and records each file once."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import structlog

from adapters.media.store import MediaStore, media_key
from domain import events as ev
from domain import ids
from domain.ports import EventStore

log = structlog.get_logger()

MAX_MEDIA_BYTES = 20 * 1024 * 1024  # Telegram's own download limit for bots
Download = Callable[[ev.Attachment], Awaitable[bytes]]


def media_id(message_id: str, attachment: ev.Attachment) -> str:
    return ids.stable_id(ids.MEDIA, f"{message_id}:{attachment.provider_file_id}")


async def fetch_media(
    store: EventStore, media: MediaStore, message: ev.MessageReceived, download: Download, *, actor: str
) -> list[ev.MediaAvailable]:
    """Download the message's attachments not stored yet; one ``media.available`` each."""
    recorded: list[ev.MediaAvailable] = []
    for attachment in message.data.attachments:
        if attachment.size is not None and attachment.size > MAX_MEDIA_BYTES:
            log.info("media_too_large", message_id=message.data.message_id, size=attachment.size)
            continue
        identifier = media_id(message.data.message_id, attachment)
        key = media_key(message.tenant_id, identifier)
        if not await media.exists(key):
            content = await download(attachment)
            await media.put(key, content)
        else:
            content = await media.get(key) or b""
        data = ev.MediaAvailableData(
            message_id=message.data.message_id,
            media_id=identifier,
            sha256=hashlib.sha256(content).hexdigest(),
            mime=attachment.mime or _sniff(content),
            size=len(content),
            storage_key=key,
        )
        available = ev.new_event(
            ev.MediaAvailable,
            tenant_id=message.tenant_id,
            aggregate_id=message.aggregate_id,
            actor=actor,
            causation_id=message.id,
            data=data,
        )
        await store.append(available)
        recorded.append(available)
    return recorded


def _sniff(content: bytes) -> str:
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG"):
        return "image/png"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
