"""WhatsApp Business webhook payloads → canonical events, as tables (pure: no Graph API, no
network); the payloads have the shapes of Meta's webhook reference, the 2026 business-scoped
user ids (no phone number) among them. Also the webhook's pure checks (signature, Meta's
subscription check) and what each Graph API error means for a send."""

from __future__ import annotations

import copy
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.errors import BadSignature, SubscriptionRefused
from adapters.channels.whatsapp_business import OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON
from adapters.channels.whatsapp_business.client import GraphError, recipient
from adapters.channels.whatsapp_business.connector import refusal
from adapters.channels.whatsapp_business.normalize import (
    callback_data,
    conversation_id,
    message_id,
    normalize,
)
from adapters.channels.whatsapp_business.webhook import confirm_subscription, verify_signature
from domain import events as ev
from domain import ids
from domain.connectors import SendDeferred, SendRejected

TENANT, CONNECTION, PHONE_NUMBER_ID = "t_1", "cn_1", "106540352242922"
WA_ID, BSUID = "16505551234", "US.13491208655302741918"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
STAMP = "1749416383"
SHEENA = {"profile": {"name": "Sheena Nelson"}, "wa_id": WA_ID}


def _delivery(
    value: dict[str, Any], *, field: str = "messages", phone_number_id: str = PHONE_NUMBER_ID
) -> dict[str, Any]:
    metadata = {"display_phone_number": "15550783881", "phone_number_id": phone_number_id}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
                        "field": field,
                    }
                ],
            }
        ],
    }


def _message(kind: str = "text", contact: dict[str, Any] = SHEENA, **content: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"id": WAMID, "timestamp": STAMP, "type": kind}
    if "wa_id" in contact:
        message["from"] = contact["wa_id"]
    if "user_id" in contact and "wa_id" not in contact:
        message["from_user_id"] = contact["user_id"]
    if kind == "text" and not content:
        content = {"text": {"body": "Does it come in another color?"}}
    return _delivery({"contacts": [contact], "messages": [{**message, **content}]})


def _media(kind: str, **media: Any) -> dict[str, Any]:
    return _message(kind, **{kind: {"id": "1003383421387256", "sha256": "abc=", **media}})


def _events(payload: dict[str, Any]) -> list[ev.Event]:
    normalized = normalize(
        payload, tenant_id=TENANT, connection_id=CONNECTION, phone_number_id=PHONE_NUMBER_ID
    )
    return [event for delivery in normalized.deliveries for event in delivery.events]


def _received(payload: dict[str, Any]) -> ev.MessageReceivedData:
    [received] = _events(payload)
    assert isinstance(received, ev.MessageReceived)
    return received.data


OURS = callback_data(conversation_id(CONNECTION, WA_ID), ids.stable_id("m", "send:t_1:reply-1"))


def _status(status: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        "status": status,
        "timestamp": "1750263773",
        "recipient_id": WA_ID,
        "biz_opaque_callback_data": OURS,
        **extra,
    }
    if status in ("sent", "delivered", "read"):
        entry["conversation"] = {"id": "c0ffee", "origin": {"type": "service"}}
        entry["pricing"] = {
            "billable": False,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service",
        }
    if errors is not None:
        entry["errors"] = errors
    return _delivery({"statuses": [entry]})


REENGAGEMENT = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "Re-engagement message",
    "error_data": {
        "details": "Message failed to send because more than 24 hours have passed since the customer last"
        " replied to this number."
    },
    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
}


@pytest.mark.parametrize(
    ("payload", "types"),
    [
        (_message(), ["message.received"]),
        (_media("image", mime_type="image/jpeg", caption="Wall art"), ["message.received"]),
        (_media("document", mime_type="application/pdf", filename="menu.pdf"), ["message.received"]),
        (_media("audio", mime_type="audio/ogg; codecs=opus", voice=True), ["message.received"]),
        (_media("video", mime_type="video/mp4"), ["message.received"]),
        (_media("sticker", mime_type="image/webp", animated=False), ["message.received"]),
        (_message("button", button={"payload": "STOP", "text": "Stop promotions"}), ["message.received"]),
        (
            _message(
                "interactive",
                interactive={"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}},
            ),
            ["message.received"],
        ),
        (_message("reaction", reaction={"message_id": WAMID, "emoji": "\U0001f44d"}), []),
        (
            _message("location", location={"latitude": 37.48, "longitude": -122.14, "name": "Philz Coffee"}),
            [],
        ),
        (_message("unsupported", errors=[{"code": 131051, "title": "Message type unknown"}]), []),
        (_status("failed", errors=[REENGAGEMENT]), ["message.send_failed"]),
        (_status("sent"), []),
        (_status("delivered"), []),
        (_status("read"), []),
        (
            _delivery(
                {"event": "APPROVED", "message_template_id": 1}, field="message_template_status_update"
            ),
            [],
        ),
        ({"object": "page", "entry": [{"id": "1", "changes": []}]}, []),
    ],
)
def test_which_payloads_become_which_events(payload: dict[str, Any], types: list[str]) -> None:
    assert [event.type for event in _events(payload)] == types


def test_a_text_names_its_customer_and_ids_derived_from_metas() -> None:
    normalized = normalize(
        _message(), tenant_id=TENANT, connection_id=CONNECTION, phone_number_id=PHONE_NUMBER_ID
    )
    [delivery] = normalized.deliveries
    [received] = delivery.events
    conversation = ids.stable_id("c", f"whatsapp_business:{CONNECTION}:{WA_ID}")
    assert received.aggregate_id == conversation
    assert received.actor == f"connector:whatsapp_business:{CONNECTION}"
    assert isinstance(received, ev.MessageReceived)
    assert received.data == ev.MessageReceivedData(
        message_id=ids.stable_id("m", f"whatsapp_business:{CONNECTION}:{WAMID}"),
        connection_id=CONNECTION,
        channel="whatsapp_business",
        provider_message_id=WAMID,
        sender=ev.Sender(id=f"wa:{WA_ID}", name="Sheena Nelson"),
        text="Does it come in another color?",
        sent_at=datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC),
    )
    assert delivery.created is not None
    assert delivery.created.aggregate_id == conversation
    assert delivery.created.data == ev.ConversationCreatedData(
        channel="whatsapp_business",
        connection_id=CONNECTION,
        kind="direct",
        title="Sheena Nelson",
        external_id=WA_ID,
    )


@pytest.mark.parametrize(
    ("contact", "key", "name"),
    [
        (SHEENA, WA_ID, "Sheena Nelson"),
        # 2026: a business-scoped user id beside the phone; the phone stays the key
        ({"profile": {"name": "Sheena Nelson"}, "wa_id": WA_ID, "user_id": BSUID}, WA_ID, "Sheena Nelson"),
        # a user with a username: no phone number at all, the BSUID is the key
        ({"profile": {"name": "Sheena", "username": "@sheena"}, "user_id": BSUID}, BSUID, "Sheena"),
        ({"profile": {"username": "@sheena"}, "user_id": BSUID}, BSUID, "@sheena"),
        ({"user_id": BSUID}, BSUID, BSUID),
    ],
)
def test_a_customer_is_keyed_by_phone_else_by_business_scoped_user_id(
    contact: dict[str, Any], key: str, name: str
) -> None:
    [delivery] = normalize(
        _message(contact=contact), tenant_id=TENANT, connection_id=CONNECTION, phone_number_id=PHONE_NUMBER_ID
    ).deliveries
    [received] = delivery.events
    assert isinstance(received, ev.MessageReceived)
    assert received.aggregate_id == conversation_id(CONNECTION, key)
    assert received.data.sender == ev.Sender(id=f"wa:{key}", name=name)
    assert delivery.created is not None
    assert (delivery.created.data.external_id, delivery.created.data.title) == (key, name)


def test_a_bsuid_only_message_without_contacts_still_names_its_sender() -> None:
    payload = _message(contact={"user_id": BSUID})
    payload["entry"][0]["changes"][0]["value"]["contacts"] = []
    assert _received(payload).sender.id == f"wa:{BSUID}"


def test_a_message_naming_nobody_is_not_carried() -> None:
    payload = _message(contact={"profile": {"name": "?"}})
    assert _events(payload) == []


@pytest.mark.parametrize(
    ("payload", "attachment", "text"),
    [
        (
            _media("image", mime_type="image/jpeg", caption="Wall art"),
            ev.Attachment(kind="image", provider_file_id="1003383421387256", mime="image/jpeg"),
            "Wall art",
        ),
        (
            _media("document", mime_type="application/pdf", filename="menu.pdf", caption="our menu"),
            ev.Attachment(
                kind="document", provider_file_id="1003383421387256", mime="application/pdf", name="menu.pdf"
            ),
            "our menu",
        ),
        (
            _media("audio", mime_type="audio/ogg; codecs=opus", voice=True),
            ev.Attachment(kind="audio", provider_file_id="1003383421387256", mime="audio/ogg; codecs=opus"),
            "",
        ),
        (
            _media("video", mime_type="video/mp4"),
            ev.Attachment(kind="video", provider_file_id="1003383421387256", mime="video/mp4"),
            "",
        ),
        (
            _media("sticker", mime_type="image/webp", animated=False),
            ev.Attachment(kind="sticker", provider_file_id="1003383421387256", mime="image/webp"),
            "",
        ),
    ],
)
def test_media_are_attachments_named_by_metas_media_id(
    payload: dict[str, Any], attachment: ev.Attachment, text: str
) -> None:
    received = _received(payload)
    assert (received.attachments, received.text) == ((attachment,), text)


def test_a_reply_names_the_message_it_answers() -> None:
    earlier = "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1QjJGRjI1RDY0RkE4Nzg4QzcA"
    payload = _message(text={"body": "yes, that one"}, context={"from": "15550783881", "id": earlier})
    assert _received(payload).reply_to_message_id == message_id(CONNECTION, earlier)
    assert _received(_message()).reply_to_message_id is None


@pytest.mark.parametrize(
    ("errors", "code", "reason"),
    [
        ([REENGAGEMENT], OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON),
        (
            [
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "error_data": {"details": "Receiver is incapable"},
                }
            ],
            "whatsapp_131026",
            "WhatsApp did not deliver the message: Receiver is incapable",
        ),
        (
            [{"code": 131049, "title": "Meta chose not to deliver"}],
            "whatsapp_131049",
            "WhatsApp did not deliver the message: Meta chose not to deliver",
        ),
        ([], "whatsapp_failed", "WhatsApp did not deliver the message."),
    ],
)
def test_a_failed_status_of_our_message_is_its_send_failure(
    errors: list[dict[str, Any]], code: str, reason: str
) -> None:
    [failed] = _events(_status("failed", errors=errors))
    assert isinstance(failed, ev.MessageSendFailed)
    assert failed.aggregate_id == conversation_id(CONNECTION, WA_ID)
    assert failed.data == ev.MessageSendFailedData(
        message_id=ids.stable_id("m", "send:t_1:reply-1"), connection_id=CONNECTION, code=code, reason=reason
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"biz_opaque_callback_data": None},  # sent by another program with this number
        {"biz_opaque_callback_data": "order-1234"},
        # names a conversation that is not the recipient's
        {
            "biz_opaque_callback_data": callback_data(
                conversation_id(CONNECTION, "4915112345678"), ids.new_id("m")
            )
        },
        {"recipient_id": "4915112345678"},
    ],
)
def test_a_failure_that_is_not_ours_is_left_alone(extra: dict[str, Any]) -> None:
    assert _events(_status("failed", errors=[REENGAGEMENT], **extra)) == []


def test_a_failure_sent_to_a_bsuid_is_found_by_recipient_user_id() -> None:
    ours = callback_data(conversation_id(CONNECTION, BSUID), ids.new_id("m"))
    payload = _status("failed", errors=[REENGAGEMENT], biz_opaque_callback_data=ours, recipient_user_id=BSUID)
    del payload["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_id"]
    [failed] = _events(payload)
    assert failed.aggregate_id == conversation_id(CONNECTION, BSUID)


def test_the_same_delivery_again_is_the_same_messages_and_failures() -> None:
    payload = _status("failed", errors=[REENGAGEMENT])
    message = _message()
    first, again = _events(payload) + _events(message), _events(copy.deepcopy(payload)) + _events(message)
    assert first[0].id == again[0].id  # the failure's event id derives from the status
    assert [e.data.message_id for e in first] == [e.data.message_id for e in again]  # type: ignore[attr-defined]


def test_a_change_for_another_phone_number_is_skipped_and_named() -> None:
    payload = _message()
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    normalized = normalize(
        payload, tenant_id=TENANT, connection_id=CONNECTION, phone_number_id=PHONE_NUMBER_ID
    )
    assert (normalized.deliveries, normalized.other_numbers) == ((), ("999",))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"entry": []}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {}}]}]}',  # noqa: E501
    ],
)
def test_a_body_that_is_not_metas_shape_is_refused(body: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        normalize(body, tenant_id=TENANT, connection_id=CONNECTION, phone_number_id=PHONE_NUMBER_ID)


@given(st.text(min_size=1).filter(str.strip), st.integers(min_value=0, max_value=4_000_000_000))
def test_the_text_and_moment_are_published_as_sent(text: str, seconds: int) -> None:
    received = _received(_message(text={"body": text}, timestamp=str(seconds)))
    assert (received.text, received.sent_at) == (text, datetime.fromtimestamp(seconds, UTC))


# --- the webhook's checks ------------------------------------------------------------------------

SECRET = "7fd1a0a0c5c7b8e9d0f1a2b3c4d5e6f7"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def _signature(body: bytes = BODY, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_delivery_signed_with_the_app_secret_passes() -> None:
    verify_signature(SECRET, {"X-Hub-Signature-256": _signature()}, BODY)
    verify_signature(
        SECRET, {"x-hub-signature-256": _signature().upper().replace("SHA256=", "sha256=")}, BODY
    )


@pytest.mark.parametrize(
    ("headers", "body", "secret", "words"),
    [
        ({}, BODY, SECRET, "carries no X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": _signature()}, BODY + b" ", SECRET, "does not match"),  # re-serialized
        ({"X-Hub-Signature-256": _signature(secret="another-app")}, BODY, SECRET, "does not match"),
        ({"X-Hub-Signature-256": _signature().removeprefix("sha256=")}, BODY, SECRET, "does not match"),
        ({"X-Hub-Signature-256": "sha256=\u00e9"}, BODY, SECRET, "does not match"),
        ({"X-Hub-Signature-256": _signature(secret="")}, BODY, "", "no app secret"),
    ],
)
def test_anything_else_is_refused_with_a_reason(
    headers: dict[str, str], body: bytes, secret: str, words: str
) -> None:
    with pytest.raises(BadSignature, match=words):
        verify_signature(secret, headers, body)


def test_metas_subscription_check_gets_its_challenge_for_our_verify_token_only() -> None:
    secret = {"verify_token": "meatyhamhock"}
    query = {"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1158201444"}
    assert confirm_subscription(secret, query) == "1158201444"
    for wrong in ({"hub.verify_token": "guess"}, {"hub.mode": "unsubscribe"}, {"hub.verify_token": ""}):
        with pytest.raises(SubscriptionRefused, match="verify token"):
            confirm_subscription(secret, query | wrong)
    with pytest.raises(SubscriptionRefused):
        confirm_subscription({}, query | {"hub.verify_token": ""})


# --- what a Graph API error means for a send -------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (GraphError(400, 131047, "(#131047) Re-engagement message"), SendRejected, OUTSIDE_WINDOW),
        (GraphError(401, 190, "Invalid OAuth access token"), SendRejected, "token_revoked"),
        (
            GraphError(400, 190, "Error validating access token: Session has expired"),
            SendRejected,
            "token_revoked",
        ),
        (
            GraphError(400, 131030, "Recipient phone number not in allowed list"),
            SendRejected,
            "recipient_not_allowed",
        ),
        (GraphError(400, 131026, "Message undeliverable"), SendRejected, "undeliverable"),
        (GraphError(400, 100, "Invalid parameter"), SendRejected, "bad_request"),
        (GraphError(429, 130429, "Rate limit hit", retry_after=7.0), SendDeferred, None),
        (GraphError(400, 131056, "Pair rate limit hit"), SendDeferred, None),
        (GraphError(503, 131016, "Service unavailable"), SendDeferred, None),
        (GraphError(500, None, "Internal Server Error"), SendDeferred, None),
        (GraphError(0, None, "the Graph API cannot be reached"), SendDeferred, None),
    ],
)
def test_graph_errors_map_to_rejected_or_deferred(error: GraphError, outcome: type, code: str | None) -> None:
    answer = refusal(error)
    assert isinstance(answer, outcome)
    if isinstance(answer, SendRejected):
        assert answer.code == code
        assert answer.reason and answer.reason[0].isupper()
    else:
        assert isinstance(answer, SendDeferred)
        assert answer.retry_after == error.retry_after


@pytest.mark.parametrize(
    ("to", "field"),
    [
        (WA_ID, {"to": WA_ID}),
        (BSUID, {"recipient": BSUID}),
        ("US.ENT.11815799212886844830", {"recipient": "US.ENT.11815799212886844830"}),
    ],
)
def test_a_message_goes_to_a_phone_or_a_business_scoped_user_id(to: str, field: dict[str, str]) -> None:
    assert recipient(to) == field
