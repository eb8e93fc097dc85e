"""Envelopes round-trip through JSON; bad bytes are classified; old versions are upcast."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import events as ev
from domain.codec import EventCodec, dedupe_key
from domain.errors import InvalidEvent
from domain.examples import examples

ENVELOPE_FIELDS = {
    "id", "type", "v", "tenant_id", "aggregate_id", "occurred_at",
    "causation_id", "correlation_id", "actor", "data",
}  # fmt: skip

codec = EventCodec()
ids = st.text("abcdefghjkmnpqrstvwxyz0123456789_", min_size=1, max_size=30)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@pytest.mark.parametrize("event", examples(), ids=lambda e: e.type)
def test_every_example_round_trips(event: ev.Event) -> None:
    raw = codec.encode(event)
    assert set(json.loads(raw)) == ENVELOPE_FIELDS
    assert json.loads(raw)["type"] == event.type
    assert codec.decode(raw) == event


# Tool inputs are free JSON objects: generate them as JSON, not as "Any".
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
st.register_type_strategy(
    ev.AgentToolUse,
    st.builds(
        ev.AgentToolUse,
        name=st.text(max_size=20),
        input=st.dictionaries(st.text(max_size=5), _json, max_size=3),
    ),
)


def _payloads(cls: type[ev.Event]) -> st.SearchStrategy[Any]:
    data_type = cls.__annotations__["data"]
    payload_cls = getattr(ev, data_type) if isinstance(data_type, str) else data_type
    return st.from_type(payload_cls)


@given(
    st.sampled_from(ev.EVENT_TYPES).flatmap(lambda cls: st.tuples(st.just(cls), _payloads(cls))),
    ids,
    ids,
    times,
    st.one_of(st.none(), ids),
)
def test_envelope_round_trip_property(
    case: tuple[type[ev.Event], Any], tenant: str, aggregate_id: str, at: datetime, causation: str | None
) -> None:
    cls, data = case
    event = ev.new_event(
        cls,
        tenant_id=tenant,
        aggregate_id=aggregate_id,
        actor="user:u_1",
        data=data,
        occurred_at=at,
        causation_id=causation,
    )
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert decoded.subject == event.subject


def test_malformed_bytes_are_classified() -> None:
    with pytest.raises(InvalidEvent) as malformed:
        codec.decode(b"{not json")
    assert malformed.value.reason == "malformed"
    with pytest.raises(InvalidEvent) as unknown:
        codec.decode(b'{"type":"message.teleported","v":1,"data":{}}')
    assert unknown.value.reason == "unknown_type"
    good = json.loads(codec.encode(examples()[0]))
    good["data"]["unexpected"] = 1
    with pytest.raises(InvalidEvent) as invalid:
        codec.decode(json.dumps(good).encode())
    assert invalid.value.reason == "invalid"
    good["data"].pop("unexpected")
    good["v"] = 99
    with pytest.raises(InvalidEvent) as future:
        codec.decode(json.dumps(good).encode())
    assert future.value.reason == "unsupported_version"


def test_old_version_is_upcast_on_read() -> None:
    """Pretend message.edited is at v2, where v1 named the text field ``body``."""
    edited = next(e for e in examples() if isinstance(e, ev.MessageEdited))
    v1 = json.loads(codec.encode(edited))
    v1["data"]["body"] = v1["data"].pop("text")
    v1["v"] = 1

    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k != "body"} | {"text": data["body"]}

    upcasting = EventCodec(upcasters={("message.edited", 1): v1_to_v2}, versions={"message.edited": 2})
    decoded = upcasting.decode(json.dumps(v1).encode())
    assert isinstance(decoded, ev.MessageEdited)
    assert decoded.data.text == edited.data.text

    with pytest.raises(InvalidEvent) as missing:
        EventCodec(versions={"message.edited": 3}).decode(json.dumps(v1).encode())
    assert missing.value.reason == "unsupported_version"


def test_dedupe_key_of_inbound_message_is_the_provider_id() -> None:
    received = next(e for e in examples() if isinstance(e, ev.MessageReceived))
    assert (
        dedupe_key(received) == f"telegram:{received.data.connection_id}:{received.data.provider_message_id}"
    )
    created = examples()[0]
    assert dedupe_key(created) == created.id


def test_new_event_refuses_bad_tokens() -> None:
    from domain.errors import InvalidToken

    with pytest.raises(InvalidToken):
        ev.new_event(
            ev.TenantCreated,
            tenant_id="t.1",
            aggregate_id="t_1",
            actor="user:u",
            data=ev.TenantCreatedData(name="x"),
        )


def test_payloads_forbid_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"name": "x", "color": "red"}, ev.TenantCreatedData)
