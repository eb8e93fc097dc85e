"""streams.yaml is applied idempotently; what JetStream cannot change in place is reported."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest

from adapters.embedded.nats_server import NatsServer
from adapters.nats.errors import StreamConfigError
from adapters.nats.streams import ConsumerSpec, StreamsFile, apply_streams, load_streams_file


async def test_apply_creates_then_changes_nothing(nats_server: NatsServer, streams_spec: StreamsFile) -> None:
    nc = await nats.connect(nats_server.login_url())  # as the admin: only it may change streams
    first = await apply_streams(nc, streams_spec)
    assert [(r.name, r.action) for r in first] == [
        ("EVENTS", "created"),
        ("COMMANDS", "created"),
        ("LIVE", "created"),
        ("DLQ", "created"),
        ("KV_connector_leases", "created"),
        ("EVENTS/outbox", "created"),
        ("EVENTS/agent", "created"),
        ("EVENTS/notifier", "created"),
        ("COMMANDS/connector-webchat", "created"),
        ("COMMANDS/connector-telegram", "created"),
        ("COMMANDS/connector-whatsapp_business", "created"),
        ("COMMANDS/connector-slack", "created"),
        ("COMMANDS/connector-discord", "created"),
        ("COMMANDS/connector-imessage", "created"),
        ("COMMANDS/connector-whatsapp", "created"),
        ("COMMANDS/connector-signal", "created"),
        ("COMMANDS/connector-teams", "created"),
    ]
    second = await apply_streams(nc, streams_spec)
    assert {r.action for r in second} == {"unchanged"}

    # Durable consumers too: the server holds what the file says.
    for consumer in streams_spec.consumers:
        reply = await nc.request(f"$JS.API.CONSUMER.INFO.{consumer.stream}.{consumer.name}", b"")
        held = json.loads(reply.data)["config"]
        assert {k: held[k] for k in consumer.config} == consumer.config

    # What the server holds is what the file says, field for field.
    reply = await nc.request("$JS.API.STREAM.INFO.EVENTS", b"")
    config = json.loads(reply.data)["config"]
    events = next(s for s in streams_spec.streams if s["name"] == "EVENTS")
    assert {k: config[k] for k in events} == events
    assert config["duplicate_window"] == 120_000_000_000
    assert config["deny_delete"] is True
    await nc.close()


async def test_in_place_change_is_updated_and_impossible_change_is_drift(
    nats_server: NatsServer, streams_spec: StreamsFile
) -> None:
    nc = await nats.connect(nats_server.login_url())  # as the admin: only it may change streams
    await apply_streams(nc, streams_spec)
    changed = StreamsFile(
        streams=[
            s | {"description": "new words"}
            if s["name"] == "COMMANDS"
            else s | {"storage": "memory"}
            if s["name"] == "EVENTS"
            else s
            for s in streams_spec.streams
        ],
        consumers=[
            ConsumerSpec(c.stream, c.config | {"max_ack_pending": 7})
            if c.name == "outbox"
            else ConsumerSpec(c.stream, c.config | {"filter_subject": "cmd.elsewhere.>"})
            for c in streams_spec.consumers
        ],
        consumer_templates=streams_spec.consumer_templates,
    )
    reports = {r.name: r for r in await apply_streams(nc, changed)}
    assert reports["EVENTS/outbox"].action == "updated"
    assert reports["EVENTS/outbox"].changes == ["max_ack_pending: 1000 -> 7"]
    assert reports["COMMANDS"].action == "updated"
    assert reports["COMMANDS"].changes == [
        "description: "
        + repr(next(s for s in streams_spec.streams if s["name"] == "COMMANDS")["description"])
        + " -> 'new words'"
    ]
    assert reports["EVENTS"].action == "drift"
    assert "storage" in reports["EVENTS"].line()
    assert reports["EVENTS"].error
    # The event log was not touched.
    reply = await nc.request("$JS.API.STREAM.INFO.EVENTS", b"")
    assert json.loads(reply.data)["config"]["storage"] == "file"
    await nc.close()


def test_bad_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "streams.yaml"
    path.write_text("streams:\n  - subjects: [x]\n")
    with pytest.raises(StreamConfigError, match="name"):
        load_streams_file(path)
    path.write_text("streams: [unclosed\n")
    with pytest.raises(StreamConfigError):
        load_streams_file(path)
