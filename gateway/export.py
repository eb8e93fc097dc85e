"""An inbox's own export: one zip of JSON lines read from the read models, the media files,
and a README that says what each file holds. ``moltbot migrate --from-export`` reads it
back (into this inbox or another), so a user can leave and come back.

The archive (``moltbot-export/`` inside the zip):

- ``manifest.json`` — format and version, the inbox, when, how many of each;
- ``conversations.jsonl``, ``messages.jsonl`` (oldest first, as the inbox shows them),
  ``contacts.jsonl`` (each with its identities on every channel), ``usage.jsonl`` (per day
  and metric), ``media.jsonl`` with the files under ``media/``;
- ``agents.json`` — every agent's name, model, instructions, tools and rules.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, LiteralString

import msgspec

from adapters.media.store import MediaStore
from adapters.postgres.database import Connection
from projections import agents_queries, contacts_queries, inbox_queries, usage_queries
from projections.rows import streamed

FORMAT = "moltbot-export"
VERSION = 1
ROOT = "moltbot-export"
_CHUNK = 1 << 20  # bytes written to the zip at a time

README = """# Your Moltbot Cloud inbox

Exported {exported_at} from inbox {tenant_id}. Every file is UTF-8; `.jsonl` files hold one
JSON object per line, times in ISO 8601 with their offset.

- `conversations.jsonl`: conversation_id, channel, kind (direct, group, thread), title,
  external_id (the channel's own id of the chat), created_at, pinned, agent_mode.
- `messages.jsonl`: message_id, conversation_id, direction (in: someone wrote to you; out: you or
  the agent wrote), sender_id, sender_name, text, sent_at, edited_at, deleted_at, status,
  agent_run_id (set when the agent wrote it), attachments (how many: see media.jsonl).
- `contacts.jsonl`: the people you talk with, each with their identities on every channel.
- `agents.json`: your agents: name, model, instructions (system_prompt), tools, rules.
- `usage.jsonl`: per day and metric (messages in and out, agent runs, tokens, cost in micro-dollars).
- `media.jsonl` and `media/`: attachments, each file named by its media_id.

To bring it into an inbox (this one or another): `moltbot migrate --from-export FILE`.
"""


class Manifest(msgspec.Struct, frozen=True):
    format: str
    version: int
    tenant_id: str
    exported_at: datetime
    counts: dict[str, int]


async def write_archive(conn: Connection, tenant_id: str, media: MediaStore | None, path: Path) -> Manifest:
    """Write the inbox's archive to ``path``; ``conn`` is in the tenant's transaction."""
    exported_at = datetime.now(UTC)
    counts: dict[str, int] = {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        text = README.format(exported_at=exported_at.isoformat(timespec="seconds"), tenant_id=tenant_id)
        await asyncio.to_thread(archive.writestr, f"{ROOT}/README.md", text)
        for name, query in (
            ("conversations", inbox_queries.EXPORT_CONVERSATIONS),
            ("messages", inbox_queries.EXPORT_MESSAGES),
            ("contacts", contacts_queries.EXPORT_CONTACTS),
            ("usage", usage_queries.EXPORT_USAGE),
        ):
            counts[name] = await _jsonl(archive, f"{ROOT}/{name}.jsonl", streamed(conn, query))
        agents = [
            {"agent_id": view.agent_id} | msgspec.to_builtins(view.config)
            for view in await agents_queries.all_agents(conn)
        ]
        await asyncio.to_thread(
            archive.writestr, f"{ROOT}/agents.json", msgspec.json.format(msgspec.json.encode(agents))
        )
        counts["agents"] = len(agents)
        counts["media"] = await _media(archive, conn, media)
        manifest = Manifest(FORMAT, VERSION, tenant_id, exported_at, counts)
        await asyncio.to_thread(
            archive.writestr, f"{ROOT}/manifest.json", msgspec.json.format(msgspec.json.encode(manifest))
        )
    return manifest


async def _jsonl(archive: zipfile.ZipFile, name: str, rows: AsyncIterator[dict[str, Any]]) -> int:
    count = 0
    entry = zipfile.ZipInfo(name, date_time=datetime.now(UTC).timetuple()[:6])
    entry.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(entry, "w") as handle:
        chunk = bytearray()
        async for row in rows:
            chunk += msgspec.json.encode(row) + b"\n"
            count += 1
            if len(chunk) >= _CHUNK:
                await _write(handle, bytes(chunk))
                chunk.clear()
        await _write(handle, bytes(chunk))
    return count


async def _write(handle: IO[bytes], data: bytes) -> None:
    if data:
        await asyncio.to_thread(handle.write, data)


_MEDIA: LiteralString = inbox_queries.EXPORT_MEDIA


async def _media(archive: zipfile.ZipFile, conn: Connection, media: MediaStore | None) -> int:
    """Each attachment's file under ``media/``, listed in ``media.jsonl`` (a file the store no
    longer has is listed with ``"missing": true``)."""
    listed = []
    async for row in streamed(conn, _MEDIA):
        content = await media.get(row["storage_key"]) if media is not None else None
        if content is not None:
            await asyncio.to_thread(archive.writestr, f"{ROOT}/media/{row['media_id']}", content)
        listed.append({k: v for k, v in row.items() if k != "storage_key"} | {"missing": content is None})
    await asyncio.to_thread(
        archive.writestr, f"{ROOT}/media.jsonl", b"".join(msgspec.json.encode(r) + b"\n" for r in listed)
    )
    return len(listed)
