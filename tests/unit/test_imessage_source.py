"""Reading a chat.db built like the Mac's: the cursor, edits and unsends in place, the WAL,
a rebuilt database, orphans, backfill limits, and Full Disk Access errors."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from adapters.channels.imessage.chatdb import ChatDB, Cursor, FullDiskAccessRequired
from adapters.channels.imessage.normalize import conversation_id, message_id
from adapters.channels.imessage.source import IMessageSource
from domain import events as ev
from tests.fakes.imessage_chatdb import ChatDBBuilder, Profile

TENANT, CONNECTION, ACTOR = "t_1", "cn_1", "device:d_1"
ADA, BOB, CY = "+15551230001", "bob@example.com", "+15551230003"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ChatDBBuilder]:
    builder = ChatDBBuilder(tmp_path / "chat.db")
    yield builder
    builder.close()


def _source(db: ChatDBBuilder, *, batch_size: int = 500, orphan_grace: float = 5.0) -> IMessageSource:
    return IMessageSource(
        db.path,
        tenant_id=TENANT,
        connection_id=CONNECTION,
        actor=ACTOR,
        home=Path("/Users/ada"),
        batch_size=batch_size,
        orphan_grace=orphan_grace,
    )


def _texts(events: list[ev.Event]) -> list[str]:
    return [event.data.text for event in events if isinstance(event, ev.MessageReceived | ev.MessageSent)]


def _types(events: list[ev.Event]) -> list[str]:
    return [event.type for event in events if event.type != "conversation.created"]


async def test_first_poll_starts_from_now_not_the_history(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    for n in range(5):
        db.message(chat, f"old {n}")
    source = _source(db)
    events, cursor = await source.poll(Cursor())
    assert events == []
    assert cursor == await source.start_cursor()
    assert cursor.rowid == 5 and cursor.started
    db.message(chat, "new one")
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["new one"]
    assert [event.type for event in events] == ["conversation.created", "message.received"]
    assert cursor.rowid == 6


async def test_an_empty_database_then_the_first_message(db: ChatDBBuilder) -> None:
    source = _source(db)
    events, cursor = await source.poll(Cursor())
    assert (events, cursor) == ([], Cursor(started=True))
    db.message(db.direct_chat(ADA), "first ever")
    events, _ = await source.poll(cursor)
    assert _texts(events) == ["first ever"]  # started: not mistaken for a fresh cursor


async def test_new_rows_appear_after_a_poll_and_the_cursor_survives(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db)
    cursor = await source.start_cursor()
    db.message(chat, "one")
    db.message(chat, "mine", is_from_me=True)
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["one", "mine"]
    assert _types(events) == ["message.received", "message.sent"]
    again, same = await source.poll(cursor)
    assert (again, same) == ([], cursor)
    # the bridge restarts: the stored cursor goes on where it stopped
    stored = msgspec.json.encode(cursor)
    db.message(chat, "two")
    events, cursor = await _source(db).poll(msgspec.json.decode(stored, type=Cursor))
    assert _texts(events) == ["two"]


async def test_rows_in_the_wal_written_by_another_connection(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db)
    cursor = await source.start_cursor()
    wal = db.path.with_name("chat.db-wal")
    writer = sqlite3.connect(db.path, isolation_level=None)
    try:
        writer.execute("BEGIN")
        db_guid = "0F0F0F0F-0000-4000-8000-000000000001"
        writer.execute(
            "INSERT INTO message (guid, text, handle_id, date, is_from_me) VALUES (?, 'pending', ?, ?, 0)",
            (db_guid, chat.handles[0], db.tick()),
        )
        writer.execute(
            "INSERT INTO chat_message_join (chat_id, message_id) VALUES (?, last_insert_rowid())",
            (chat.rowid,),
        )
        events, cursor = await source.poll(cursor)
        assert events == []  # not committed yet
        writer.execute("COMMIT")
        assert wal.stat().st_size > 0  # the row sits in the WAL, not yet in chat.db itself
        events, cursor = await source.poll(cursor)
        assert _texts(events) == ["pending"]
    finally:
        writer.close()


async def test_polling_while_messages_keep_arriving(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db, batch_size=7)
    cursor = await source.start_cursor()
    seen: list[str] = []

    def write() -> None:
        writer = ChatDBBuilder.attach(db.path, start=db.clock)
        try:
            for n in range(60):
                writer.message(chat, f"m{n}")
        finally:
            writer.close()

    writing = asyncio.create_task(asyncio.to_thread(write))
    while not writing.done():
        events, cursor = await source.poll(cursor)
        seen += _texts(events)
        await asyncio.sleep(0)
    await writing
    while True:
        events, after = await source.poll(cursor)
        seen += _texts(events)
        if after == cursor:
            break
        cursor = after
    assert seen == [f"m{n}" for n in range(60)]


async def test_batches_hold_at_most_batch_size_new_rows(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db, batch_size=3)
    cursor = await source.start_cursor()
    for n in range(7):
        db.message(chat, f"m{n}")
    sizes = []
    for _ in range(4):
        events, cursor = await source.poll(cursor)
        sizes.append(len(_texts(events)))
    assert sizes == [3, 3, 1, 0]


async def test_what_the_rows_say(db: ChatDBBuilder) -> None:
    dm = db.direct_chat(ADA)
    group = db.group_chat([BOB, CY])
    named = db.group_chat([ADA, CY], display_name="Engines")
    source = _source(db)
    cursor = await source.start_cursor()
    hello = db.message(dm, "only in attributedBody")  # text NULL, the words in the blob
    db.message(dm, "plain text", body_only=False)
    db.message(group, "to the group", from_handle=group.handles[1])
    db.message(named, "in Engines")
    db.tapback(dm, hello, 2001, emoji=None)
    db.tapback(dm, hello, 3001)
    db.message(dm, "reply", thread_originator=hello.guid)
    db.message(dm, None, item_type=1)  # a system row
    events, cursor = await source.poll(cursor)
    assert _types(events) == [
        "message.received",
        "message.received",
        "message.received",
        "message.received",
        "reaction.added",
        "reaction.removed",
        "message.received",
    ]
    created = {
        event.aggregate_id: event.data for event in events if isinstance(event, ev.ConversationCreated)
    }
    assert created[conversation_id(CONNECTION, dm.guid)].kind == "direct"
    assert created[conversation_id(CONNECTION, dm.guid)].external_id == f"iMessage;-;{ADA}"
    assert created[conversation_id(CONNECTION, group.guid)].title == f"{BOB}, {CY}"
    assert created[conversation_id(CONNECTION, group.guid)].kind == "group"
    assert created[conversation_id(CONNECTION, named.guid)].title == "Engines"
    received = [event for event in events if isinstance(event, ev.MessageReceived)]
    assert [event.data.text for event in received] == [
        "only in attributedBody",
        "plain text",
        "to the group",
        "in Engines",
        "reply",
    ]
    assert received[2].data.sender.id == f"imessage:{CY}"
    assert received[4].data.reply_to_message_id == message_id(CONNECTION, hello.guid)
    reaction = next(event for event in events if isinstance(event, ev.ReactionAdded))
    assert reaction.data == ev.ReactionData(
        message_id=message_id(CONNECTION, hello.guid), emoji="👍", sender_id=f"imessage:{ADA}"
    )


async def test_attachments_are_local_paths(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db)
    cursor = await source.start_cursor()
    photo = db.message(chat, "\ufffc", has_attachments=True)
    filename = db.attachment(photo, "IMG_0001.heic", mime="image/heic", size=2048)
    link = db.message(chat, "https://example.com")
    db.attachment(
        link, "ABCD.pluginPayloadAttachment", mime=None, uti="com.apple.messages.URLBalloonProvider"
    )
    events, _ = await source.poll(cursor)
    received = [event for event in events if isinstance(event, ev.MessageReceived)]
    assert received[0].data.text == ""
    assert received[0].data.attachments == (
        ev.Attachment(
            kind="image",
            provider_file_id=filename.split("/")[-2],  # Apple's attachment guid, not the Mac's path
            mime="image/heic",
            size=2048,
            name="IMG_0001.heic",
        ),
    )
    found = await source.db.attachment_path(filename.split("/")[-2])
    assert found == Path("/Users/ada/" + filename.removeprefix("~/"))
    assert received[1].data.text == "https://example.com"
    assert received[1].data.attachments == ()


async def test_edits_and_unsends_in_place(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db)
    cursor = await source.start_cursor()
    first = db.message(chat, "helo")
    second = db.message(chat, "oops", is_from_me=True)
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["helo", "oops"]
    edited_at = db.edit(first, "hello")
    events, cursor = await source.poll(cursor)
    assert _types(events) == ["message.edited"]
    assert cursor.edit_mark == edited_at
    edit = events[-1]
    assert isinstance(edit, ev.MessageEdited)
    assert edit.data.text == "hello" and edit.data.message_id == message_id(CONNECTION, first.guid)
    retracted_at = db.unsend(second)
    events, cursor = await source.poll(cursor)
    assert _types(events) == ["message.deleted"]  # not also an edit, though date_edited moved too
    assert cursor.retract_mark == retracted_at
    assert (await source.poll(cursor)) == ([], cursor)


async def test_edits_are_looked_for_among_the_newest_rows_only(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db)
    source.db.edit_window_rows = 2
    cursor = await source.start_cursor()
    old, recent = db.message(chat, "old"), db.message(chat, "recent")
    db.message(chat, "newest")
    events, cursor = await source.poll(cursor)
    db.edit(old, "old, edited")  # cannot happen on a Mac: edits close after 15 minutes
    db.edit(recent, "recent, edited")
    events, cursor = await source.poll(cursor)
    edits = [event.data.text for event in events if isinstance(event, ev.MessageEdited)]
    assert edits == ["recent, edited"]


async def test_older_macos_without_date_retracted(tmp_path: Path) -> None:
    profile: Profile = "macos14"
    db = ChatDBBuilder(tmp_path / "chat.db", profile=profile)
    try:
        chat = db.direct_chat(ADA, prefix="SMS", service="SMS")
        source = _source(db)
        cursor = await source.start_cursor()
        assert cursor.retract_mark == 0
        message = db.message(chat, "sent by mistake")
        events, cursor = await source.poll(cursor)
        db.unsend(message)  # text cleared, date_edited set: that is how an unsend looks here
        events, cursor = await source.poll(cursor)
        assert _types(events) == ["message.deleted"]
        assert cursor.retract_mark == 0
    finally:
        db.close()


async def test_a_new_row_already_edited_arrives_once_with_its_last_words(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db)
    cursor = await source.start_cursor()
    message = db.message(chat, "draft")
    db.edit(message, "final")
    events, cursor = await source.poll(cursor)
    assert _types(events) == ["message.received"]
    assert _texts(events) == ["final"]
    assert (await source.poll(cursor)) == ([], cursor)


async def test_orphans_are_skipped_and_counted(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db, orphan_grace=0)
    cursor = await source.start_cursor()
    db.message(None, "lost")
    db.message(chat, "kept")
    db.message(None, "lost too")
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["kept"]
    assert source.orphans_skipped == 2
    assert cursor.rowid == 3  # the cursor moves past them


async def test_a_row_whose_chat_comes_a_moment_later_is_waited_for(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    source = _source(db, orphan_grace=0.2)
    cursor = await source.start_cursor()
    db.message(chat, "before")
    late = db.message(None, "its chat comes next")
    db.message(chat, "after")
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["before"]  # held before the chatless row
    db.conn.execute(
        "INSERT INTO chat_message_join (chat_id, message_id) VALUES (?, ?)", (chat.rowid, late.rowid)
    )
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["its chat comes next", "after"]
    db.message(None, "a true orphan")
    db.message(chat, "later")
    events, cursor = await source.poll(cursor)
    assert events == []
    await asyncio.sleep(0.25)
    events, cursor = await source.poll(cursor)
    assert _texts(events) == ["later"]
    assert source.orphans_skipped == 1


async def test_a_rebuilt_database_restarts_from_now(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    db = ChatDBBuilder(path)
    chat = db.direct_chat(ADA)
    for n in range(10):
        db.message(chat, f"m{n}")
    source = _source(db)
    cursor = await source.start_cursor()
    db.close()
    for leftover in tmp_path.glob("chat.db*"):
        leftover.unlink()
    db = ChatDBBuilder(path)  # iCloud resync: the same history, fewer and renumbered rows
    try:
        chat = db.direct_chat(ADA)
        for n in range(3):
            db.message(chat, f"resynced {n}")
        events, cursor = await source.poll(cursor)
        assert events == []
        assert cursor == Cursor(rowid=3, started=True)
        db.message(chat, "after the rebuild")
        events, cursor = await source.poll(cursor)
        assert _texts(events) == ["after the rebuild"]
    finally:
        db.close()


async def test_backfill_takes_the_last_messages_of_recent_chats(db: ChatDBBuilder) -> None:
    start = db.clock
    stale = db.direct_chat(CY)
    db.message(stale, "three weeks ago", date=db.tick())
    busy = db.direct_chat(ADA)
    quiet = db.group_chat([BOB, CY], display_name="Quiet")
    db.clock = start + timedelta(days=1)
    db.message(quiet, "an old one")
    db.clock = start + timedelta(days=18)
    for n in range(60):
        db.message(busy, f"busy {n}", is_from_me=n % 3 == 0)
    target = db.message(busy, "busy 60")
    db.tapback(busy, target, 2000)  # not a message: does not take a place
    db.message(quiet, "the recent one")
    source = _source(db)
    events = await source.backfill(now=db.clock + timedelta(hours=1))
    texts = _texts(events)
    assert texts[-1] == "the recent one"
    assert [text for text in texts if text.startswith("busy")] == [f"busy {n}" for n in range(11, 61)]
    assert [text for text in texts if not text.startswith("busy")] == ["an old one", "the recent one"]
    assert "three weeks ago" not in texts
    assert all(
        event.data.backfill for event in events if isinstance(event, ev.MessageReceived | ev.MessageSent)
    )
    assert not [event for event in events if isinstance(event, ev.ReactionAdded)]
    assert sum(isinstance(event, ev.ConversationCreated) for event in events) == 2

    fewer = await source.backfill(days=30, per_chat=2, now=db.clock + timedelta(hours=1))
    assert sorted(_texts(fewer)) == sorted(
        ["three weeks ago", "busy 59", "busy 60", "an old one", "the recent one"]
    )


async def test_backfill_of_a_database_dated_in_seconds(db: ChatDBBuilder) -> None:
    chat = db.direct_chat(ADA)
    seconds = db.tick() // 1_000_000_000
    db.message(chat, "old-style date", date=seconds)
    events = await _source(db).backfill(now=db.clock)
    assert _texts(events) == ["old-style date"]


async def test_the_reader_cannot_write(db: ChatDBBuilder) -> None:
    reader = ChatDB(db.path)
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|query_only|read-only"):
        await reader._run(lambda conn, schema: conn.execute("DELETE FROM message"))


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("unable to open database file"),
        sqlite3.OperationalError("authorization denied"),
        PermissionError(1, "Operation not permitted"),
    ],
)
async def test_full_disk_access_required(
    db: ChatDBBuilder, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def refuse(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise error

    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(FullDiskAccessRequired, match="Full Disk Access") as caught:
        await _source(db).start_cursor()
    assert "System Settings" in str(caught.value)


async def test_a_missing_database_is_not_a_permission_problem(tmp_path: Path) -> None:
    source = IMessageSource(tmp_path / "nope.db", tenant_id=TENANT, connection_id=CONNECTION, actor=ACTOR)
    with pytest.raises(FileNotFoundError):
        await source.poll(Cursor(rowid=1, started=True))


async def test_other_database_errors_are_not_hidden(
    db: ChatDBBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", broken)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        await _source(db).start_cursor()
