"""A builder of chat.db files shaped like the one Messages keeps (tests only).

The DDL has the tables and columns the bridge reads, as macOS 26 has them (``message``
with ``attributedBody``, ``date_edited``, ``date_retracted``,
``associated_message_emoji``, ``message_summary_info``; ``chat``, ``handle``,
``attachment`` and the join tables), in WAL mode as on a Mac. ``profile="macos14"``
leaves out the columns macOS 26 added. Rows follow Messages' own conventions: bare
uppercase guids, style 45 for one-to-one chats (``iMessage;-;+1555…``) and 43 for groups
(``any;+;chat…``), nanosecond Apple-epoch dates, modern rows with ``text`` NULL and the
words in ``attributedBody``, tapbacks pointing at ``p:0/<GUID>``, edits and unsends made
in place, attachments under ``~/Library/Messages/Attachments/``.

The builder keeps its connection open, so a test can write while the bridge reads (the
new rows sit in the WAL until a checkpoint).
"""

from __future__ import annotations

import plistlib
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from tests.fakes.imessage_typedstream import encode_attributed_body

Profile = Literal["macos26", "macos14"]
APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
NEW_IN_MACOS26 = ("date_retracted", "associated_message_emoji")

_MESSAGE_COLUMNS = """
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, text TEXT, replace INTEGER DEFAULT 0,
    service_center TEXT, handle_id INTEGER DEFAULT 0, subject TEXT, country TEXT, attributedBody BLOB,
    version INTEGER DEFAULT 0, type INTEGER DEFAULT 0, service TEXT, account TEXT, account_guid TEXT,
    error INTEGER DEFAULT 0, date INTEGER, date_read INTEGER, date_delivered INTEGER,
    is_delivered INTEGER DEFAULT 0, is_finished INTEGER DEFAULT 0, is_emote INTEGER DEFAULT 0,
    is_from_me INTEGER DEFAULT 0, is_empty INTEGER DEFAULT 0, is_delayed INTEGER DEFAULT 0,
    is_auto_reply INTEGER DEFAULT 0, is_prepared INTEGER DEFAULT 0, is_read INTEGER DEFAULT 0,
    is_system_message INTEGER DEFAULT 0, is_sent INTEGER DEFAULT 0, has_dd_results INTEGER DEFAULT 0,
    is_service_message INTEGER DEFAULT 0, is_forward INTEGER DEFAULT 0, was_downgraded INTEGER DEFAULT 0,
    is_archive INTEGER DEFAULT 0, cache_has_attachments INTEGER DEFAULT 0, cache_roomnames TEXT,
    was_data_detected INTEGER DEFAULT 0, was_deduplicated INTEGER DEFAULT 0,
    is_audio_message INTEGER DEFAULT 0, is_played INTEGER DEFAULT 0, date_played INTEGER,
    item_type INTEGER DEFAULT 0, other_handle INTEGER DEFAULT 0,
    group_title TEXT, group_action_type INTEGER DEFAULT 0, share_status INTEGER DEFAULT 0,
    share_direction INTEGER DEFAULT 0, is_expirable INTEGER DEFAULT 0, expire_state INTEGER DEFAULT 0,
    message_action_type INTEGER DEFAULT 0, message_source INTEGER DEFAULT 0,
    associated_message_guid TEXT DEFAULT NULL, associated_message_type INTEGER DEFAULT 0,
    balloon_bundle_id TEXT DEFAULT NULL, payload_data BLOB, expressive_send_style_id TEXT DEFAULT NULL,
    associated_message_range_location INTEGER DEFAULT 0, associated_message_range_length INTEGER DEFAULT 0,
    time_expressive_send_played INTEGER DEFAULT 0, message_summary_info BLOB DEFAULT NULL,
    ck_sync_state INTEGER DEFAULT 0, ck_record_id TEXT DEFAULT NULL, ck_record_change_tag TEXT DEFAULT NULL,
    destination_caller_id TEXT DEFAULT NULL, is_corrupt INTEGER DEFAULT 0, reply_to_guid TEXT DEFAULT NULL,
    sort_id INTEGER DEFAULT 0, is_spam INTEGER DEFAULT 0, has_unseen_mention INTEGER DEFAULT 0,
    thread_originator_guid TEXT DEFAULT NULL, thread_originator_part TEXT DEFAULT NULL,
    syndication_ranges TEXT DEFAULT NULL, synced_syndication_ranges TEXT DEFAULT NULL,
    was_delivered_quietly INTEGER DEFAULT 0, did_notify_recipient INTEGER DEFAULT 0,
    date_retracted INTEGER DEFAULT 0, date_edited INTEGER DEFAULT 0, was_detonated INTEGER DEFAULT 0,
    part_count INTEGER DEFAULT 0, is_stewie INTEGER DEFAULT 0, is_kt_verified INTEGER DEFAULT 0,
    is_sos INTEGER DEFAULT 0, is_critical INTEGER DEFAULT 0, bia_reference_id TEXT DEFAULT NULL,
    fallback_hash TEXT DEFAULT NULL, associated_message_emoji TEXT DEFAULT NULL,
    is_pending_satellite_send INTEGER DEFAULT 0, needs_relay INTEGER DEFAULT 0,
    schedule_type INTEGER DEFAULT 0, schedule_state INTEGER DEFAULT 0,
    sent_or_received_off_grid INTEGER DEFAULT 0
"""

_OTHER_TABLES = """
CREATE TABLE _SqliteDatabaseProperties (key TEXT, value TEXT, UNIQUE(key));
CREATE TABLE handle (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, id TEXT NOT NULL, country TEXT,
    service TEXT NOT NULL, uncanonicalized_id TEXT, person_centric_id TEXT, UNIQUE (id, service)
);
CREATE TABLE chat (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, style INTEGER, state INTEGER,
    account_id TEXT, properties BLOB, chat_identifier TEXT, service_name TEXT, room_name TEXT,
    account_login TEXT, is_archived INTEGER DEFAULT 0, last_addressed_handle TEXT, display_name TEXT,
    group_id TEXT, is_filtered INTEGER DEFAULT 0, successful_query INTEGER, engram_id TEXT,
    server_change_token TEXT, ck_sync_state INTEGER DEFAULT 0, original_group_id TEXT,
    last_read_message_timestamp INTEGER DEFAULT 0, cloudkit_record_id TEXT, last_addressed_sim_id TEXT,
    is_blackholed INTEGER DEFAULT 0, syndication_date INTEGER DEFAULT 0, syndication_type INTEGER DEFAULT 0,
    is_recovered INTEGER DEFAULT 0, is_deleting_incoming_messages INTEGER DEFAULT 0,
    is_pending_review INTEGER DEFAULT 0
);
CREATE TABLE attachment (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, created_date INTEGER DEFAULT 0,
    start_date INTEGER DEFAULT 0, filename TEXT, uti TEXT, mime_type TEXT, transfer_state INTEGER DEFAULT 0,
    is_outgoing INTEGER DEFAULT 0, user_info BLOB, transfer_name TEXT, total_bytes INTEGER DEFAULT 0,
    is_sticker INTEGER DEFAULT 0, sticker_user_info BLOB, attribution_info BLOB,
    hide_attachment INTEGER DEFAULT 0, ck_sync_state INTEGER DEFAULT 0, ck_server_change_token_blob BLOB,
    ck_record_id TEXT, original_guid TEXT UNIQUE NOT NULL, sr_ck_sync_state INTEGER DEFAULT 0,
    sr_ck_server_change_token_blob BLOB, sr_ck_record_id TEXT, is_commsafety_sensitive INTEGER DEFAULT 0,
    emoji_image_content_identifier TEXT DEFAULT NULL, emoji_image_short_description TEXT DEFAULT NULL,
    preview_generation_state INTEGER DEFAULT 0
);
CREATE TABLE chat_handle_join (
    chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
    handle_id INTEGER REFERENCES handle (ROWID) ON DELETE CASCADE, UNIQUE(chat_id, handle_id)
);
CREATE TABLE chat_message_join (
    chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
    message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE, message_date INTEGER DEFAULT 0,
    PRIMARY KEY (chat_id, message_id)
);
CREATE TABLE message_attachment_join (
    message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
    attachment_id INTEGER REFERENCES attachment (ROWID) ON DELETE CASCADE, UNIQUE(message_id, attachment_id)
);
CREATE TABLE deleted_messages (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, guid TEXT NOT NULL);
CREATE INDEX message_idx_date ON message(date);
CREATE INDEX message_idx_handle ON message(handle_id, date);
CREATE INDEX chat_message_join_idx_message_id_only ON chat_message_join(message_id);
CREATE INDEX chat_message_join_idx_message_date_id_chat_id
    ON chat_message_join(chat_id, message_date, message_id);
CREATE INDEX message_attachment_join_idx_message_id ON message_attachment_join(message_id);
"""


def apple_ns(moment: datetime) -> int:
    """A datetime as chat.db stores it: nanoseconds since 2001-01-01 UTC."""
    delta = moment - APPLE_EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000


def new_guid() -> str:
    return str(uuid.uuid4()).upper()


@dataclass(frozen=True)
class Chat:
    rowid: int
    guid: str
    handles: tuple[int, ...]


@dataclass(frozen=True)
class Message:
    rowid: int
    guid: str


class ChatDBBuilder:
    """Creates ``path`` and fills it; every helper commits (readers see it at once)."""

    def __init__(self, path: Path, *, profile: Profile = "macos26", start: datetime | None = None) -> None:
        self.path = path
        self.profile = profile
        self.clock = start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA wal_autocheckpoint=0")  # new rows stay in the WAL, as between checkpoints
        columns = _MESSAGE_COLUMNS
        if profile == "macos14":
            kept = [part for part in columns.split(",") if part.split()[0] not in NEW_IN_MACOS26]
            columns = ",".join(kept)
        self.conn.executescript(f"CREATE TABLE message ({columns});\n{_OTHER_TABLES}")
        self.conn.execute("INSERT INTO _SqliteDatabaseProperties VALUES ('_ClientVersion', '18026')")

    @classmethod
    def attach(
        cls, path: Path, *, profile: Profile = "macos26", start: datetime | None = None
    ) -> ChatDBBuilder:
        """Another writer on an existing file (its own connection), as a second Messages process."""
        builder = cls.__new__(cls)
        builder.path, builder.profile = path, profile
        builder.clock = start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
        builder.conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        return builder

    def close(self) -> None:
        self.conn.close()

    def tick(self, seconds: float = 1.0) -> int:
        """Move the builder's clock on; return the new time as a chat.db date."""
        self.clock += timedelta(seconds=seconds)
        return apple_ns(self.clock)

    # --- handles and chats -----------------------------------------------------------------

    def add_handle(self, handle: str, service: str = "iMessage") -> int:
        """The ROWID of the handle, added when it is new (one row per id and service)."""
        known = self.conn.execute("SELECT ROWID FROM handle WHERE id = ? AND service = ?", (handle, service))
        found = known.fetchone()
        if found is not None:
            return int(found[0])
        cur = self.conn.execute(
            "INSERT INTO handle (id, country, service, uncanonicalized_id, person_centric_id)"
            " VALUES (?, 'us', ?, ?, ?)",
            (handle, service, handle, new_guid()),
        )
        return int(cur.lastrowid or 0)

    def direct_chat(self, handle: str, *, service: str = "iMessage", prefix: str | None = None) -> Chat:
        """A one-to-one chat (style 45): guid ``<service>;-;<handle>`` (``any;-;…`` on macOS 26
        when ``prefix="any"``)."""
        handle_rowid = self.add_handle(handle, service)
        guid = f"{prefix or service};-;{handle}"
        return self._chat(guid, 45, handle, service, None, (handle_rowid,))

    def group_chat(self, handles: list[str], *, display_name: str | None = None, prefix: str = "any") -> Chat:
        """A group chat (style 43): guid ``<prefix>;+;chat<digits>``."""
        identifier = f"chat{uuid.uuid4().int % 10**18:018d}"
        rowids = tuple(self.add_handle(handle) for handle in handles)
        return self._chat(f"{prefix};+;{identifier}", 43, identifier, "iMessage", display_name, rowids)

    def _chat(
        self, guid: str, style: int, identifier: str, service: str, display_name: str | None,
        handles: tuple[int, ...],
    ) -> Chat:  # fmt: skip
        cur = self.conn.execute(
            "INSERT INTO chat (guid, style, state, chat_identifier, service_name, display_name, group_id,"
            " account_login) VALUES (?, ?, 3, ?, ?, ?, ?, 'E:me@icloud.com')",
            (guid, style, identifier, service, display_name or "", new_guid()),
        )
        rowid = int(cur.lastrowid or 0)
        for handle_rowid in handles:
            self.conn.execute(
                "INSERT INTO chat_handle_join (chat_id, handle_id) VALUES (?, ?)", (rowid, handle_rowid)
            )
        return Chat(rowid=rowid, guid=guid, handles=handles)

    # --- messages ----------------------------------------------------------------------------

    def message(
        self,
        chat: Chat | None,
        text: str | None,
        *,
        from_handle: int | None = None,
        is_from_me: bool = False,
        body_only: bool = True,
        date: int | None = None,
        guid: str | None = None,
        associated_guid: str | None = None,
        associated_type: int = 0,
        associated_emoji: str | None = None,
        thread_originator: str | None = None,
        item_type: int = 0,
        has_attachments: bool = False,
    ) -> Message:
        """A message row. ``body_only`` (the modern default) writes ``text`` NULL and the
        words as ``attributedBody``; a ``chat`` of None leaves an orphan row. The sender is
        the chat's first handle unless ``from_handle`` says otherwise; 0 when from me."""
        guid = guid or new_guid()
        date = date if date is not None else self.tick()
        handle_id = (
            0
            if is_from_me
            else (from_handle if from_handle is not None else (chat.handles[0] if chat else 0))
        )
        values: dict[str, object] = {
            "guid": guid,
            "text": None if (body_only and text is not None) else text,
            "attributedBody": encode_attributed_body(text) if text is not None else None,
            "handle_id": handle_id,
            "service": "iMessage",
            "account": "E:me@icloud.com",
            "date": date,
            "date_read": 0,
            "date_delivered": date if is_from_me else 0,
            "is_delivered": 1,
            "is_finished": 1,
            "is_from_me": int(is_from_me),
            "is_sent": int(is_from_me),
            "is_read": int(is_from_me),
            "cache_has_attachments": int(has_attachments),
            "associated_message_guid": associated_guid,
            "associated_message_type": associated_type,
            "thread_originator_guid": thread_originator,
            "thread_originator_part": "0:0:1" if thread_originator else None,
            "item_type": item_type,
            "part_count": 1,
        }
        if self.profile == "macos26":
            values["associated_message_emoji"] = associated_emoji
        names = ", ".join(values)
        cur = self.conn.execute(
            f"INSERT INTO message ({names}) VALUES ({', '.join('?' * len(values))})", tuple(values.values())
        )
        rowid = int(cur.lastrowid or 0)
        if chat is not None:
            self.conn.execute(
                "INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)",
                (chat.rowid, rowid, date),
            )
        return Message(rowid=rowid, guid=guid)

    def tapback(
        self,
        chat: Chat,
        target: Message,
        kind: int,
        *,
        from_handle: int | None = None,
        is_from_me: bool = False,
        emoji: str | None = None,
        target_text: str = "hello",
    ) -> Message:
        """A tapback row (2000-2006 add, 3000-3006 remove) pointing at ``p:0/<target guid>``,
        with the human text Messages writes beside it."""
        verb = "Loved" if kind == 2000 else "Reacted" if kind < 3000 else "Removed"
        return self.message(
            chat,
            f"{verb} {emoji or '♥'} {'from' if kind >= 3000 else 'to'} \u201c{target_text}\u201d",
            from_handle=from_handle,
            is_from_me=is_from_me,
            body_only=False,
            associated_guid=f"p:0/{target.guid}",
            associated_type=kind,
            associated_emoji=emoji,
        )

    def attachment(
        self, message: Message, name: str, *, mime: str | None = "image/jpeg", size: int = 1234,
        uti: str = "public.jpeg", sticker: bool = False,
    ) -> str:  # fmt: skip
        """An attachment of ``message`` stored as Messages does; returns its ``~/…`` filename."""
        guid = new_guid()
        filename = f"~/Library/Messages/Attachments/{guid[:2].lower()}/{guid[2:4]}/{guid}/{name}"
        cur = self.conn.execute(
            "INSERT INTO attachment (guid, original_guid, created_date, filename, uti, mime_type,"
            " transfer_state, transfer_name, total_bytes, is_sticker) VALUES (?, ?, ?, ?, ?, ?, 5, ?, ?, ?)",
            (guid, guid, apple_ns(self.clock), filename, uti, mime, name, size, int(sticker)),
        )
        self.conn.execute(
            "INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?, ?)",
            (message.rowid, int(cur.lastrowid or 0)),
        )
        self.conn.execute("UPDATE message SET cache_has_attachments = 1 WHERE ROWID = ?", (message.rowid,))
        return filename

    # --- changes in place ----------------------------------------------------------------------

    def edit(self, message: Message, new_text: str, *, date: int | None = None) -> int:
        """Edit in place as macOS 13+ does: new ``attributedBody``, ``date_edited`` set, the
        history in ``message_summary_info``. Returns the edit date."""
        edited = date if date is not None else self.tick()
        summary = plistlib.dumps(
            {"ec": {"0": [{"d": edited, "t": encode_attributed_body(new_text)}]}, "otr": {"0": {"lo": 0}}},
            fmt=plistlib.FMT_BINARY,
        )
        self.conn.execute(
            "UPDATE message SET text = NULL, attributedBody = ?, date_edited = ?, message_summary_info = ?"
            " WHERE ROWID = ?",
            (encode_attributed_body(new_text), edited, summary, message.rowid),
        )
        return edited

    def unsend(self, message: Message, *, date: int | None = None) -> int:
        """Unsend in place: the words cleared; on macOS 26 ``date_retracted`` set, before it
        only ``date_edited`` and the unsent part listed in ``message_summary_info`` (``rp``)."""
        when = date if date is not None else self.tick()
        summary = plistlib.dumps({"rp": [0], "otr": {"0": {"lo": 0}}}, fmt=plistlib.FMT_BINARY)
        if self.profile == "macos26":
            self.conn.execute(
                "UPDATE message SET text = NULL, attributedBody = NULL, date_retracted = ?, date_edited = ?,"
                " message_summary_info = ? WHERE ROWID = ?",
                (when, when, summary, message.rowid),
            )
        else:
            self.conn.execute(
                "UPDATE message SET text = NULL, attributedBody = NULL, date_edited = ?,"
                " message_summary_info = ? WHERE ROWID = ?",
                (when, summary, message.rowid),
            )
        return when
