"""The bridge's iMessage inbound side: chat.db read with a cursor, as canonical events.

The bridge runtime keeps the cursor (it persists it after the cloud has the events:
at-least-once; the event ids make a resend harmless) and calls :meth:`IMessageSource.poll`
whenever chat.db may have changed. ``Cursor()`` means "never read": the first poll only
takes the cursor at now, so connecting a Mac does not import years of history; the
recent history comes once, marked as such, from :meth:`IMessageSource.backfill`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import structlog

from adapters.channels.imessage.chatdb import ChatDB
from adapters.channels.imessage.normalize import events_for
from adapters.channels.imessage.rows import Cursor
from domain import events as ev

log = structlog.get_logger()


class IMessageSource:
    """Reads one Mac's chat.db for one connection; raises
    :class:`~adapters.channels.imessage.chatdb.FullDiskAccessRequired` when macOS refuses."""

    def __init__(
        self,
        db_path: Path,
        *,
        tenant_id: str,
        connection_id: str,
        actor: str,
        home: Path | None = None,
        batch_size: int = 500,
        orphan_grace: float = 5.0,
    ) -> None:
        self.db = ChatDB(db_path, home=home, batch_size=batch_size, orphan_grace=orphan_grace)
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self.actor = actor
        self.orphans_skipped = 0  # new rows without a chat, since this source was made

    async def start_cursor(self) -> Cursor:
        """The cursor at now: polling from it yields only what happens from here on."""
        return await self.db.now_cursor()

    async def poll(self, cursor: Cursor) -> tuple[list[ev.Event], Cursor]:
        """The events of what changed after ``cursor`` (new, edited and unsent messages,
        tapbacks) and the cursor after them. A batch holds at most ``batch_size`` new rows:
        poll again while the cursor moves."""
        if cursor == Cursor():
            return [], await self.start_cursor()
        batch = await self.db.changes_after(cursor)
        if batch.rebuilt:
            # iCloud resync or a restore renumbered the rows: what is there now is history.
            log.warning("imessage_chatdb_rebuilt", connection_id=self.connection_id, rowid=cursor.rowid)
            return [], batch.cursor
        if batch.orphans:
            self.orphans_skipped += batch.orphans
            log.info("imessage_orphans_skipped", connection_id=self.connection_id, n=batch.orphans)
        events = events_for(
            batch.rows, tenant_id=self.tenant_id, connection_id=self.connection_id, actor=self.actor
        )
        return events, batch.cursor

    async def backfill(
        self, *, days: int = 14, per_chat: int = 50, now: datetime | None = None
    ) -> list[ev.Event]:
        """The last ``per_chat`` messages of each chat active in the last ``days``, as events
        marked ``backfill=True`` (shown in the inbox; they neither wake the agent nor count
        as unread)."""
        batch = await self.db.recent(days=days, per_chat=per_chat, now=now)
        return events_for(
            batch.rows,
            tenant_id=self.tenant_id,
            connection_id=self.connection_id,
            actor=self.actor,
            backfill=True,
        )
