"""This product's own export (``gateway/export.py``: ``GET /v1/export``, ``moltbot export``)
read back for an import: its conversations and messages, and its agents.

A conversation keeps its original id as its key and its channel; a message its original
id as its line, so importing the same inbox's export again (or a later one) stores only
what is new. The owner's own "Try it" chats, messages that were deleted, and replies that
were never sent (scheduled, failed) are skipped with a count.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from adapters.imports.openclaw_transcripts import Tally, json_objects
from domain.imports import ImportedConversation, ImportedMessage

FORMAT = "moltbot-export"
VERSIONS = (1,)
ROOT = "moltbot-export"


class ArchiveError(Exception):
    """Not an export this version reads; the message says why."""


class ExportedAgent(msgspec.Struct, frozen=True):
    name: str
    model: str | None
    instructions: str


class Archive(msgspec.Struct, frozen=True):
    path: Path
    tenant_id: str  # the inbox it came from
    exported_at: str
    messages: int
    agents: list[ExportedAgent]


def open_archive(path: Path) -> Archive:
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = msgspec.json.decode(archive.read(f"{ROOT}/manifest.json"))
            agents = msgspec.json.decode(archive.read(f"{ROOT}/agents.json"))
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArchiveError(f"{path} is not a readable zip ({exc})") from None
    except KeyError as exc:
        raise ArchiveError(f"{path} is not an inbox export: {exc.args[0]} is missing") from None
    except msgspec.DecodeError as exc:
        raise ArchiveError(f"{path}: its manifest or agents are not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not an inbox export (manifest format {manifest.get('format')!r})")
    if manifest.get("version") not in VERSIONS:
        raise ArchiveError(
            f"{path} is an export of version {manifest.get('version')}; this moltbot reads {VERSIONS}:"
            " update it"
        )
    return Archive(
        path=path,
        tenant_id=str(manifest.get("tenant_id")),
        exported_at=str(manifest.get("exported_at")),
        messages=int((manifest.get("counts") or {}).get("messages", 0)),
        agents=[
            ExportedAgent(
                str(a.get("name") or "Assistant"), a.get("model"), str(a.get("system_prompt") or "")
            )
            for a in agents
            if isinstance(a, dict)
        ],
    )


def history(archive: Archive, tally: Tally) -> Iterator[tuple[ImportedConversation, ImportedMessage]]:
    """Each message with its conversation, oldest first."""
    with zipfile.ZipFile(archive.path) as zipped:
        conversations: dict[str, ImportedConversation] = {}
        for n, row in _rows(zipped, "conversations.jsonl", tally):
            if row.get("preview"):
                tally.skip("'Try it' conversations (your own test chats)")
                continue
            try:
                conversations[row["conversation_id"]] = ImportedConversation(
                    key=row["conversation_id"], channel=row["channel"], kind=row["kind"],
                    peer=row.get("external_id") or "", title=row.get("title") or "",
                )  # fmt: skip
            except (KeyError, TypeError) as exc:
                tally.bad(f"conversations.jsonl:{n}", f"not a conversation ({exc})")
        for n, row in _rows(zipped, "messages.jsonl", tally):
            message = _message(row, conversations, tally, n)
            if message is not None:
                tally.messages += 1
                tally.oldest = min(tally.oldest or message.sent_at, message.sent_at)
                yield conversations[message.conversation], message


def _message(
    row: dict[str, Any], conversations: dict[str, ImportedConversation], tally: Tally, n: int
) -> ImportedMessage | None:
    if row.get("conversation_id") not in conversations:
        tally.skip("messages of conversations left out")
        return None
    if row.get("deleted_at"):
        tally.skip("deleted messages")
        return None
    if row.get("direction") == "out" and row.get("status") not in ("sent", "delivered", "read"):
        tally.skip("replies never sent (scheduled, failed, cancelled)")
        return None
    try:
        return msgspec.convert(
            {
                "line": row["message_id"],
                "conversation": row["conversation_id"],
                "direction": row["direction"],
                "text": row["text"],
                "sent_at": row["sent_at"],
                "sender_name": (row.get("sender_name") or "")[:200],
            },
            ImportedMessage,
        )
    except (KeyError, msgspec.ValidationError) as exc:
        tally.bad(f"messages.jsonl:{n}", f"not a message ({exc})")
        return None


def _rows(zipped: zipfile.ZipFile, name: str, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = zipped.open(f"{ROOT}/{name}")
    except KeyError:
        tally.bad(name, "missing from the archive")
        return
    with handle:
        yield from json_objects(handle, name, tally)
