"""The bridge's durable state on the device (SQLite, ``<data>/bridge.db``).

- ``outbox``: every canonical event a channel produced, numbered (the local sequence),
  written in the same transaction as the channel's cursor moving past it, kept until the
  cloud acks it. A crash at any point resends what was not acked, never skips anything.
- ``cursors``: each channel's position in its source (e.g. chat.db's ROWID and marks).
- ``executed``: the outcome of each command the device carried out, so a command the
  cloud delivers again is answered from here and not sent twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec

from domain import tunnel as t
from domain.events import Event

DB_FILE = "bridge.db"
T = TypeVar("T")

_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, cursor BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS executed (command_id TEXT PRIMARY KEY, result BLOB NOT NULL);
"""


class LocalStore:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(data_dir / DB_FILE, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._db)

        return await asyncio.to_thread(locked)

    def close(self) -> None:
        self._db.close()

    # --- outbox and cursors -------------------------------------------------------------

    async def record(
        self, events: Sequence[Event], source: str | None = None, cursor: bytes | None = None
    ) -> None:
        """Queue ``events`` and move ``source``'s cursor, in one transaction."""
        rows = [(self._encoder.encode(event),) for event in events]

        def write(db: sqlite3.Connection) -> None:
            with db:  # BEGIN … COMMIT
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO outbox (event) VALUES (?)", rows)
                if source is not None and cursor is not None:
                    db.execute(
                        "INSERT INTO cursors (source, cursor) VALUES (?, ?)"
                        " ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor",
                        (source, cursor),
                    )

        await self._run(write)

    async def cursor(self, source: str) -> bytes | None:
        def read(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT cursor FROM cursors WHERE source = ?", (source,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(read)

    async def pending(self, after: int = 0, limit: int = 200) -> list[tuple[int, bytes]]:
        """Queued events after local sequence ``after``, oldest first."""

        def read(db: sqlite3.Connection) -> list[tuple[int, bytes]]:
            rows = db.execute(
                "SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
            return [(int(seq), bytes(event)) for seq, event in rows]

        return await self._run(read)

    async def acked(self, seq: int) -> None:
        """The cloud stored every event up to ``seq``: forget them."""
        await self._run(lambda db: db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)))

    async def dropped(self, seq: int) -> None:
        """The cloud refused the event ``seq`` for good: forget it alone."""
        await self._run(lambda db: db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)))

    async def depth(self) -> int:
        def read(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])

        return await self._run(read)

    # --- commands -----------------------------------------------------------------------

    async def executed(self, command_id: str) -> t.Result | None:
        def read(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT result FROM executed WHERE command_id = ?", (command_id,)).fetchone()
            return None if row is None else bytes(row[0])

        raw = await self._run(read)
        return None if raw is None else msgspec.json.decode(raw, type=t.Result)

    async def remember(self, result: t.Result) -> None:
        encoded = self._encoder.encode(result)
        await self._run(
            lambda db: db.execute(
                "INSERT INTO executed (command_id, result) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (result.id, encoded),
            )
        )
