"""signal-cli's ``receive`` notifications (as signal-cli 0.13 writes them) as canonical events,
and what a send's answer means for the command and the connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.signal import envelopes, normalize, outbound
from adapters.channels.signal import states as s
from adapters.channels.signal.config import Address, SignalSetup, parse_address
from adapters.channels.signal.rpc import RpcError
from domain import devices, ids
from domain import events as ev
from domain.commands import SendMessage
from tests.fakes.signal_envelopes import (
    ALICE,
    AT_MS,
    BOB,
    GROUP_ID,
    HIDDEN,
    ME,
    Json,
    attachment,
    data_message,
    edit_of,
    envelope,
    mention,
    notification,
    quote_of,
    reaction_to,
    receipt,
    sent_to,
)

CONNECTION = "cn_signal"
AT = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNT = ME.number or ""


def _receive(found: Json, *, subscription: int | None = None) -> envelopes.Receive:
    params = notification(ACCOUNT, found, subscription=subscription)["params"]
    return envelopes.receive(json.dumps(params).encode())


def _deliver(found: Json, **options: Any) -> normalize.Delivery:
    return normalize.delivery(
        _receive(found), tenant_id="t_1", connection_id=CONNECTION, account=ACCOUNT, **options
    )


def _only(delivery: normalize.Delivery, cls: type[ev.E]) -> ev.E:
    [event] = delivery.events
    assert isinstance(event, cls)
    return event


def _message_id(author: str, stamp: int = AT_MS) -> str:
    return ids.stable_id(ids.MESSAGE, f"signal:{CONNECTION}:{author}:{stamp}")


def test_a_message_is_named_by_its_author_and_timestamp_and_starts_a_direct_conversation() -> None:
    delivery = _deliver(envelope(ALICE, data=data_message("Is the shop open?")))
    received = _only(delivery, ev.MessageReceived)
    assert received.data.text == "Is the shop open?"
    assert received.data.sent_at == AT  # milliseconds
    assert received.data.provider_message_id == f"{ALICE.uuid}:{AT_MS}"
    assert received.data.message_id == _message_id(ALICE.uuid)
    assert received.data.sender == ev.Sender(id=f"signal:{ALICE.number}", name="Alice")
    assert received.data.mentions_agent is False
    assert delivery.created is not None
    assert (delivery.created.data.kind, delivery.created.data.title) == ("direct", "Alice")
    assert delivery.created.data.external_id == ALICE.uuid  # where replies go: her ACI
    assert delivery.created.aggregate_id == received.aggregate_id
    assert delivery.quotable == normalize.Quotable(
        message_id=received.data.message_id, author=ALICE.uuid, timestamp=AT_MS, text="Is the shop open?"
    )


def test_the_same_envelope_twice_is_the_same_message() -> None:
    first, again = (
        _only(_deliver(envelope(ALICE, data=data_message("hi"))), ev.MessageReceived) for _ in range(2)
    )
    assert (first.data.message_id, first.data.provider_message_id) == (
        again.data.message_id,
        again.data.provider_message_id,
    )


def test_the_subscription_shape_of_the_notification_reads_the_same() -> None:
    found = envelope(ALICE, data=data_message("hi"))
    assert _receive(found, subscription=0) == _receive(found)


def test_someone_who_hides_their_number_is_named_by_their_aci() -> None:
    delivery = _deliver(envelope(HIDDEN, data=data_message("hello")))
    received = _only(delivery, ev.MessageReceived)
    assert received.data.sender == ev.Sender(id=f"signal:{HIDDEN.uuid}", name="Carol")
    assert delivery.created is not None and delivery.created.data.external_id == HIDDEN.uuid


def test_a_group_message_is_in_the_group_and_a_mention_of_the_account_calls_the_agent() -> None:
    text = "\ufffc can you answer Bob?"
    found = envelope(ALICE, data=data_message(text, group=True, mentions=[mention(ME, 0)]))
    delivery = _deliver(found)
    received = _only(delivery, ev.MessageReceived)
    assert received.data.text == f"@{ME.number} can you answer Bob?"
    assert received.data.mentions_agent is True
    assert delivery.created is not None
    assert (delivery.created.data.kind, delivery.created.data.title) == ("group", "Book club")
    assert delivery.created.data.external_id == f"group:{GROUP_ID}"
    other = _only(
        _deliver(envelope(ALICE, data=data_message("\ufffc hi", group=True, mentions=[mention(BOB, 0)]))),
        ev.MessageReceived,
    )
    assert (other.data.text, other.data.mentions_agent) == (f"@{BOB.number} hi", False)


def test_mentions_count_utf16_units_as_signal_does() -> None:
    text, mentioned = normalize.with_mentions(
        "😀 \ufffc and \ufffc",
        (envelopes.Mention(number="+1", start=3, length=1), envelopes.Mention(uuid="u", start=9, length=1)),
        "+1",
    )
    assert (text, mentioned) == ("😀 @+1 and @u", True)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\ufffc"), max_size=30), st.data())
def test_a_mention_replaces_exactly_its_mark_wherever_it_is(before: str, data: st.DataObject) -> None:
    after = data.draw(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\ufffc"), max_size=30)
    )
    start = len(before.encode("utf-16-le")) // 2
    text, _ = normalize.with_mentions(
        f"{before}\ufffc{after}", (envelopes.Mention(number="+49", start=start, length=1),), ""
    )
    assert text == f"{before}@+49{after}"


def test_a_group_change_and_what_carries_no_words_give_nothing() -> None:
    update = envelope(ALICE, data=data_message(None, group=True, group_update=True))
    assert _deliver(update) == normalize.NOTHING
    assert _deliver(envelope(ALICE, data=data_message(None, sticker=True))) == normalize.NOTHING
    assert _deliver(envelope(ALICE, receipt=receipt([AT_MS]))) == normalize.NOTHING
    typing = {"action": "STARTED", "timestamp": AT_MS}
    assert _deliver(envelope(ALICE, typing=typing)) == normalize.NOTHING
    failed = _receive(envelope(ALICE, data=data_message("hi")))
    broken = envelopes.Receive(account=ACCOUNT, envelope=failed.envelope, exception=envelopes.ReceiveError())
    assert normalize.delivery(broken, tenant_id="t_1", connection_id=CONNECTION, account=ACCOUNT).events == ()


def test_a_reply_names_the_message_it_quotes() -> None:
    found = envelope(
        ALICE, timestamp=AT_MS + 5000, data=data_message("yes!", quote=quote_of(ME, AT_MS, "Open?"))
    )
    received = _only(_deliver(found), ev.MessageReceived)
    assert received.data.reply_to_message_id == _message_id("me")  # the account's own message


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("image/jpeg", "image"),
        ("audio/aac", "audio"),
        ("video/mp4", "video"),
        ("application/pdf", "document"),
    ],
)
def test_files_become_attachments_named_by_the_daemons_id(content_type: str, kind: str) -> None:
    files = [attachment("Xa9.bin", content_type, filename="file", size=1234)]
    received = _only(
        _deliver(envelope(ALICE, data=data_message(None, attachments=files))), ev.MessageReceived
    )
    assert received.data.text == ""
    assert received.data.attachments == (
        ev.Attachment(kind=kind, provider_file_id="Xa9.bin", mime=content_type, size=1234, name="file"),  # type: ignore[arg-type]
    )


def test_a_long_message_keeps_its_whole_text_not_its_text_file() -> None:
    files = [attachment("long.txt", envelopes.LONG_TEXT), attachment("p.jpg", "image/jpeg")]
    found = envelope(ALICE, data=data_message("the first 2000 bytes…", attachments=files))
    assert normalize.long_text_id(_receive(found)) == "long.txt"
    received = _only(_deliver(found, long_text="the whole story"), ev.MessageReceived)
    assert received.data.text == "the whole story"
    assert [a.provider_file_id for a in received.data.attachments] == ["p.jpg"]
    assert normalize.long_text_id(_receive(envelope(ALICE, data=data_message("short")))) is None


@pytest.mark.parametrize(("remove", "cls"), [(False, ev.ReactionAdded), (True, ev.ReactionRemoved)])
def test_a_reaction_names_its_target_by_author_and_timestamp(remove: bool, cls: type[ev.Event]) -> None:
    found = envelope(
        ALICE, timestamp=AT_MS + 9, data=data_message(None, reaction=reaction_to(ME, AT_MS, remove=remove))
    )
    delivery = _deliver(found)
    reaction = _only(delivery, cls)
    assert reaction.data == ev.ReactionData(  # type: ignore[attr-defined]
        message_id=_message_id("me"), emoji="👍", sender_id=f"signal:{ALICE.number}"
    )
    assert delivery.created is None
    assert reaction.id == _only(_deliver(found), cls).id  # a redelivery is the same event


def test_a_remote_delete_and_an_edit_name_the_senders_message() -> None:
    deleted = _only(
        _deliver(envelope(ALICE, timestamp=AT_MS + 60, data=data_message(None, remote_delete=AT_MS))),
        ev.MessageDeleted,
    )
    assert deleted.data.message_id == _message_id(ALICE.uuid)
    edit = edit_of(AT_MS, data_message("Is the shop open today?", timestamp=AT_MS + 30))
    edited = _only(_deliver(envelope(ALICE, timestamp=AT_MS + 30, edit=edit)), ev.MessageEdited)
    assert (edited.data.message_id, edited.data.text) == (_message_id(ALICE.uuid), "Is the shop open today?")
    assert edited.data.edited_at == datetime.fromtimestamp((AT_MS + 30) / 1000, UTC)


def test_what_the_owner_wrote_on_the_phone_is_their_own_message() -> None:
    found = envelope(
        ME, timestamp=AT_MS + 7, sync=sent_to(ALICE, data_message("On my way", timestamp=AT_MS + 7))
    )
    delivery = _deliver(found, actor=devices.actor("d_1"))
    sent = _only(delivery, ev.MessageSent)
    assert sent.data.origin == "device"
    assert sent.data.provider_message_id == f"me:{AT_MS + 7}"
    assert sent.data.message_id == _message_id("me", AT_MS + 7)
    assert sent.data.sender == ev.Sender(id=f"signal:{ME.number}", name="Me")
    assert sent.actor == "device:d_1"
    assert delivery.created is not None and delivery.created.data.external_id == ALICE.uuid
    assert delivery.created.aggregate_id == sent.aggregate_id  # the same chat as Alice's messages
    to_group = envelope(ME, sync=sent_to(None, data_message("Hi all", group=True)))
    assert _only(_deliver(to_group), ev.MessageSent).aggregate_id == normalize.conversation_id(
        CONNECTION, f"group:{GROUP_ID}"
    )


def test_the_owners_reactions_edits_and_deletes_from_the_phone() -> None:
    reacted = envelope(ME, sync=sent_to(ALICE, data_message(None, reaction=reaction_to(ALICE, AT_MS, "❤️"))))
    reaction = _only(_deliver(reacted), ev.ReactionAdded)
    assert (reaction.data.message_id, reaction.data.sender_id) == (
        _message_id(ALICE.uuid),
        f"signal:{ME.number}",
    )
    edit = edit_of(AT_MS, data_message("On my way!", timestamp=AT_MS + 50))
    edited = _only(
        _deliver(envelope(ME, timestamp=AT_MS + 50, sync=sent_to(ALICE, None, edit=edit))), ev.MessageEdited
    )
    assert (edited.data.message_id, edited.data.text) == (_message_id("me"), "On my way!")
    unsent = envelope(ME, timestamp=AT_MS + 80, sync=sent_to(ALICE, data_message(None, remote_delete=AT_MS)))
    assert _only(_deliver(unsent), ev.MessageDeleted).data.message_id == _message_id("me")


def test_every_id_a_device_sends_is_one_the_cloud_accepts() -> None:
    """The cloud refuses a device's message whose id is not derived from its connection and
    provider id (domain/devices.py): Signal's ids must pass."""
    for found in (
        envelope(ALICE, data=data_message("hi")),
        envelope(ME, sync=sent_to(ALICE, data_message("hello"))),
    ):
        delivery = _deliver(found, actor=devices.actor("d_1"))
        assert delivery.created is not None
        for event in (delivery.created, *delivery.events):
            refused = devices.refusal(
                event, tenant_id="t_1", device_id="d_1", connections={CONNECTION: "signal"}
            )
            assert refused is None, refused


@given(st.integers(min_value=1_500_000_000_000, max_value=4_000_000_000_000), st.uuids())
def test_ids_depend_on_author_and_timestamp_only(stamp: int, aci: Any) -> None:
    person = type(ALICE)(None, str(aci), None)
    received = _only(
        _deliver(envelope(person, timestamp=stamp, data=data_message("x", timestamp=stamp))),
        ev.MessageReceived,
    )
    assert received.data.message_id == normalize.message_id(CONNECTION, str(aci), stamp)
    assert received.data.sent_at == normalize.moment(stamp)


# --- sends ------------------------------------------------------------------------------------


def _command(to: str = ALICE.uuid, *, reply_to: str | None = None) -> SendMessage:
    return SendMessage(
        command_id="send:t_1:m_1", tenant_id="t_1", conversation_id="c_1", connection_id=CONNECTION,
        channel="signal", message_id="m_1", to=to, text="We open at 9.",
        sender=ev.Sender(id="u_1", name="Ada"), requested_at=AT, causation_id="e_1",
        reply_to_message_id=reply_to,
    )  # fmt: skip


def test_a_send_goes_to_a_person_or_a_group_and_quotes_what_it_answers() -> None:
    assert outbound.send_params(_command(), ACCOUNT) == {
        "message": "We open at 9.", "account": ACCOUNT, "recipient": [ALICE.uuid],
    }  # fmt: skip
    assert outbound.send_params(_command(f"group:{GROUP_ID}"), None) == {
        "message": "We open at 9.", "groupId": GROUP_ID,
    }  # fmt: skip
    quote = normalize.Quotable(message_id="m_9", author=ALICE.uuid, timestamp=AT_MS, text="Open?")
    quoted = outbound.send_params(_command(reply_to="m_9"), ACCOUNT, quote)
    assert (quoted["quoteTimestamp"], quoted["quoteAuthor"], quoted["quoteMessage"]) == (
        AT_MS,
        ALICE.uuid,
        "Open?",
    )


def test_a_delivered_send_is_named_as_the_accounts_own_message() -> None:
    answer = json.dumps({"timestamp": AT_MS + 1, "results": [{"type": "SUCCESS"}]}).encode()
    outcome = outbound.delivered(_command(), answer)
    assert outcome.result.outcome == "delivered"
    assert outcome.result.provider_message_id == f"me:{AT_MS + 1}"
    assert outcome.result.sent_at == normalize.moment(AT_MS + 1)


def _failed(types: list[str], **extra: Any) -> dict[str, Any]:
    results = [{"recipientAddress": {"uuid": ALICE.uuid}, "type": kind, **extra} for kind in types]
    return {"response": {"timestamp": AT_MS, "results": results}}


@pytest.mark.parametrize(
    ("error", "outcome", "code", "happening"),
    [
        (RpcError(-5, "Failed to send message due to rate limiting", _failed(["RATE_LIMIT_FAILURE"])),
         "deferred", "signal_busy", s.RateLimited(60.0)),
        (RpcError(-5, "Failed to send message due to rate limiting",
                  _failed(["RATE_LIMIT_FAILURE"], token="c4a7", retryAfterSeconds=3600)),
         "deferred", "signal_busy", s.CaptchaRequired("c4a7", ACCOUNT, None)),
        (RpcError(-4, "Failed to send message due to untrusted identities", _failed(["IDENTITY_FAILURE"])),
         "rejected", "untrusted_identity", None),
        (RpcError(-1, "Failed to send message", _failed(["UNREGISTERED_FAILURE"])),
         "rejected", "not_on_signal", None),
        (RpcError(-1, f"The user {ALICE.number} is not registered."), "rejected", "not_on_signal", None),
        (RpcError(-1, "Failed to send message", _failed(["NETWORK_FAILURE"])),
         "deferred", "signal_busy", None),
        (RpcError(-32602, "Specified account does not exist"), "rejected", "unregistered", s.Unregistered()),
        (RpcError(-1, "Group not found: abc"), "rejected", "signal_refused", None),
        (RpcError(-32603, "Failed to send message: timeout (IOException)"), "deferred", "signal_busy", None),
    ],
)  # fmt: skip
def test_what_a_refused_send_becomes(
    error: RpcError, outcome: str, code: str, happening: s.Happening | None
) -> None:
    refused = outbound.refused(_command(), error, account=ACCOUNT, folder=None)
    assert (refused.result.outcome, refused.result.code, refused.happening) == (outcome, code, happening)
    if outcome == "deferred":
        assert refused.result.retry_after is not None and refused.result.retry_after > 0


def test_a_captcha_says_how_to_solve_it_with_the_signal_cli_the_bridge_runs() -> None:
    shown = s.state_for(s.CaptchaRequired("c4a7", ACCOUNT, "/home/ada/.moltbot-bridge/signal/cn_1"))
    assert (shown.state, shown.code, shown.action) == ("action_required", "captcha_required", "solve_captcha")
    assert "signalcaptchas.org" in shown.message
    assert f"--config /home/ada/.moltbot-bridge/signal/cn_1 -a {ACCOUNT}" in shown.message
    assert "--challenge c4a7" in shown.message


@pytest.mark.parametrize(
    ("happening", "state", "code", "action"),
    [
        (s.LinkShown(), "connecting", "link_required", "scan_qr"),
        (s.LinkExpired(), "action_required", "link_expired", "link_again"),
        (s.Connected("+15559990000"), "connected", "ok", None),
        (s.Unregistered(), "action_required", "unregistered", "link_again"),
        (s.Unregistered("+15550001111"), "action_required", "unregistered", "fix_settings"),
        (s.RateLimited(120), "degraded", "rate_limited", "wait"),
        (s.CliMissing(None), "action_required", "signal_cli_missing", "install_signal_cli"),
        (s.CliMissing("/opt/signal-cli"), "action_required", "signal_cli_missing", "install_signal_cli"),
        (
            s.CliFailed("UnsupportedClassVersionError"),
            "action_required",
            "signal_cli_failed",
            "fix_signal_cli",
        ),
        (s.Unreachable("no network"), "degraded", "signal_unreachable", None),
    ],
)
def test_each_happening_is_a_state_with_what_to_do(
    happening: s.Happening, state: str, code: str, action: str | None
) -> None:
    shown = s.state_for(happening)
    assert (shown.state, shown.code, shown.action) == (state, code, action)
    assert shown.message.endswith((".", "trying.")) or "THE_LINK" in shown.message


def test_the_state_without_signal_cli_says_how_to_install_it() -> None:
    assert "brew install signal-cli" in s.state_for(s.CliMissing(None)).message
    assert "/opt/signal-cli" in s.state_for(s.CliMissing("/opt/signal-cli")).message


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_address", "address"),
    [
        ("unix:/run/signal-cli/socket", Address(transport="unix", path="/run/signal-cli/socket")),
        ("/run/signal-cli/socket", Address(transport="unix", path="/run/signal-cli/socket")),
        ("tcp://127.0.0.1:7583", Address(transport="tcp", host="127.0.0.1", port=7583)),
        ("localhost:7583", Address(transport="tcp", host="localhost", port=7583)),
        ("http://127.0.0.1:8080", Address(transport="http", host="127.0.0.1", port=8080)),
        (
            "https://signal.example:443/",
            Address(transport="http", host="signal.example", port=443, https=True),
        ),
    ],
)
def test_the_daemons_address_in_each_form(given_address: str, address: Address) -> None:
    assert parse_address(given_address) == address


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MOLTBOT_SIGNAL_RPC": "unix:relative/socket"}, "MOLTBOT_SIGNAL_RPC"),
        ({"MOLTBOT_SIGNAL_RPC": "ftp://host:21"}, "MOLTBOT_SIGNAL_RPC"),
        ({"MOLTBOT_SIGNAL_RPC": "tcp://host"}, "MOLTBOT_SIGNAL_RPC"),
        (
            {"MOLTBOT_SIGNAL_RPC": "tcp://host:1", "MOLTBOT_SIGNAL_CLI": "/bin/signal-cli"},
            "MOLTBOT_SIGNAL_CLI",
        ),
        ({"MOLTBOT_SIGNAL_ACCOUNT": "+15550001111"}, "MOLTBOT_SIGNAL_RPC"),
        (
            {"MOLTBOT_SIGNAL_RPC": "tcp://host:1", "MOLTBOT_SIGNAL_ACCOUNT": "0151 2345"},
            "MOLTBOT_SIGNAL_ACCOUNT",
        ),
    ],
)
def test_settings_that_cannot_be_used_are_refused_at_start_by_name(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        SignalSetup.from_environ(environ)


def test_no_settings_means_signal_cli_on_the_path() -> None:
    assert SignalSetup.from_environ({}) == SignalSetup()
