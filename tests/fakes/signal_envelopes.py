"""signal-cli's ``receive`` envelopes as it writes them (its ``Json*`` records, 0.13.19), for the
normalizer's tests and the fake daemon: every field a record always writes is here, null
when empty; the ``NON_NULL`` ones only when they have a value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

AT_MS = 1_767_225_600_000  # 2026-01-01T00:00Z in milliseconds, as Signal dates messages
GROUP_ID = "Z3JvdXAtaWQtb2YtMzItYnl0ZXMtZm9yLXRlc3Q="


@dataclass(frozen=True)
class Person:
    number: str | None
    uuid: str
    name: str | None = None


ME = Person("+15559990000", "9e4c2b1a-0000-4000-8000-00000000a11c", "Ada")
ALICE = Person("+15551230000", "a11ce000-1111-4111-8111-111111111111", "Alice")
BOB = Person("+15554560000", "b0b00000-2222-4222-8222-222222222222", "Bob")
HIDDEN = Person(None, "c0de0000-3333-4333-8333-333333333333", "Carol")  # hides her number


def address(person: Person) -> Json:
    return {"uuid": person.uuid, "number": person.number, "username": None}


def envelope(
    source: Person,
    *,
    timestamp: int = AT_MS,
    data: Json | None = None,
    edit: Json | None = None,
    sync: Json | None = None,
    receipt: Json | None = None,
    typing: Json | None = None,
) -> Json:
    found: Json = {
        "source": source.number or source.uuid,
        "sourceNumber": source.number,
        "sourceUuid": source.uuid,
        "sourceName": source.name,
        "sourceDevice": 1,
        "timestamp": timestamp,
        "serverReceivedTimestamp": timestamp + 40,
        "serverDeliveredTimestamp": timestamp + 90,
    }
    for key, value in (
        ("dataMessage", data),
        ("editMessage", edit),
        ("syncMessage", sync),
        ("receiptMessage", receipt),
        ("typingMessage", typing),
    ):
        if value is not None:
            found[key] = value
    return found


def data_message(
    text: str | None = None,
    *,
    timestamp: int = AT_MS,
    group: bool = False,
    group_name: str | None = "Book club",
    group_update: bool = False,
    quote: Json | None = None,
    mentions: list[Json] | None = None,
    attachments: list[Json] | None = None,
    reaction: Json | None = None,
    remote_delete: int | None = None,
    sticker: bool = False,
) -> Json:
    found: Json = {
        "timestamp": timestamp,
        "message": text,
        "expiresInSeconds": 0,
        "isExpirationUpdate": False,
        "viewOnce": False,
    }
    if reaction is not None:
        found["reaction"] = reaction
    if quote is not None:
        found["quote"] = quote
    if mentions is not None:
        found["mentions"] = mentions
    if attachments is not None:
        found["attachments"] = attachments
    if sticker:
        found["sticker"] = {"packId": "9acc9e8aba563d26a4994e69263e3b25", "stickerId": 3}
    if remote_delete is not None:
        found["remoteDelete"] = {"timestamp": remote_delete}
    if group:
        found["groupInfo"] = {
            "groupId": GROUP_ID, "groupName": group_name, "revision": 4,
            "type": "UPDATE" if group_update else "DELIVER",
        }  # fmt: skip
    return found


def quote_of(author: Person, timestamp: int, text: str) -> Json:
    return {
        "id": timestamp, "author": author.number or author.uuid, "authorNumber": author.number,
        "authorUuid": author.uuid, "text": text, "attachments": [],
    }  # fmt: skip


def mention(person: Person, start: int, length: int = 1) -> Json:
    return {
        "name": person.number or person.uuid, "number": person.number, "uuid": person.uuid,
        "start": start, "length": length,
    }  # fmt: skip


def attachment(attachment_id: str, content_type: str, *, filename: str | None = None, size: int = 4) -> Json:
    return {
        "contentType": content_type, "filename": filename, "id": attachment_id, "size": size,
        "width": None, "height": None, "caption": None, "uploadTimestamp": AT_MS - 500,
    }  # fmt: skip


def reaction_to(author: Person, timestamp: int, emoji: str = "👍", *, remove: bool = False) -> Json:
    return {
        "emoji": emoji, "targetAuthor": author.number or author.uuid, "targetAuthorNumber": author.number,
        "targetAuthorUuid": author.uuid, "targetSentTimestamp": timestamp, "isRemove": remove,
    }  # fmt: skip


def edit_of(target: int, new: Json) -> Json:
    return {"targetSentTimestamp": target, "dataMessage": new}


def sent_to(destination: Person | None, data: Json | None, *, edit: Json | None = None) -> Json:
    """A ``syncMessage`` of what the account sent from its phone (to a person, or a group
    named by ``data``'s ``groupInfo`` with ``destination`` None)."""
    sent: Json = {
        "destination": (destination.number or destination.uuid) if destination else None,
        "destinationNumber": destination.number if destination else None,
        "destinationUuid": destination.uuid if destination else None,
    }
    if edit is not None:
        sent["editMessage"] = edit
    sent |= data or {}
    return {"sentMessage": sent}


def receipt(timestamps: list[int]) -> Json:
    return {
        "when": AT_MS + 1000,
        "isDelivery": True,
        "isRead": False,
        "isViewed": False,
        "timestamps": timestamps,
    }


def notification(account: str, found: Json, *, subscription: int | None = None) -> Json:
    """The ``receive`` notification of ``found`` for ``account`` (``subscription``: as sent
    after ``subscribeReceive``)."""
    params: Json = {"envelope": found, "account": account}
    if subscription is not None:
        params = {"subscription": subscription, "result": params}
    return {"jsonrpc": "2.0", "method": "receive", "params": params}
