"""The cloud connector of a kind that runs on a device (the Personal Bridge): it hands each
send to the gateway holding the device's tunnel (``adapters/nats/bridge_relay``) and turns
the device's answer into what the shared runtime understands.

A device that is offline defers the send; once the command is older than
:data:`domain.commands.SEND_EXPIRY` (15 minutes) it fails with ``device_offline``, because a
message sent that late is worse than one reported as not sent.
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
    def __init__(self, kind: str, capabilities: Capabilities, nc: Client) -> None:
        self.kind = kind
        self.capabilities = capabilities
        self._nc = nc

    async def send(self, command: SendMessage) -> Delivered:
        payload = msgspec.json.encode(command)
        try:
            raw = await bridge_relay.request_send(
                self._nc, command.channel, command.connection_id, payload, ANSWER_TIMEOUT
            )
        except bridge_relay.DeviceUnreachable:
            waited = datetime.now(UTC) - command.requested_at
            if waited >= SEND_EXPIRY:
                minutes = int(SEND_EXPIRY.total_seconds() // 60)
                raise SendRejected(
                    "device_offline", f"The bridge device was offline for more than {minutes} minutes."
                ) from None
            retry = min(OFFLINE_RETRY, max(1.0, (SEND_EXPIRY - waited).total_seconds()))
            raise SendDeferred("the bridge device is offline", retry_after=retry) from None
        except TimeoutError as exc:
            raise SendDeferred(str(exc)) from None
        return answered(msgspec.json.decode(raw, type=t.Result))


def answered(result: t.Result) -> Delivered:
    """The device's result as the runtime's outcome (raises for rejected and deferred)."""
    if result.outcome == "delivered" and result.provider_message_id and result.sent_at:
        return Delivered(result.provider_message_id, result.sent_at)
    if result.outcome == "rejected":
        raise SendRejected(result.code or "rejected", result.reason or "The device refused the message.")
    raise SendDeferred(result.reason or "the device will try again", retry_after=result.retry_after)
