"""The cloud connector of a kind whose sends go to whoever holds the connection's session:
the gateway holding a device's tunnel (the Personal Bridge), or the connector replica
holding a cloud WhatsApp session. It asks over ``adapters/nats/bridge_relay`` and turns the
answer into what the shared runtime understands.

A holder that is offline (nobody answers, or it answers "deferred") defers the send; once
the command is older than :data:`domain.commands.SEND_EXPIRY` (15 minutes) it fails with
``device_offline``, because a message sent that late is worse than one reported as not sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client

from adapters.nats import bridge_relay
from domain import tunnel as t
from domain.commands import SEND_EXPIRY, SendMessage
from domain.connectors import Capabilities, Delivered, SendDeferred, SendRejected

OFFLINE_RETRY = 30.0  # seconds between looks for a device that is offline
ANSWER_TIMEOUT = 60.0  # the tunnel waits 55 s for the device; this is the request's own bound


class RelayedConnector:
    def __init__(
        self, kind: str, capabilities: Capabilities, nc: Client, *, holder: str = "The bridge device"
    ) -> None:
        self.kind = kind
        self.capabilities = capabilities
        self._nc = nc
        self._holder = holder  # who is offline, for people: "The bridge device", "WhatsApp"

    async def send(self, command: SendMessage) -> Delivered:
        payload = msgspec.json.encode(command)
        try:
            raw = await bridge_relay.request_send(
                self._nc, command.channel, command.connection_id, payload, ANSWER_TIMEOUT
            )
        except bridge_relay.DeviceUnreachable:
            self._expire(command)
            raise SendDeferred(f"{self._holder} is offline", retry_after=_retry(command)) from None
        except TimeoutError as exc:
            raise SendDeferred(str(exc)) from None
        result = msgspec.json.decode(raw, type=t.Result)
        if result.outcome == "deferred":
            self._expire(command)
        return answered(result)

    def _expire(self, command: SendMessage) -> None:
        """Fail a send that waited too long for its holder to be online."""
        if datetime.now(UTC) - command.requested_at >= SEND_EXPIRY:
            minutes = int(SEND_EXPIRY.total_seconds() // 60)
            raise SendRejected(
                "device_offline", f"{self._holder} was offline for more than {minutes} minutes."
            )


def _retry(command: SendMessage) -> float:
    waited = datetime.now(UTC) - command.requested_at
    return min(OFFLINE_RETRY, max(1.0, (SEND_EXPIRY - waited).total_seconds()))


def answered(result: t.Result) -> Delivered:
    """The device's result as the runtime's outcome (raises for rejected and deferred)."""
    if result.outcome == "delivered" and result.provider_message_id and result.sent_at:
        return Delivered(result.provider_message_id, result.sent_at)
    if result.outcome == "rejected":
        raise SendRejected(result.code or "rejected", result.reason or "The device refused the message.")
    raise SendDeferred(result.reason or "the device will try again", retry_after=result.retry_after)
