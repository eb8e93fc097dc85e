"""Between a bridge kind's connector and the gateway holding a device's tunnel: plain NATS
request/reply (nothing stored; the command itself stays on COMMANDS until it is answered).

The connector asks ``bridge.<kind>.<connection>.send``; the gateway whose tunnel hosts the
connection answers with the device's :class:`domain.tunnel.Result`. Nobody answering means
the device is offline. ``bridge.device.<id>.close`` closes a device's tunnel on any gateway
(revocation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from domain import subjects


class DeviceUnreachable(Exception):
    """No gateway holds a tunnel for the connection's device (it is offline)."""


async def request_send(
    nc: Client,
    channel: str,
    connection_id: str,
    payload: bytes,
    timeout: float,  # noqa: ASYNC109 - a request bound
) -> bytes:
    """The device's answer to a send; DeviceUnreachable when no tunnel serves the connection,
    TimeoutError when the device did not answer in ``timeout`` seconds."""
    try:
        reply = await nc.request(
            subjects.bridge_send_subject(channel, connection_id), payload, timeout=timeout
        )
    except NoRespondersError:
        raise DeviceUnreachable(connection_id) from None
    except NatsTimeout:
        raise TimeoutError(f"the device did not answer within {timeout:.0f}s") from None
    return reply.data


async def serve_sends(
    nc: Client, channel: str, connection_id: str, answer: Callable[[bytes], Awaitable[bytes]]
) -> Subscription:
    """Answer the connection's sends with ``answer`` (the tunnel's) until unsubscribed."""

    async def handle(msg: Msg) -> None:
        await msg.respond(await answer(msg.data))

    return await nc.subscribe(subjects.bridge_send_subject(channel, connection_id), cb=handle)


async def close_device(nc: Client, device_id: str, reason: str) -> None:
    """Ask every gateway to close the device's tunnel now."""
    await nc.publish(subjects.bridge_close_subject(device_id), reason.encode())
    await nc.flush()


async def on_close(nc: Client, device_id: str, closed: Callable[[str], Awaitable[None]]) -> Subscription:
    """Call ``closed(reason)`` when the device's tunnel is to be closed."""

    async def handle(msg: Msg) -> None:
        await closed(msg.data.decode(errors="replace"))

    return await nc.subscribe(subjects.bridge_close_subject(device_id), cb=handle)
