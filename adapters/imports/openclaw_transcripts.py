"""The self-hosted assistant's sessions and transcripts, read as conversations and messages
for an import (``domain/imports.py``).

- ``agents/<agent>/sessions/sessions.json`` (older: ``sessions/sessions.json``): session
  key → entry (``sessionId``, ``updatedAt``, ``channel`` / ``lastChannel``, ``lastTo``,
  ``displayName``, ``chatType``, ``sessionFile``…), read as JSON5.
- A session key names its conversation: ``agent:<agent>:<channel>:dm:<peer>`` (also
  ``direct``, and with an account before ``dm``), ``agent:<agent>:<channel>:group:<id>``,
  ``…:channel:<id>``, a ``:thread:`` or ``:topic:`` tail; ``agent:<agent>:main`` and
  ``…:dm:<peer>`` name no channel but the entry's ``lastChannel`` may. Internal sessions
  (``subagent``, ``cron``, ``hook``, ``acp``) are not conversations with people: skipped.
- ``<session id>.jsonl``: a ``session`` header, then entries; ``message`` entries with role
  ``user`` or ``assistant`` become messages, with their original time (the message's epoch
  milliseconds, else the entry's ISO time). Where entries form a tree (format 2 and 3:
  ``id`` / ``parentId``), only the branch that ends at the last entry is read: what the
  person saw. The channel's envelope the self-hosted product put before a user's text
  (``[Telegram Kim (@kim) id:555 2026-01-30 10:00 CET] …``) and its ``[message_id: N]``
  lines are taken off; the sender's name is kept from it.

Nothing here raises on a bad line: unreadable lines, other entry types and other roles are
counted in :class:`Tally` and the reading goes on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import json5
import msgspec

from domain.imports import IMPORTED_CHANNEL, ImportedConversation, ImportedMessage

INTERNAL = ("subagent", "cron", "hook", "acp")
_CHANNEL_NAMES = {"msteams": "teams", "googlechat": "google_chat"}
_LABELS = "WebChat|WhatsApp|Telegram|Signal|Slack|Discord|Google Chat|iMessage|Teams|Matrix|Zalo|BlueBubbles"
_ENVELOPE = re.compile(rf"^\[(?P<label>{_LABELS})(?P<rest>[^\]\n]*)\]\s*")
_TIMESTAMPED = re.compile(r"^\[[^\]\n]*\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}[^\]\n]*\]\s*")
# what follows the sender in an envelope: "id:555", "+2h" (time since the last message), the time
_FROM_END = re.compile(
    r"\s+(?:id:\S+|\+\d+(?:mo|[smhdw])\b|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}\S*(?:\s+[A-Za-z/_+-]+)?)(?=\s|$)"
)
_MESSAGE_ID_LINE = re.compile(r"^\[message_id: [^\]]*\]\s*$", re.MULTILINE)


class Tally(msgspec.Struct):
    """What a read met besides messages, by kind: ``skipped`` ("tool results",
    "entry: compaction", "internal sessions"...) and ``unreadable`` (with where)."""

    sessions: int = 0
    messages: int = 0
    oldest: datetime | None = None  # the earliest message's time
    skipped: Counter[str] = msgspec.field(default_factory=Counter)
    unreadable: list[str] = msgspec.field(default_factory=list)  # "file:line: why", the first 50

    def skip(self, what: str, n: int = 1) -> None:
        self.skipped[what] += n

    def bad(self, where: str, why: str) -> None:
        self.skipped["unreadable lines"] += 1
        if len(self.unreadable) < 50:
            self.unreadable.append(f"{where}: {why}")


class Session(msgspec.Struct, frozen=True):
    agent_id: str
    key: str
    session_id: str
    transcript: Path
    conversation: ImportedConversation


def session_stores(folder: Path) -> Iterator[tuple[str, Path]]:
    """(agent id, sessions.json) of every agent, and the older single store."""
    agents = folder / "agents"
    if agents.is_dir():
        for store in sorted(agents.glob("*/sessions/sessions.json")):
            yield store.parent.parent.name, store
    older = folder / "sessions" / "sessions.json"
    if older.is_file():
        yield "main", older


def sessions(folder: Path, tally: Tally) -> list[Session]:
    found: dict[tuple[str, str], Session] = {}
    for agent_id, store in session_stores(folder):
        try:
            entries = json5.loads(store.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            tally.bad(str(store), f"not read ({exc})")
            continue
        if not isinstance(entries, dict):
            tally.bad(str(store), "not an object of sessions")
            continue
        for key, entry in entries.items():
            session = _session(agent_id, str(key), entry, store.parent, tally)
            if session is not None:
                found.setdefault((session.agent_id, session.session_id), session)
    return list(found.values())


def _session(agent_id: str, key: str, entry: Any, folder: Path, tally: Tally) -> Session | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("sessionId"), str):
        tally.bad(f"{folder / 'sessions.json'}", f"session {key[:80]!r} has no sessionId")
        return None
    conversation = conversation_of(key, entry)
    if conversation is None:
        tally.skip("internal sessions (sub-agents, cron jobs, hooks)")
        return None
    session_id = entry["sessionId"]
    named = entry.get("sessionFile")
    transcript = Path(named) if isinstance(named, str) and named else folder / f"{session_id}.jsonl"
    if not transcript.is_absolute():
        transcript = folder / transcript
    if not transcript.is_file() and (folder / f"{session_id}.jsonl").is_file():
        transcript = folder / f"{session_id}.jsonl"  # moved with the folder: the absolute path is stale
    return Session(agent_id, key, session_id, transcript, conversation)


def conversation_of(key: str, entry: dict[str, Any]) -> ImportedConversation | None:
    """The conversation a session key names (None: an internal session)."""
    parts = key.strip().lower().split(":")
    rest = parts[2:] if len(parts) >= 2 and parts[0] == "agent" else parts
    if rest and rest[0] in INTERNAL:
        return None
    thread = any(marker in rest for marker in ("thread", "topic"))
    for marker in ("thread", "topic"):
        if marker in rest:
            rest = rest[: rest.index(marker)]
    channel, kind, peer = None, "direct", ""
    if len(rest) >= 2 and rest[-2] in ("dm", "direct", "group", "channel"):
        kind = "direct" if rest[-2] in ("dm", "direct") else "group"
        peer = rest[-1]
        channel = rest[0] if len(rest) >= 3 else None
    origin: dict[str, Any] = entry["origin"] if isinstance(entry.get("origin"), dict) else {}
    channel = channel or entry.get("channel") or entry.get("lastChannel") or origin.get("provider")
    if not peer and isinstance(entry.get("lastTo"), str):
        peer = entry["lastTo"].split(":", 1)[-1]
    if kind == "direct" and entry.get("chatType") in ("group", "channel"):
        kind = "group"
    name = _channel(channel)
    title = entry.get("displayName") or entry.get("subject") or entry.get("label") or ""
    if not title:
        title = f"{name.title()} {peer}".strip() if name != IMPORTED_CHANNEL else "Imported conversation"
    return ImportedConversation(
        key=key[:400],
        channel=name,
        kind="thread" if thread else kind,  # type: ignore[arg-type]
        peer=str(peer)[:400],
        title=str(title)[:300],
    )


def _channel(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return IMPORTED_CHANNEL
    name = _CHANNEL_NAMES.get(value.lower(), value.lower())
    return name if re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name) and name != "webchat" else IMPORTED_CHANNEL


def messages(session: Session, tally: Tally) -> Iterator[ImportedMessage]:
    """The session's messages, in the transcript's order (its last branch where it has one)."""
    if not session.transcript.is_file():
        tally.skip("sessions without a transcript file")
        return
    tally.sessions += 1
    for n, entry in _branch(_entries(session, tally), tally):
        if entry["type"] != "message":
            tally.skip(f"entries: {entry['type'][:40]}")
            continue
        message = _message(session, n, entry, tally)
        if message is not None:
            tally.messages += 1
            tally.oldest = min(tally.oldest or message.sent_at, message.sent_at)
            yield message


def json_objects(lines: Iterable[bytes], where: str, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each JSON-lines line that holds an object; a line that is not
    JSON, or holds something else, is counted as unreadable (``where:line``), blank ones skipped."""
    decoder = msgspec.json.Decoder()
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            found = decoder.decode(raw)
        except msgspec.DecodeError as exc:
            tally.bad(f"{where}:{n}", f"not JSON ({exc})")
            continue
        if isinstance(found, dict):
            yield n, found
        else:
            tally.bad(f"{where}:{n}", "not an object")


def _entries(session: Session, tally: Tally) -> list[tuple[int, dict[str, Any]]]:
    """Every readable entry but the header, with its line number."""
    found = []
    with session.transcript.open("rb") as lines:
        for n, entry in json_objects(lines, session.transcript.name, tally):
            if not isinstance(entry.get("type"), str):
                tally.bad(f"{session.transcript.name}:{n}", "not an entry (no type)")
            elif entry["type"] != "session":
                found.append((n, entry))
    return found


def _branch(entries: list[tuple[int, dict[str, Any]]], tally: Tally) -> list[tuple[int, dict[str, Any]]]:
    """Entries with ids form a tree: the path from the last one back to the root. Without
    ids (the first format), or with a parent missing, the file's order is the conversation."""
    if not entries or not all(isinstance(e.get("id"), str) for _, e in entries):
        return entries
    by_id = {entry["id"]: (n, entry) for n, entry in entries}
    path: list[tuple[int, dict[str, Any]]] = []
    at: Any = entries[-1][1]["id"]
    while isinstance(at, str) and at in by_id and len(path) < len(entries):
        path.append(by_id[at])
        at = by_id[at][1].get("parentId")
    if at not in (None, ""):  # a parent that is not in the file: no tree to trust
        return entries
    if len(path) < len(entries):
        tally.skip("entries on other branches (edited or retried)", len(entries) - len(path))
    return path[::-1]


def _message(session: Session, n: int, entry: dict[str, Any], tally: Tally) -> ImportedMessage | None:
    body = entry.get("message")
    if not isinstance(body, dict):
        tally.bad(f"{session.transcript.name}:{n}", "a message entry without a message")
        return None
    role = body.get("role")
    if role not in ("user", "assistant"):
        tally.skip("tool results" if role == "toolResult" else f"messages with role {str(role)[:30]}")
        return None
    text = _text(body.get("content"))
    sender = ""
    if role == "user":
        text, sender = clean_user_text(text)
    if not text.strip():
        tally.skip("messages without text (tool calls, images)")
        return None
    sent_at = _time(body.get("timestamp")) or _time(entry.get("timestamp"))
    if sent_at is None:
        tally.bad(f"{session.transcript.name}:{n}", "a message without a time")
        return None
    usage: dict[str, Any] = body["usage"] if isinstance(body.get("usage"), dict) else {}
    mirror = body.get("model") == "delivery-mirror"
    model = (
        body.get("model")
        if role == "assistant" and isinstance(body.get("model"), str) and not mirror
        else None
    )
    line_key = entry.get("id") if isinstance(entry.get("id"), str) else f"L{n}"
    return ImportedMessage(
        line=f"{session.agent_id}/{session.session_id}:{line_key}"[:400],
        conversation=session.conversation.key,
        direction="in" if role == "user" else "out",
        text=text.strip(),
        sent_at=sent_at,
        sender_name=sender[:200],
        model=model[:200] if model else None,
        tokens_in=_count(usage, "input") + _count(usage, "cacheRead") + _count(usage, "cacheWrite"),
        tokens_out=_count(usage, "output"),
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )  # fmt: skip
    return ""


def clean_user_text(text: str) -> tuple[str, str]:
    """(the person's own words, the sender's name from the envelope or "")."""
    sender = ""
    found = _ENVELOPE.match(text)
    if found is not None:
        sender = _FROM_END.sub("", found["rest"]).strip()
        text = text[found.end() :]
    elif (stamped := _TIMESTAMPED.match(text)) is not None:
        text = text[stamped.end() :]
    text = _MESSAGE_ID_LINE.sub("", text)
    return text.strip(), sender


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0
