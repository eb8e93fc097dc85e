"""What the bridge reads out of chat.db, as values: the rows ``chatdb`` returns and
``normalize`` turns into events, and the cursor that says how far reading got.

Dates stay as chat.db stores them (Apple epoch, seconds or nanoseconds, 0 = never);
``normalize`` converts them. Attachment paths are already expanded on the Mac.
"""

from __future__ import annotations

from typing import Literal

import msgspec

GROUP_STYLE = 43
DIRECT_STYLE = 45

Change = Literal["new", "edited", "retracted"]


class Cursor(msgspec.Struct, frozen=True):
    """How far the bridge has read: the last message ROWID handled, and the newest
    ``date_edited`` / ``date_retracted`` seen (edits and unsends change rows in place).

    ``Cursor()`` means "never read": the first poll starts from now instead of importing
    the whole history. ``started`` tells a cursor taken on an empty database (all zeros,
    yet already started) from that one; every cursor the source hands out has it set.
    """

    rowid: int = 0
    edit_mark: int = 0
    retract_mark: int = 0
    started: bool = False


class ChatRow(msgspec.Struct, frozen=True, kw_only=True):
    """A ``chat`` row with its participants (``chat_handle_join`` → ``handle.id``)."""

    rowid: int
    guid: str  # "iMessage;-;+15551234567", "any;+;chat123…": the AppleScript target, verbatim
    style: int  # 43 group, 45 one-to-one
    chat_identifier: str | None = None
    display_name: str | None = None
    service_name: str | None = None
    participants: tuple[str, ...] = ()


class AttachmentRow(msgspec.Struct, frozen=True, kw_only=True):
    """An ``attachment`` row of a message; ``path`` is ``filename`` with ``~`` expanded."""

    guid: str
    path: str | None
    mime: str | None = None
    uti: str | None = None
    transfer_name: str | None = None
    total_bytes: int | None = None
    is_sticker: bool = False


class MessageRow(msgspec.Struct, frozen=True, kw_only=True):
    """A ``message`` row, its chat (None: an orphan) and what happened to it since the
    cursor: ``new`` (its ROWID is past the cursor), ``edited`` or ``retracted`` (in place)."""

    rowid: int
    guid: str
    chat: ChatRow | None
    text: str | None = None
    attributed_body: bytes | None = None
    date: int = 0
    date_edited: int = 0
    date_retracted: int = 0
    is_from_me: bool = False
    handle: str | None = None  # the sender's handle.id, for is_from_me = 0
    service: str | None = None
    associated_message_guid: str | None = None
    associated_message_type: int = 0
    associated_message_emoji: str | None = None
    thread_originator_guid: str | None = None
    item_type: int = 0
    attachments: tuple[AttachmentRow, ...] = ()
    change: Change = "new"
