"""Sealing personal fields (domain/personal.py, adapters/vault/sealing.py) without a
database: keys are held in memory as a process holds them once loaded."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.vault.cipher import Keyring
from adapters.vault.sealing import DataKeys, Sealer
from domain import events as ev
from domain import personal
from domain.codec import EventCodec

TENANT = "t_sealing"


def _message(text: str, name: str = "Ada Lovelace") -> ev.MessageReceived:
    return ev.new_event(
        ev.MessageReceived, tenant_id=TENANT, aggregate_id="c_1", actor="connector:test",
        data=ev.MessageReceivedData(
            message_id="m_1", connection_id="cn_1", channel="telegram", provider_message_id="1",
            sender=ev.Sender(id="+351912345678", name=name), text=text, sent_at=datetime.now(UTC),
            attachments=(ev.Attachment(kind="document", provider_file_id="file-123", name="passport.pdf"),),
        ),
    )  # fmt: skip


def _sealer() -> Sealer:
    key_id, key = Keyring.generate_key()
    keys = DataKeys(None, Keyring({key_id: key}, key_id))  # type: ignore[arg-type] - no database: keys held
    keys._hold(TENANT, datetime.now(UTC).date(), AESGCM(AESGCM.generate_key(bit_length=256)))
    return Sealer(keys)


async def test_every_personal_field_is_sealed_and_opens_back() -> None:
    sealer, codec = _sealer(), EventCodec()
    event = _message("my door code is 4711")
    (sealed,) = await sealer.seal_events([event])
    raw = codec.encode(sealed)
    for plaintext in (b"4711", b"Ada Lovelace", b"+351912345678", b"passport.pdf", b"file-123"):
        assert plaintext not in raw
    assert raw.count(personal.MARK_JSON) == 5
    assert codec.decode(await sealer.open(raw)) == event
    assert msgspec.structs.replace(sealed, data=event.data) == event  # nothing else changed


async def test_a_shredded_key_reads_erased_and_other_text_is_left_alone() -> None:
    sealer, codec = _sealer(), EventCodec()
    (sealed,) = await sealer.seal_events([_message("secret")])
    raw = codec.encode(sealed)
    sealer.keys.forget(TENANT)
    sealer.keys._hold(TENANT, datetime.now(UTC).date(), None)  # loaded: gone from the database
    erased = codec.decode(await sealer.open(raw))
    assert isinstance(erased, ev.MessageReceived)
    assert (erased.data.text, erased.data.sender.name) == (personal.ERASED, personal.ERASED)
    # A visitor's text that merely looks like a token is not ours: it is left as it is.
    lookalike = personal.token(TENANT, datetime.now(UTC).date(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    plain = codec.encode(
        msgspec.structs.replace(
            _message("x"), data=msgspec.structs.replace(_message("x").data, text=lookalike)
        )
    )
    fresh = _sealer()
    assert codec.decode(await fresh.open(plain)).data.text == lookalike  # type: ignore[attr-defined]


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=300))
async def test_any_text_round_trips(text: str) -> None:
    sealer, codec = _sealer(), EventCodec()
    (sealed,) = await sealer.seal_events([_message(text)])
    assert codec.decode(await sealer.open(codec.encode(sealed))).data.text == text  # type: ignore[attr-defined]


def test_events_without_personal_fields_are_left_as_they_are() -> None:
    usage = ev.new_event(
        ev.UsageRecorded, tenant_id=TENANT, aggregate_id=TENANT, actor="agent",
        data=ev.UsageRecordedData(metric="tokens_in", quantity=3),
    )  # fmt: skip
    assert personal.seal_event(usage, lambda value: pytest.fail("nothing to seal")) is usage


def _run_with_tools() -> ev.AgentRunCompleted:
    return ev.new_event(
        ev.AgentRunCompleted, tenant_id=TENANT, aggregate_id=TENANT, actor="agent",
        data=ev.AgentRunCompletedData(
            run_id="r_1", model="claude", tokens_in=1, tokens_out=2, cost_micros=3,
            tool_calls=(
                ev.AgentToolUse(name="search_inbox", input={"query": "door code 4711", "limit": 5,
                                                            "senders": ["Ada Lovelace"]}),
            ),
        ),
    )  # fmt: skip


async def test_the_strings_inside_a_tool_calls_input_are_sealed_and_its_shape_kept() -> None:
    sealer, codec = _sealer(), EventCodec()
    event = _run_with_tools()
    (sealed,) = await sealer.seal_events([event])
    raw = codec.encode(sealed)
    assert b"4711" not in raw and b"Ada Lovelace" not in raw
    assert b'"limit":5' in raw and b'"query":' in raw  # numbers and keys stay as they are
    assert codec.decode(await sealer.open(raw)) == event


async def test_a_stored_plaintext_event_is_sealed_as_an_append_would_seal_it() -> None:
    """``seal_stored`` (the rewrite of an older log) seals the fields ``seal_events`` seals,
    on the JSON as stored, and leaves events without personal fields byte for byte."""
    from adapters.vault.sealing import unsealed_fields

    sealer, codec = _sealer(), EventCodec()
    for event in (_message("my door code is 4711"), _run_with_tools()):
        raw = codec.encode(event)
        (appended,) = await sealer.seal_events([event])
        assert unsealed_fields(raw) == codec.encode(appended).count(personal.MARK_JSON) > 0
        rewritten = await sealer.seal_stored(raw)
        assert rewritten.count(personal.MARK_JSON) == unsealed_fields(raw)
        assert unsealed_fields(rewritten) == 0
        assert await sealer.seal_stored(rewritten) == rewritten  # sealed once only
        assert codec.decode(await sealer.open(rewritten)) == event
    usage = codec.encode(
        ev.new_event(
            ev.UsageRecorded, tenant_id=TENANT, aggregate_id=TENANT, actor="agent",
            data=ev.UsageRecordedData(metric="tokens_in", quantity=3),
        )
    )  # fmt: skip
    assert await sealer.seal_stored(usage) is usage
    assert await sealer.seal_stored(b"{not json") == b"{not json"
