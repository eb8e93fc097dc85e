"""WhatsApp's ``MessageEv`` (real neonize protobufs) as canonical events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.whatsapp import normalize
from domain import devices, ids
from domain import events as ev
from tests.fakes.whatsapp_messages import ALICE, AT_MS, GROUP, ME, Message, j, message_ev

CONNECTION = "cn_whatsapp"
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _deliver(event: Any, me: str | None = f"{ME}@s.whatsapp.net") -> normalize.Delivery:
    return normalize.delivery(event, tenant_id="t_1", connection_id=CONNECTION, me=me)


def _only(delivery: normalize.Delivery, cls: type[ev.E]) -> ev.E:
    [event] = delivery.events
    assert isinstance(event, cls)
    return event


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (Message(conversation="plain words"), "plain words"),
        (Message(extendedTextMessage={"text": "extended words"}), "extended words"),
        (Message(imageMessage={"caption": "a caption", "mimetype": "image/jpeg"}), "a caption"),
        (Message(documentMessage={"caption": "the contract", "mimetype": "application/pdf"}), "the contract"),
    ],
)
def test_the_words_of_each_kind_of_message(message: Any, text: str) -> None:
    delivery = _deliver(message_ev(message))
    received = _only(delivery, ev.MessageReceived)
    assert received.data.text == text
    assert received.data.sent_at == AT  # milliseconds, not seconds
    assert received.data.sender == ev.Sender(id=f"wa:{ALICE}@s.whatsapp.net", name="Alice")
    assert received.data.message_id == ids.stable_id(
        ids.MESSAGE, f"whatsapp:{CONNECTION}:{ALICE}@s.whatsapp.net:3EB0C0FFEE"
    )
    assert delivery.created is not None
    assert (delivery.created.data.kind, delivery.created.data.title) == ("direct", "Alice")
    assert delivery.created.aggregate_id == received.aggregate_id


def test_a_direct_message_is_keyed_by_whatsapps_id_so_a_repeat_is_the_same_event() -> None:
    first, again = (
        _only(_deliver(message_ev(Message(conversation="hi"))), ev.MessageReceived) for _ in range(2)
    )
    assert first.data.message_id == again.data.message_id
    assert first.data.provider_message_id == f"{ALICE}@s.whatsapp.net:3EB0C0FFEE"


def test_media_become_attachments_named_by_the_message_and_field() -> None:
    image = Message(imageMessage={"mimetype": "image/jpeg", "fileLength": 1234})
    [attachment] = _only(_deliver(message_ev(image, wa_id="IMG1")), ev.MessageReceived).data.attachments
    assert attachment == ev.Attachment(
        kind="image", provider_file_id="IMG1:imageMessage", mime="image/jpeg", size=1234
    )
    document = Message(documentMessage={"mimetype": "application/pdf", "fileName": "contract.pdf"})
    [doc] = _only(_deliver(message_ev(document)), ev.MessageReceived).data.attachments
    assert (doc.kind, doc.name) == ("document", "contract.pdf")
    sticker = Message(stickerMessage={"mimetype": "image/webp"})
    assert _only(_deliver(message_ev(sticker)), ev.MessageReceived).data.attachments[0].kind == "sticker"
    voice = Message(audioMessage={"mimetype": "audio/ogg; codecs=opus", "PTT": True})
    assert _only(_deliver(message_ev(voice)), ev.MessageReceived).data.attachments[0].kind == "audio"


@pytest.mark.parametrize(
    ("mentioned", "expected"),
    [
        ([f"{ME}@s.whatsapp.net"], True),
        ([f"{ME}:3@s.whatsapp.net"], True),
        ([f"{ALICE}@s.whatsapp.net"], False),
        ([], False),
    ],
)
def test_a_group_message_says_whether_it_mentions_the_account(mentioned: list[str], expected: bool) -> None:
    message = Message(extendedTextMessage={"text": "hey @bot", "contextInfo": {"mentionedJID": mentioned}})
    delivery = _deliver(message_ev(message, group=True))
    received = _only(delivery, ev.MessageReceived)
    assert received.data.mentions_agent is expected
    assert delivery.created is not None
    assert (delivery.created.data.kind, delivery.created.data.external_id) == ("group", f"{GROUP}@g.us")


def test_a_hidden_group_sender_is_named_by_the_phone_jid_beside_it() -> None:
    event = message_ev(
        Message(conversation="hi"), group=True, sender=j("987654321", "lid"), sender_alt=j(ALICE)
    )
    assert _only(_deliver(event), ev.MessageReceived).data.sender.id == f"wa:{ALICE}@s.whatsapp.net"


def test_a_reply_names_the_message_it_answers() -> None:
    message = Message(extendedTextMessage={"text": "yes", "contextInfo": {"stanzaID": "ORIGINAL"}})
    received = _only(_deliver(message_ev(message)), ev.MessageReceived)
    assert received.data.reply_to_message_id == normalize.message_id(
        CONNECTION, f"{ALICE}@s.whatsapp.net", "ORIGINAL"
    )


def test_the_owners_own_message_from_the_phone_is_recorded_as_sent_from_the_device() -> None:
    delivery = _deliver(message_ev(Message(conversation="on my way"), from_me=True, wa_id="MINE"))
    sent = _only(delivery, ev.MessageSent)
    assert (sent.data.origin, sent.data.provider_message_id, sent.data.text) == (
        "device",
        f"{ALICE}@s.whatsapp.net:MINE",
        "on my way",
    )
    assert sent.data.sender.id == f"wa:{ME}@s.whatsapp.net"
    assert delivery.created is not None and delivery.created.data.title == f"+{ALICE}"


def test_reactions_edits_and_revokes_change_the_message_they_name() -> None:
    chat = f"{ALICE}@s.whatsapp.net"
    target = normalize.message_id(CONNECTION, chat, "ORIGINAL")
    added = _only(
        _deliver(message_ev(Message(reactionMessage={"key": {"ID": "ORIGINAL"}, "text": "👍"}))),
        ev.ReactionAdded,
    )
    assert (added.data.message_id, added.data.emoji) == (target, "👍")
    removed = _deliver(message_ev(Message(reactionMessage={"key": {"ID": "ORIGINAL"}, "text": ""})))
    assert isinstance(removed.events[0], ev.ReactionRemoved)
    edit = Message(
        protocolMessage={"type": 14, "key": {"ID": "ORIGINAL"}, "editedMessage": {"conversation": "fixed"}}
    )
    edited = _only(_deliver(message_ev(edit, edit="1", wa_id="EDIT1")), ev.MessageEdited)
    assert (edited.data.message_id, edited.data.text) == (target, "fixed")
    revoke = Message(protocolMessage={"type": 0, "key": {"ID": "ORIGINAL"}})
    deleted = _only(_deliver(message_ev(revoke, edit="7", wa_id="REV1")), ev.MessageDeleted)
    assert (deleted.data.message_id, deleted.data.deleted_at) == (target, AT)
    assert all(d.created is None for d in (_deliver(message_ev(revoke, edit="7")),))


@pytest.mark.parametrize(
    "event",
    [
        message_ev(Message(protocolMessage={"key": {"ID": "X"}})),  # a protocol message without a type
        message_ev(Message()),
        message_ev(Message(conversation="a status"), chat=j("status", "broadcast")),
    ],
)
def test_what_carries_nothing_for_the_inbox_is_nothing(event: Any) -> None:
    assert _deliver(event) == normalize.Delivery(None, ())


@given(st.integers(min_value=1_000_000_000, max_value=4_000_000_000))
def test_times_are_read_as_milliseconds_or_seconds(seconds: int) -> None:
    assert (
        normalize.moment(seconds) == normalize.moment(seconds * 1000) == datetime.fromtimestamp(seconds, UTC)
    )


def test_the_timestamp_of_a_message_is_milliseconds() -> None:
    received = _only(
        _deliver(message_ev(Message(conversation="x"), timestamp=AT_MS + 1500)), ev.MessageReceived
    )
    assert received.data.sent_at == datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)


def test_a_receipt_marks_each_of_our_messages_by_its_chat_and_id() -> None:
    chat = f"{ALICE}@s.whatsapp.net"
    first = normalize.receipt(chat, ("3EB0A", "3EB0B"), "read", AT, tenant_id="t_1", connection_id=CONNECTION)
    again = normalize.receipt(chat, ("3EB0A", "3EB0B"), "read", AT, tenant_id="t_1", connection_id=CONNECTION)
    assert first.created is None
    marks = [e for e in first.events if isinstance(e, ev.MessageStatusChanged)]
    assert [(m.data.provider_message_id, m.data.status) for m in marks] == [
        (f"{chat}:3EB0A", "read"),
        (f"{chat}:3EB0B", "read"),
    ]
    assert {m.aggregate_id for m in marks} == {normalize.conversation_id(CONNECTION, chat)}
    assert [e.id for e in first.events] == [e.id for e in again.events]  # WhatsApp repeating it: stored once
    delivered = normalize.receipt(
        chat, ("3EB0A",), "delivered", AT, tenant_id="t_1", connection_id=CONNECTION
    )
    assert delivered.events[0].id != first.events[0].id


def test_a_device_may_mark_only_its_own_connections_messages() -> None:
    chat = f"{ALICE}@s.whatsapp.net"
    actor = devices.actor("d_1")
    mine = normalize.receipt(
        chat, ("3EB0A",), "read", AT, tenant_id="t_1", connection_id=CONNECTION, actor=actor
    )
    other = normalize.receipt(
        chat, ("3EB0A",), "read", AT, tenant_id="t_1", connection_id="cn_other", actor=actor
    )
    hosted = {CONNECTION: "whatsapp"}
    assert devices.refusal(mine.events[0], tenant_id="t_1", device_id="d_1", connections=hosted) is None
    refused = devices.refusal(other.events[0], tenant_id="t_1", device_id="d_1", connections=hosted)
    assert refused is not None and "not hosted by this device" in refused
