"""The cloud side of a bridge kind's sends: the relayed connector asks the gateway holding
the device's tunnel over NATS; an offline device defers the send until it is 15 minutes
old, then fails it with ``device_offline``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from nats.aio.client import Client

from adapters.channels.imessage import CAPABILITIES
from adapters.channels.relayed import OFFLINE_RETRY, RelayedConnector
from adapters.nats import bridge_relay
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.connectors import SendDeferred, SendRejected


def _command(age: timedelta, connection_id: str = "cn_relay") -> SendMessage:
    return SendMessage(
        command_id="send:t_1:m_1", tenant_id="t_1", conversation_id="c_1", connection_id=connection_id,
        channel="imessage", message_id="m_1", to="iMessage;-;+15550000000", text="hi",
        sender=ev.Sender(id="u_1", name="Ada"), requested_at=datetime.now(UTC) - age, causation_id="e_1",
    )  # fmt: skip


async def test_an_offline_device_defers_then_fails_with_device_offline(nc: Client) -> None:
    connector = RelayedConnector("imessage", CAPABILITIES, nc)
    with pytest.raises(SendDeferred) as deferred:
        await connector.send(_command(timedelta(minutes=1)))
    assert deferred.value.retry_after == OFFLINE_RETRY
    with pytest.raises(SendDeferred) as almost:
        await connector.send(_command(timedelta(minutes=14, seconds=50)))
    assert almost.value.retry_after is not None and almost.value.retry_after <= 10.5
    with pytest.raises(SendRejected) as failed:
        await connector.send(_command(timedelta(minutes=15, seconds=1)))
    assert failed.value.code == "device_offline"


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (
            t.Result(id="x", outcome="delivered", provider_message_id="sent:m_1", sent_at=datetime.now(UTC)),
            "sent:m_1",
        ),
        (
            t.Result(id="x", outcome="rejected", code="chat_not_found", reason="no such chat"),
            "chat_not_found",
        ),
        (t.Result(id="x", outcome="deferred", reason="busy", retry_after=7.0), 7.0),
    ],
)
async def test_the_devices_answer_becomes_the_runtimes_outcome(
    nc: Client, result: t.Result, outcome: object
) -> None:
    asked: list[SendMessage] = []

    async def device(payload: bytes) -> bytes:
        asked.append(msgspec.json.decode(payload, type=SendMessage))
        return t.encode(result).encode()

    subscription = await bridge_relay.serve_sends(nc, "imessage", "cn_answer", device)
    try:
        connector = RelayedConnector("imessage", CAPABILITIES, nc)
        command = _command(timedelta(0), "cn_answer")
        if result.outcome == "delivered":
            assert (await connector.send(command)).provider_message_id == outcome
        elif result.outcome == "rejected":
            with pytest.raises(SendRejected) as rejected:
                await connector.send(command)
            assert rejected.value.code == outcome
        else:
            with pytest.raises(SendDeferred) as deferred:
                await connector.send(command)
            assert deferred.value.retry_after == outcome
        assert asked == [command]
    finally:
        await subscription.unsubscribe()
