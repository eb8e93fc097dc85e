"""What signal-cli's ``receive`` notification holds, as values (its JSON, camelCase).

``{"jsonrpc":"2.0","method":"receive","params":{"account":"+N","envelope":{…}}}``, or with
``subscribeReceive`` ``params: {"subscription": 0, "result": {"account", "envelope"}}``; an
``exception`` may come with (or instead of) the envelope (an untrusted identity, a message
that could not be decrypted). An envelope holds one of ``dataMessage``, ``editMessage``,
``syncMessage`` (``sentMessage``: what the account wrote on another of its devices),
``receiptMessage``, ``typingMessage``, …; only what the inbox shows is modelled here, and
fields signal-cli adds later are ignored.
"""

from __future__ import annotations

import msgspec

LONG_TEXT = "text/x-signal-plain"  # the whole text of a message longer than Signal sends inline


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    pass


class Mention(_Wire, frozen=True, kw_only=True):
    """A mention at ``start`` (``length``, in UTF-16 code units) of the text, where the text
    holds U+FFFC."""

    number: str | None = None
    uuid: str | None = None
    start: int = 0
    length: int = 0


class Quote(_Wire, frozen=True, kw_only=True):
    """The message a message replies to: its author and its timestamp (``id``)."""

    id: int
    author_number: str | None = None
    author_uuid: str | None = None
    text: str | None = None


class Reaction(_Wire, frozen=True, kw_only=True):
    emoji: str
    target_author_number: str | None = None
    target_author_uuid: str | None = None
    target_sent_timestamp: int
    is_remove: bool = False


class RemoteDelete(_Wire, frozen=True, kw_only=True):
    timestamp: int  # the deleted message's


class Attachment(_Wire, frozen=True, kw_only=True):
    content_type: str | None = None
    filename: str | None = None
    id: str | None = None  # None when the daemon does not download attachments
    size: int | None = None
    caption: str | None = None


class GroupInfo(_Wire, frozen=True, kw_only=True):
    group_id: str  # base64
    group_name: str | None = None
    type: str = "DELIVER"  # or "UPDATE" (a change of the group, not a message)


class DataMessage(_Wire, frozen=True, kw_only=True):
    timestamp: int = 0
    message: str | None = None
    reaction: Reaction | None = None
    quote: Quote | None = None
    mentions: tuple[Mention, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    remote_delete: RemoteDelete | None = None
    group_info: GroupInfo | None = None


class EditMessage(_Wire, frozen=True, kw_only=True):
    target_sent_timestamp: int
    data_message: DataMessage


class SentMessage(DataMessage, frozen=True, kw_only=True):
    """A message the account sent from another of its devices (the phone): the data message's
    fields, with where it went (a person, or ``groupInfo``), or the edit it was."""

    destination_number: str | None = None
    destination_uuid: str | None = None
    edit_message: EditMessage | None = None


class SyncMessage(_Wire, frozen=True, kw_only=True):
    sent_message: SentMessage | None = None


class Envelope(_Wire, frozen=True, kw_only=True):
    source_number: str | None = None  # None for people who hide their number
    source_uuid: str | None = None  # their ACI: who they are, whatever their number
    source_name: str | None = None
    source_device: int | None = None
    timestamp: int = 0  # milliseconds: with the author, Signal's id of the message
    data_message: DataMessage | None = None
    edit_message: EditMessage | None = None
    sync_message: SyncMessage | None = None


class ReceiveError(_Wire, frozen=True, kw_only=True):
    message: str | None = None
    type: str | None = None


class Receive(_Wire, frozen=True, kw_only=True):
    account: str | None = None  # the daemon's account the envelope came to
    envelope: Envelope | None = None
    exception: ReceiveError | None = None


class _Params(Receive, frozen=True, kw_only=True):
    subscription: int | None = None
    result: Receive | None = None


_decoder = msgspec.json.Decoder(_Params)


def receive(raw: bytes) -> Receive:
    """A ``receive`` notification's params, either shape; msgspec.DecodeError when it is not one."""
    params = _decoder.decode(raw)
    if params.result is not None:
        return params.result
    return Receive(account=params.account, envelope=params.envelope, exception=params.exception)
