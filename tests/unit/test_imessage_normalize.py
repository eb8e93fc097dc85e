"""chat.db rows → canonical events, as tables (pure: no database, no Mac)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.imessage import CAPABILITIES, KIND
from adapters.channels.imessage.dates import apple_datetime, to_apple
from adapters.channels.imessage.normalize import (
    TAPBACK_EMOJI,
    conversation_id,
    events_for,
    message_id,
    target_guid,
)
from adapters.channels.imessage.rows import AttachmentRow, ChatRow, MessageRow
from domain import events as ev
from domain import ids
from domain.codec import EventCodec, dedupe_key
from tests.fakes.imessage_typedstream import encode_attributed_body

TENANT, CONNECTION, ACTOR = "t_1", "cn_1", "device:d_1"
ADA = "+15551230001"
DM = ChatRow(rowid=1, guid=f"iMessage;-;{ADA}", style=45, chat_identifier=ADA, participants=(ADA,))
GROUP = ChatRow(
    rowid=2, guid="any;+;chat123456789012345678", style=43, chat_identifier="chat123456789012345678",
    display_name="Engines", participants=(ADA, "bob@example.com"),
)  # fmt: skip
AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DATE = to_apple(AT)
GUID = "6A1C9F3E-2B7D-4C1A-9E0F-1234567890AB"
HOME_FILE = "/Users/ada/Library/Messages/Attachments/ab/12/XYZ/IMG_0001.heic"


def _row(**fields: Any) -> MessageRow:
    values: dict[str, Any] = {
        "rowid": 10, "guid": GUID, "chat": DM, "text": "hello", "date": DATE, "handle": ADA,
        "service": "iMessage",
    } | fields  # fmt: skip
    return MessageRow(**values)


def _events(*rows: MessageRow, backfill: bool = False) -> list[ev.Event]:
    return events_for(rows, tenant_id=TENANT, connection_id=CONNECTION, actor=ACTOR, backfill=backfill)


def _types(*rows: MessageRow) -> list[str]:
    return [event.type for event in _events(*rows)]


def _only(events: list[ev.Event], cls: type[ev.E]) -> ev.E:
    found = [event for event in events if isinstance(event, cls)]
    assert len(found) == 1, events
    return found[0]


IMAGE = AttachmentRow(
    guid="A1", path=HOME_FILE, mime="image/heic", transfer_name="IMG_0001.heic", total_bytes=9
)
LINK_CARD = AttachmentRow(
    guid="A2", path="/Users/ada/Library/Messages/Attachments/cd/34/Q/AB12.pluginPayloadAttachment",
    transfer_name="AB12.pluginPayloadAttachment",
)  # fmt: skip


@pytest.mark.parametrize(
    ("row", "types"),
    [
        (_row(), ["conversation.created", "message.received"]),
        (
            _row(text=None, attributed_body=encode_attributed_body("only in the body")),
            ["conversation.created", "message.received"],
        ),
        (_row(is_from_me=True, handle=None), ["conversation.created", "message.sent"]),
        (
            _row(associated_message_type=2000, associated_message_guid=f"p:0/{GUID}"),
            ["conversation.created", "reaction.added"],
        ),
        (
            _row(associated_message_type=3003, associated_message_guid=f"p:0/{GUID}"),
            ["conversation.created", "reaction.removed"],
        ),
        (
            _row(associated_message_type=1000, associated_message_guid=f"p:0/{GUID}"),
            [],
        ),  # a sticker on a message
        (_row(associated_message_type=2000, associated_message_guid=None), []),  # no target
        (_row(item_type=1, text=None), []),  # a member added: a system row
        (_row(item_type=2, text="Ada named the conversation"), []),
        (_row(text=None), []),  # nothing to show
        (_row(text="\ufffc"), []),  # a placeholder without its file
        (_row(text="\ufffc", attachments=(IMAGE,)), ["conversation.created", "message.received"]),
        (_row(text=None, attachments=(LINK_CARD,)), []),  # a rich-link card alone is no message
        (
            _row(change="edited", date_edited=DATE + 10**9, text="hello!"),
            ["conversation.created", "message.edited"],
        ),
        (_row(change="edited", date_edited=0), []),
        (
            _row(change="edited", date_edited=DATE + 10**9, text=None),
            ["conversation.created", "message.deleted"],
        ),
        (_row(change="edited", date_edited=DATE + 10**9, date_retracted=DATE + 10**9, text=None), []),
        (
            _row(change="retracted", date_retracted=DATE + 10**9, text=None),
            ["conversation.created", "message.deleted"],
        ),
        (_row(date_retracted=DATE + 10**9, text=None), []),  # unsent before the bridge saw it
        (_row(chat=None), []),  # an orphan
    ],
)
def test_which_rows_become_which_events(row: MessageRow, types: list[str]) -> None:
    assert _types(row) == types


def test_received_message() -> None:
    received = _only(_events(_row(thread_originator_guid="ORIGINAL-GUID")), ev.MessageReceived)
    assert received.aggregate_id == conversation_id(CONNECTION, DM.guid)
    assert received.actor == ACTOR
    assert received.occurred_at == AT
    assert received.data == ev.MessageReceivedData(
        message_id=ids.stable_id(ids.MESSAGE, f"imessage:{CONNECTION}:{GUID}"),
        connection_id=CONNECTION,
        channel=KIND,
        provider_message_id=GUID,
        sender=ev.Sender(id=f"imessage:{ADA}", name=ADA),
        text="hello",
        sent_at=AT,
        reply_to_message_id=message_id(CONNECTION, "ORIGINAL-GUID"),
    )
    assert dedupe_key(received) == f"imessage:{CONNECTION}:{GUID}"


def test_body_only_row_is_never_empty() -> None:
    received = _only(
        _events(_row(text=None, attributed_body=encode_attributed_body("héllo 🙂"))), ev.MessageReceived
    )
    assert received.data.text == "héllo 🙂"


@given(st.text(min_size=1).filter(lambda text: text.replace("\ufffc", "").strip() != ""))
def test_any_body_text_arrives(text: str) -> None:
    events = _events(_row(text=None, attributed_body=encode_attributed_body(text)))
    assert _only(events, ev.MessageReceived).data.text == text.replace("\ufffc", "")


def test_sent_on_the_device() -> None:
    sent = _only(_events(_row(is_from_me=True, handle=ADA)), ev.MessageSent)
    assert sent.data.origin == "device"
    assert sent.data.sender == ev.Sender(id="imessage:me", name="Me")
    assert sent.data.provider_message_id == GUID
    assert sent.data.message_id == message_id(CONNECTION, GUID)
    assert not sent.data.backfill


def test_sent_attachment_without_words_names_the_file() -> None:
    sent = _only(_events(_row(is_from_me=True, text="\ufffc", attachments=(IMAGE,))), ev.MessageSent)
    assert sent.data.text == "📎 IMG_0001.heic"


@pytest.mark.parametrize("backfill", [True, False])
def test_backfill_passes_through(backfill: bool) -> None:
    events = _events(_row(), _row(rowid=11, guid="OTHER", is_from_me=True), backfill=backfill)
    assert _only(events, ev.MessageReceived).data.backfill is backfill
    assert _only(events, ev.MessageSent).data.backfill is backfill


@pytest.mark.parametrize(
    ("chat", "kind", "title"),
    [
        (DM, "direct", ADA),
        (GROUP, "group", "Engines"),
        (msgspec.structs.replace(GROUP, display_name=""), "group", f"{ADA}, bob@example.com"),
        (
            msgspec.structs.replace(GROUP, display_name=None, participants=()),
            "group",
            "chat123456789012345678",
        ),
        (
            ChatRow(rowid=3, guid="any;-;ada@example.com", style=45, participants=("ada@example.com",)),
            "direct",
            "ada@example.com",
        ),
    ],
)
def test_conversations(chat: ChatRow, kind: ev.ConversationKind, title: str) -> None:
    created = _only(_events(_row(chat=chat)), ev.ConversationCreated)
    assert created.aggregate_id == ids.stable_id(ids.CONVERSATION, f"imessage:{CONNECTION}:{chat.guid}")
    assert created.data == ev.ConversationCreatedData(
        channel="imessage",
        connection_id=CONNECTION,
        kind=kind,
        title=title,
        external_id=chat.guid,  # type: ignore[arg-type]
    )


def test_conversation_created_once_per_chat_before_its_messages() -> None:
    rows = [
        _row(rowid=1, guid="G1"),
        _row(rowid=2, guid="G2", chat=GROUP, handle="bob@example.com"),
        _row(rowid=3, guid="G3"),
        _row(rowid=4, guid="G4", chat=GROUP, is_from_me=True),
    ]
    events = _events(*rows)
    assert [(event.type, event.aggregate_id) for event in events] == [
        ("conversation.created", conversation_id(CONNECTION, DM.guid)),
        ("message.received", conversation_id(CONNECTION, DM.guid)),
        ("conversation.created", conversation_id(CONNECTION, GROUP.guid)),
        ("message.received", conversation_id(CONNECTION, GROUP.guid)),
        ("message.received", conversation_id(CONNECTION, DM.guid)),
        ("message.sent", conversation_id(CONNECTION, GROUP.guid)),
    ]
    group_message = [event for event in events if isinstance(event, ev.MessageReceived)][1]
    assert group_message.data.sender.id == "imessage:bob@example.com"


@pytest.mark.parametrize("code", [*range(2000, 2007), *range(3000, 3007)])
def test_tapbacks_are_reactions_never_text(code: int) -> None:
    row = _row(
        text="Reacted 🎉 to \u201chello\u201d",
        associated_message_type=code,
        associated_message_guid=f"p:0/{GUID}",
        associated_message_emoji="🎉" if code % 1000 == 6 else None,
    )
    events = _events(row)
    assert not [event for event in events if isinstance(event, ev.MessageReceived | ev.MessageSent)]
    reaction = _only(events, ev.ReactionAdded) if code < 3000 else _only(events, ev.ReactionRemoved)
    assert reaction.data == ev.ReactionData(
        message_id=message_id(CONNECTION, GUID),
        emoji=TAPBACK_EMOJI.get(code % 1000, "🎉"),
        sender_id=f"imessage:{ADA}",
    )


def test_my_own_tapback_and_an_emoji_read_from_the_text() -> None:
    row = _row(
        is_from_me=True, handle=None, text="Reacted 🦄 to \u201chello\u201d", associated_message_type=2006,
        associated_message_guid=f"bp:{GUID}",
    )  # fmt: skip
    reaction = _only(_events(row), ev.ReactionAdded)
    assert reaction.data == ev.ReactionData(
        message_id=message_id(CONNECTION, GUID), emoji="🦄", sender_id="imessage:me"
    )


@pytest.mark.parametrize(
    ("associated", "target"),
    [
        (f"p:0/{GUID}", GUID),
        (f"p:2/{GUID}", GUID),
        (f"bp:{GUID}", GUID),
        (GUID, GUID),
        ("", None),
        (None, None),
        ("p:0/", None),
    ],
)
def test_tapback_targets(associated: str | None, target: str | None) -> None:
    assert target_guid(associated) == target


def test_edit_and_unsend() -> None:
    edited_at = DATE + 30 * 10**9
    moment = apple_datetime(edited_at)
    assert moment is not None
    edited = _only(
        _events(_row(change="edited", date_edited=edited_at, text="hello, fixed")), ev.MessageEdited
    )
    assert edited.data == ev.MessageEditedData(
        message_id=message_id(CONNECTION, GUID), text="hello, fixed", edited_at=moment
    )
    gone = _only(_events(_row(change="retracted", date_retracted=edited_at, text=None)), ev.MessageDeleted)
    assert gone.data == ev.MessageDeletedData(message_id=message_id(CONNECTION, GUID), deleted_at=moment)


def test_attachments() -> None:
    sticker = AttachmentRow(guid="A3", path="/x/s.png", mime="image/png", is_sticker=True)
    voice = AttachmentRow(
        guid="A4", path="/x/Audio Message.caf", mime="audio/x-caf", transfer_name="Audio Message.caf"
    )
    pdf = AttachmentRow(
        guid="A5", path="/x/doc.pdf", mime="application/pdf", transfer_name="doc.pdf", total_bytes=3
    )
    unknown = AttachmentRow(guid="A6", path="/x/blob", mime=None)
    missing = AttachmentRow(guid="A7", path=None, mime="image/jpeg")  # not downloaded from iCloud
    row = _row(text="files \ufffc", attachments=(IMAGE, LINK_CARD, sticker, voice, pdf, unknown, missing))
    received = _only(_events(row), ev.MessageReceived)
    assert received.data.text == "files "
    assert received.data.attachments == (
        ev.Attachment(
            kind="image", provider_file_id=IMAGE.guid, mime="image/heic", size=9, name="IMG_0001.heic"
        ),
        ev.Attachment(kind="sticker", provider_file_id=sticker.guid, mime="image/png", name="s.png"),
        ev.Attachment(
            kind="audio",
            provider_file_id="A4",
            mime="audio/x-caf",
            name="Audio Message.caf",
        ),
        ev.Attachment(kind="document", provider_file_id="A5", mime="application/pdf", size=3, name="doc.pdf"),
        ev.Attachment(kind="other", provider_file_id="A6", name="blob"),
    )


def test_sender_of_a_row_without_handle() -> None:
    received = _only(_events(_row(handle=None)), ev.MessageReceived)
    assert received.data.sender.id == f"imessage:{ADA}"  # the one-to-one chat's identifier
    in_group = _only(_events(_row(handle=None, chat=GROUP)), ev.MessageReceived)
    assert in_group.data.sender.id == "imessage:unknown"


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        (788_918_400_000_000_000, datetime(2026, 1, 1, tzinfo=UTC)),  # nanoseconds (macOS 10.13+)
        (788_918_400, datetime(2026, 1, 1, tzinfo=UTC)),  # seconds (older databases)
        (788_918_400_123_456_789, datetime(2026, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)),
        (1, datetime(2001, 1, 1, 0, 0, 1, tzinfo=UTC)),
        (0, None),
        (None, None),
    ],
)
def test_apple_dates(value: int | None, moment: datetime | None) -> None:
    assert apple_datetime(value) == moment
    if moment is not None:
        assert moment.tzinfo is UTC


def test_event_ids_are_derived_from_what_happened() -> None:
    rows = [
        _row(),
        _row(rowid=11, guid="T", associated_message_type=2001, associated_message_guid=f"p:0/{GUID}"),
        _row(change="edited", date_edited=DATE + 5),
        _row(change="retracted", date_retracted=DATE + 9, text=None),
    ]
    first, again = _events(*rows), _events(*rows)
    assert first == again  # a resend after a crash is the same events, ids included
    assert len({event.id for event in first}) == len(first)
    assert all(len(event.id) == 26 for event in first)  # ULIDs, time first
    elsewhere = events_for(rows, tenant_id=TENANT, connection_id="cn_2", actor=ACTOR)
    assert not {event.id for event in first} & {event.id for event in elsewhere}
    later_edit = _events(_row(change="edited", date_edited=DATE + 6))
    assert _only(later_edit, ev.MessageEdited).id != _only(first, ev.MessageEdited).id


def test_events_survive_the_codec() -> None:
    codec = EventCodec()
    rows = [_row(attachments=(IMAGE,)), _row(rowid=11, guid="S", is_from_me=True)]
    for event in _events(*rows, backfill=True):
        assert codec.decode(codec.encode(event)) == event


def test_capabilities() -> None:
    assert KIND == "imessage"
    assert CAPABILITIES.media and not CAPABILITIES.reactions and not CAPABILITIES.edits
    assert CAPABILITIES.max_text_length >= 10_000
