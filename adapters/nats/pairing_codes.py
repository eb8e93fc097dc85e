"""A connection's pairing code (a WhatsApp QR code, or the code to type instead) on LIVE.

The session holding the connection publishes each code on ``live.<tenant>.qr.<connection>``
(core NATS: the gateway forwards it to the owner's event streams as it comes) with a
per-message TTL of the code's lifetime, so the LIVE stream keeps it only while it is valid;
``latest`` reads it back for a client that asks (``GET /v1/channels/{id}/qr``). Nothing of
this reaches EVENTS.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from domain.connectors import PairingCode, qr_subject

STREAM = "LIVE"
CLEARED_TTL = 60  # seconds "no code any more" stays readable


def _ttl(code: PairingCode) -> int:
    if code.expires_at is None:
        return CLEARED_TTL
    return max(1, math.ceil((code.expires_at - datetime.now(UTC)).total_seconds()))


async def publish(nc: Client, tenant_id: str, code: PairingCode) -> None:
    """Show ``code`` to the connection's owner (it replaces the one before)."""
    await nc.publish(
        qr_subject(tenant_id, code.connection_id),
        msgspec.json.encode(code),
        headers={"Nats-TTL": f"{_ttl(code)}s"},
    )


async def latest(nc: Client, tenant_id: str, connection_id: str) -> PairingCode | None:
    """The connection's code while it is valid, else None."""
    try:
        msg = await nc.jetstream(timeout=5).get_last_msg(
            STREAM, qr_subject(tenant_id, connection_id), direct=True
        )
    except NotFoundError:
        return None
    code = msgspec.json.decode(msg.data or b"", type=PairingCode)
    if code.kind == "none" or (code.expires_at is not None and code.expires_at <= datetime.now(UTC)):
        return None
    return code
