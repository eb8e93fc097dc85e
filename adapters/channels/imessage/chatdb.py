"""Reading the Messages database (``~/Library/Messages/chat.db``), read-only.

Every read opens ``file:<path>?mode=ro`` with ``PRAGMA query_only=1`` and runs in a worker
thread (``asyncio.to_thread``), inside one read transaction so the scans of a poll see one
snapshot. Never ``immutable=1``: that ignores the WAL, where Messages writes new rows
first. The schema differs between macOS versions (``date_retracted`` and
``associated_message_emoji`` arrived in macOS 26, ``date_edited`` in 13), so optional
columns are looked up with ``PRAGMA table_info`` and read as 0/NULL when absent.

New messages have increasing ROWIDs; edits and unsends change rows in place, so the
cursor also keeps the newest ``date_edited`` and ``date_retracted`` seen.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import msgspec

from adapters.channels.imessage.dates import to_apple, units_per_second
from adapters.channels.imessage.rows import AttachmentRow, Change, ChatRow, Cursor, MessageRow

__all__ = ["Batch", "ChatDB", "Cursor", "FullDiskAccessRequired"]

T = TypeVar("T")

_IN_CHUNK = 500  # ids per "IN (...)" list: far below SQLite's variable limit
# Messages allows an edit for 15 minutes and an unsend for 2 after sending, so only the
# newest rows can change in place: the edit and unsend scans read this many ROWIDs back (a
# primary-key range) instead of the whole table on every poll.
EDIT_WINDOW_ROWS = 20_000

# Optional message columns and what they read as when a macOS version lacks them.
_MESSAGE_OPTIONAL = {
    "attributedBody": "NULL",
    "date_edited": "0",
    "date_retracted": "0",
    "service": "NULL",
    "associated_message_guid": "NULL",
    "associated_message_type": "0",
    "associated_message_emoji": "NULL",
    "thread_originator_guid": "NULL",
    "item_type": "0",
}
_CHAT_OPTIONAL = ("chat_identifier", "display_name", "service_name")
_ATTACHMENT_OPTIONAL = {
    "mime_type": "NULL",
    "uti": "NULL",
    "transfer_name": "NULL",
    "total_bytes": "NULL",
    "is_sticker": "0",
}
_PERMISSION_HINTS = ("unable to open database file", "authorization denied", "not authorized")


class FullDiskAccessRequired(Exception):
    """macOS keeps chat.db from this program: it needs Full Disk Access."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"The Personal Bridge cannot read the Messages database ({path}): {detail}. "
            "Open System Settings → Privacy & Security → Full Disk Access, add the bridge "
            "(the app, or the Python it runs with) and turn it on, then restart the bridge."
        )
        self.path = path
        self.detail = detail


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """What one poll read: the rows to normalize, the cursor after them, how many new rows
    had no chat (skipped), and whether the database was rebuilt (cursor reset to now)."""

    rows: tuple[MessageRow, ...]
    cursor: Cursor
    orphans: int = 0
    rebuilt: bool = False


class _Schema(msgspec.Struct, frozen=True):
    message: frozenset[str]
    chat: frozenset[str]
    attachment: frozenset[str]

    def message_expr(self, name: str) -> str:
        """``m.<name>`` when the column exists, else its stand-in (``0``/``NULL``)."""
        if name not in self.message:
            return _MESSAGE_OPTIONAL[name]
        fallback = _MESSAGE_OPTIONAL[name]
        return f"COALESCE(m.{name}, {fallback})" if fallback != "NULL" else f"m.{name}"

    def message_columns(self) -> str:
        optional = ", ".join(f"{self.message_expr(name)} AS {name}" for name in _MESSAGE_OPTIONAL)
        chat = ", ".join(
            f"c.{name} AS chat_{name}" if name in self.chat else f"NULL AS chat_{name}"
            for name in _CHAT_OPTIONAL
        )
        return (
            "m.ROWID AS rowid, m.guid AS guid, m.text AS text, COALESCE(m.date, 0) AS date, "
            "COALESCE(m.is_from_me, 0) AS is_from_me, h.id AS handle, "
            f"{optional}, c.ROWID AS chat_rowid, c.guid AS chat_guid, c.style AS chat_style, {chat}"
        )

    def attachment_columns(self) -> str:
        return ", ".join(
            f"a.{name} AS {name}" if name in self.attachment else f"{fallback} AS {name}"
            for name, fallback in _ATTACHMENT_OPTIONAL.items()
        )


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _placeholders(values: Sequence[int]) -> str:
    return ", ".join("?" * len(values))


class ChatDB:
    """Read-only access to one chat.db. ``home`` expands ``~`` in attachment paths (the
    Mac user's home: the default)."""

    def __init__(
        self, path: Path, *, home: Path | None = None, batch_size: int = 500, orphan_grace: float = 5.0
    ) -> None:
        self.path = path
        self.home = home if home is not None else Path.home()
        self.batch_size = batch_size
        self.orphan_grace = orphan_grace
        self.edit_window_rows = EDIT_WINDOW_ROWS
        self._orphans_seen: dict[int, float] = {}  # ROWID → when this reader first saw it chatless

    # --- the async surface: each call is one connection in a worker thread -------------

    async def max_rowid(self) -> int:
        """The newest message ROWID (0 for an empty database)."""
        return await self._run(self._max_rowid)

    async def now_cursor(self) -> Cursor:
        """The cursor at "now": the newest ROWID and the newest edit and unsend marks."""
        return await self._run(self._now_cursor)

    async def changes_after(self, cursor: Cursor) -> Batch:
        """New rows after ``cursor.rowid`` (up to ``batch_size``; orphans skipped and
        counted once they stayed chatless for ``orphan_grace`` seconds), then rows edited or
        retracted after its marks, with the cursor after them. A database whose newest ROWID
        is below the cursor was rebuilt: nothing is returned and the cursor restarts from now."""
        return await self._run(lambda conn, schema: self._changes_after(conn, schema, cursor))

    async def recent(self, *, days: int = 14, per_chat: int = 50, now: datetime | None = None) -> Batch:
        """The last ``per_chat`` messages (no tapbacks, no system rows) of every chat with a
        message in the ``days`` before ``now``, oldest first, and the cursor at now."""
        moment = now or datetime.now(UTC)
        return await self._run(lambda conn, schema: self._recent(conn, schema, days, per_chat, moment))

    async def attachment_path(self, guid: str) -> Path | None:
        """Where the Mac keeps the attachment ``guid`` (None: unknown, or not downloaded)."""

        def find(conn: sqlite3.Connection, schema: _Schema) -> str | None:
            row = conn.execute("SELECT filename FROM attachment WHERE guid = ?", (guid,)).fetchone()
            return None if row is None else self._expand(row["filename"])

        found = await self._run(find)
        return None if found is None else Path(found)

    # --- connection and errors ------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection, _Schema], T]) -> T:
        return await asyncio.to_thread(self._read, work)

    def _read(self, work: Callable[[sqlite3.Connection, _Schema], T]) -> T:
        try:
            with self._connect() as conn:
                conn.execute("BEGIN")  # one snapshot for every scan of this read
                try:
                    return work(conn, self._schema(conn))
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")  # nothing was written: ending the read is all
        except PermissionError as exc:
            raise FullDiskAccessRequired(self.path, str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if any(hint in str(exc).lower() for hint in _PERMISSION_HINTS):
                raise FullDiskAccessRequired(self.path, str(exc)) from exc
            raise

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.stat()  # a missing file is not a permission problem: say which it is
        except FileNotFoundError:
            raise FileNotFoundError(f"No Messages database at {self.path}") from None
        conn = sqlite3.connect(
            f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=5.0, isolation_level=None
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=1")
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _schema(conn: sqlite3.Connection) -> _Schema:
        def columns(table: str) -> frozenset[str]:
            return frozenset(str(row["name"]) for row in conn.execute(f"PRAGMA table_info({table})"))

        return _Schema(message=columns("message"), chat=columns("chat"), attachment=columns("attachment"))

    # --- the reads ------------------------------------------------------------------------

    @staticmethod
    def _max_rowid(conn: sqlite3.Connection, schema: _Schema) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(ROWID), 0) FROM message").fetchone()[0])

    def _now_cursor(self, conn: sqlite3.Connection, schema: _Schema) -> Cursor:
        edited = schema.message_expr("date_edited")
        retracted = schema.message_expr("date_retracted")
        row = conn.execute(
            f"SELECT COALESCE(MAX(ROWID), 0), COALESCE(MAX({edited}), 0), COALESCE(MAX({retracted}), 0) "
            "FROM message AS m"
        ).fetchone()
        return Cursor(rowid=int(row[0]), edit_mark=int(row[1]), retract_mark=int(row[2]), started=True)

    def _changes_after(self, conn: sqlite3.Connection, schema: _Schema, cursor: Cursor) -> Batch:
        newest = self._max_rowid(conn, schema)
        if newest < cursor.rowid:
            return Batch(rows=(), cursor=self._now_cursor(conn, schema), rebuilt=True)
        select = self._select(schema)
        fresh, orphans = self._settled(
            conn.execute(
                f"{select} WHERE m.ROWID > ? ORDER BY m.ROWID LIMIT ?", (cursor.rowid, self.batch_size)
            ).fetchall()
        )
        upto = int(fresh[-1]["rowid"]) if fresh else cursor.rowid
        # Only rows already handed out can be edited or retracted: newer ones are read as
        # they are now.
        window = (max(cursor.rowid - self.edit_window_rows, 0), cursor.rowid)
        edited = conn.execute(
            f"{select} WHERE m.ROWID > ? AND m.ROWID <= ? AND {schema.message_expr('date_edited')} > ? "
            "ORDER BY date_edited, m.ROWID",
            (*window, cursor.edit_mark),
        ).fetchall()
        retracted: list[sqlite3.Row] = []
        if "date_retracted" in schema.message:
            retracted = conn.execute(
                f"{select} WHERE m.ROWID > ? AND m.ROWID <= ? AND m.date_retracted > ? "
                "ORDER BY m.date_retracted, m.ROWID",
                (*window, cursor.retract_mark),
            ).fetchall()
        changes: list[tuple[sqlite3.Row, Change]] = [
            *((row, "new") for row in fresh),
            *((row, "edited") for row in edited),
            *((row, "retracted") for row in retracted),
        ]
        with_chat = [(row, change) for row, change in changes if row["chat_guid"] is not None]
        rows = self._build(conn, schema, with_chat)
        seen = [*fresh, *edited, *retracted]
        after = Cursor(
            rowid=upto,
            edit_mark=max([cursor.edit_mark, *(int(row["date_edited"]) for row in seen)]),
            retract_mark=max([cursor.retract_mark, *(int(row["date_retracted"]) for row in seen)]),
            started=True,
        )
        return Batch(rows=rows, cursor=after, orphans=orphans)

    def _settled(self, fresh: list[sqlite3.Row]) -> tuple[list[sqlite3.Row], int]:
        """The new rows up to the first orphan that may still be getting its chat (its
        ``chat_message_join`` row may be written after it), and how many orphans are given up.

        A row without a chat is waited for, for ``orphan_grace`` seconds from when this reader
        first saw it, then skipped for good: the cursor passes it and it is counted.
        """
        now = time.monotonic()
        settled: list[sqlite3.Row] = []
        given_up = 0
        for row in fresh:
            rowid = int(row["rowid"])
            if row["chat_guid"] is None:
                first_seen = self._orphans_seen.setdefault(rowid, now)
                if now - first_seen < self.orphan_grace:
                    break
                given_up += 1
            settled.append(row)
        if settled:
            last = int(settled[-1]["rowid"])
            self._orphans_seen = {rowid: at for rowid, at in self._orphans_seen.items() if rowid > last}
        return settled, given_up

    def _recent(
        self, conn: sqlite3.Connection, schema: _Schema, days: int, per_chat: int, now: datetime
    ) -> Batch:
        cursor = self._now_cursor(conn, schema)
        newest_date = conn.execute("SELECT COALESCE(MAX(date), 0) FROM message").fetchone()[0]
        since = to_apple(now - timedelta(days=days), units_per_second(int(newest_date or 0)))
        chats = [
            int(row[0])
            for row in conn.execute(
                "SELECT j.chat_id FROM chat_message_join AS j JOIN message AS m ON m.ROWID = j.message_id "
                "WHERE m.date >= ? GROUP BY j.chat_id ORDER BY j.chat_id",
                (since,),
            )
        ]
        ordinary = (
            f"{schema.message_expr('associated_message_type')} = 0 AND {schema.message_expr('item_type')} = 0"
        )
        found: list[sqlite3.Row] = []
        for chat_rowid in chats:
            found.extend(
                conn.execute(
                    f"{self._select(schema, chat_of='j.chat_id')} "
                    f"WHERE j.chat_id = ? AND {ordinary} ORDER BY m.date DESC, m.ROWID DESC LIMIT ?",
                    (chat_rowid, per_chat),
                ).fetchall()
            )
        found.sort(key=lambda row: (int(row["date"]), int(row["rowid"])))
        news: list[tuple[sqlite3.Row, Change]] = [(row, "new") for row in found]
        return Batch(rows=self._build(conn, schema, news), cursor=cursor)

    @staticmethod
    def _select(schema: _Schema, *, chat_of: str | None = None) -> str:
        """The message SELECT with its sender and chat. A message in several chats (rare)
        belongs to the first; ``chat_of`` names a join that already fixes the chat."""
        if chat_of is None:
            chat_join = (
                "LEFT JOIN chat AS c ON c.ROWID = "
                "(SELECT MIN(cm.chat_id) FROM chat_message_join AS cm WHERE cm.message_id = m.ROWID)"
            )
            source = "message AS m"
        else:
            chat_join = f"JOIN chat AS c ON c.ROWID = {chat_of}"
            source = "chat_message_join AS j JOIN message AS m ON m.ROWID = j.message_id"
        return (
            f"SELECT {schema.message_columns()} FROM {source} "
            f"LEFT JOIN handle AS h ON h.ROWID = m.handle_id {chat_join}"
        )

    def _build(
        self, conn: sqlite3.Connection, schema: _Schema, found: Iterable[tuple[sqlite3.Row, Change]]
    ) -> tuple[MessageRow, ...]:
        pairs = list(found)
        chats = self._participants(conn, sorted({int(row["chat_rowid"]) for row, _ in pairs}))
        files = self._attachments(conn, schema, sorted({int(row["rowid"]) for row, _ in pairs}))
        return tuple(self._message(row, change, chats, files) for row, change in pairs)

    @staticmethod
    def _participants(conn: sqlite3.Connection, chat_rowids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = {}
        for chunk in _chunks(chat_rowids):
            for row in conn.execute(
                "SELECT j.chat_id, h.id FROM chat_handle_join AS j JOIN handle AS h ON h.ROWID = j.handle_id "
                f"WHERE j.chat_id IN ({_placeholders(chunk)}) ORDER BY j.chat_id, h.ROWID",
                tuple(chunk),
            ):
                found.setdefault(int(row[0]), []).append(str(row[1]))
        return {chat: tuple(handles) for chat, handles in found.items()}

    def _attachments(
        self, conn: sqlite3.Connection, schema: _Schema, message_rowids: Sequence[int]
    ) -> dict[int, tuple[AttachmentRow, ...]]:
        found: dict[int, list[AttachmentRow]] = {}
        for chunk in _chunks(message_rowids):
            for row in conn.execute(
                f"SELECT j.message_id AS message_id, a.guid AS guid, a.filename AS filename, "
                f"{schema.attachment_columns()} FROM message_attachment_join AS j "
                "JOIN attachment AS a ON a.ROWID = j.attachment_id "
                f"WHERE j.message_id IN ({_placeholders(chunk)}) ORDER BY j.message_id, a.ROWID",
                tuple(chunk),
            ):
                found.setdefault(int(row["message_id"]), []).append(
                    AttachmentRow(
                        guid=str(row["guid"]),
                        path=self._expand(row["filename"]),
                        mime=row["mime_type"],
                        uti=row["uti"],
                        transfer_name=row["transfer_name"],
                        total_bytes=int(row["total_bytes"]) if row["total_bytes"] is not None else None,
                        is_sticker=bool(row["is_sticker"]),
                    )
                )
        return {message: tuple(rows) for message, rows in found.items()}

    def _expand(self, filename: str | None) -> str | None:
        """``~/Library/…`` → the Mac user's home; other paths as they are."""
        if not filename:
            return None
        if filename == "~" or filename.startswith("~/"):
            return str(self.home / filename[2:])
        return filename

    @staticmethod
    def _message(
        row: sqlite3.Row,
        change: Change,
        chats: dict[int, tuple[str, ...]],
        files: dict[int, tuple[AttachmentRow, ...]],
    ) -> MessageRow:
        chat = ChatRow(
            rowid=int(row["chat_rowid"]),
            guid=str(row["chat_guid"]),
            style=int(row["chat_style"] or 0),
            chat_identifier=row["chat_chat_identifier"],
            display_name=row["chat_display_name"],
            service_name=row["chat_service_name"],
            participants=chats.get(int(row["chat_rowid"]), ()),
        )
        body = row["attributedBody"]
        return MessageRow(
            rowid=int(row["rowid"]),
            guid=str(row["guid"]),
            chat=chat,
            text=row["text"],
            attributed_body=bytes(body) if body is not None else None,
            date=int(row["date"]),
            date_edited=int(row["date_edited"]),
            date_retracted=int(row["date_retracted"]),
            is_from_me=bool(row["is_from_me"]),
            handle=row["handle"],
            service=row["service"],
            associated_message_guid=row["associated_message_guid"],
            associated_message_type=int(row["associated_message_type"]),
            associated_message_emoji=row["associated_message_emoji"],
            thread_originator_guid=row["thread_originator_guid"],
            item_type=int(row["item_type"]),
            attachments=files.get(int(row["rowid"]), ()),
            change=change,
        )
