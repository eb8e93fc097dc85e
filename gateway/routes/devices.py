"""Personal Bridge devices: pairing codes, pairing, the device list and revocation.

``POST /v1/devices/pairing-codes`` (owner/admin) makes a one-time code (10 minutes, stored
as a digest). ``POST /v1/devices/pair`` is what ``moltbot bridge pair CODE`` calls: the
code and the device's Ed25519 public key in, the device's id out (``device.paired``); a
used, expired or unknown code is ``400 invalid_code`` and nothing is stored.
``DELETE /v1/devices/{id}`` records ``device.revoked``: the tunnel closes, the device's
channels ask for action (``device_revoked``) and the key is never accepted again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import Request, Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from adapters.nats import bridge_relay
from domain import devices, ids
from domain import events as ev
from gateway.connections import may_connect
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.limits import client_ip
from gateway.plan_limits import ensure_room
from gateway.routes.recovery import ensure_verified
from projections import connections_queries, devices_queries

PAIRING_CODES_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.pairing_codes (
    code_hash  text PRIMARY KEY,  -- domain.devices.code_digest; the code itself is never stored
    tenant_id  text NOT NULL,
    user_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    device_id  text                -- the device it paired
);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.pairing_codes TO moltbot_gateway;
"""

INVALID_CODE = (
    "This pairing code is not valid: it was used already, it expired (codes live 10 minutes) or it was"
    " mistyped. Make a new one on the Bridge page."
)


class PairingCode(msgspec.Struct, frozen=True):
    code: str
    expires_at: datetime
    qr_svg: str  # the QR of a moltbot://pair link holding the gateway's address and the code


class PairBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    public_key: str  # the device's Ed25519 public key, raw, base64url
    name: str = "My Mac"
    platform: str = "macos"


class Paired(msgspec.Struct, frozen=True):
    device_id: str
    tenant_id: str
    name: str
    fingerprint: str
    seq: int


class DeviceView(msgspec.Struct, frozen=True):
    device_id: str
    name: str
    platform: str
    state: str  # online | offline | revoked
    state_reason: str | None
    fingerprint: str
    version: str | None
    capabilities: list[str]
    connections: list[connections_queries.Channel]
    paired_at: datetime
    last_seen_at: datetime | None


class Devices(msgspec.Struct, frozen=True):
    items: list[DeviceView]


class Revoked(msgspec.Struct, frozen=True):
    device_id: str
    event_id: str
    seq: int


def _qr_svg(link: str) -> str:
    return segno.make(link, error="m").svg_inline(scale=4, dark="#111", light="#fff")


@post("/devices/pairing-codes", status_code=201)
async def create_pairing_code(ctx: Ctx, who: Who, request: Request[Any, Any, Any]) -> PairingCode:
    """A one-time code to pair a device: ``moltbot bridge pair CODE --gateway URL`` (402
    when the plan has no room for a channel on a device)."""
    may_connect(who)
    await ensure_verified(ctx, who, "pairing a device")
    await ensure_room(ctx, who, "bridge_channels")
    code = devices.new_pairing_code()
    expires_at = datetime.now(UTC) + devices.PAIRING_TTL
    digest = devices.code_digest(devices.normalize_code(code) or "")
    async with ctx.tenant(who.tenant_id) as conn:
        # Spent and expired codes are kept a day (to tell "used" from "mistyped" in support), then go.
        await conn.execute("DELETE FROM gateway.pairing_codes WHERE expires_at < now() - interval '1 day'")
        await conn.execute(
            "INSERT INTO gateway.pairing_codes (code_hash, tenant_id, user_id, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            (digest, who.tenant_id, who.user_id, expires_at),
        )
    gateway = (ctx.public_url or str(request.base_url)).rstrip("/")
    return PairingCode(code, expires_at, _qr_svg(f"moltbot://pair?gateway={gateway}&code={code}"))


def _public_key(text: str) -> bytes:
    try:
        raw = devices.decode_key(text)
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_request", "public_key is a raw Ed25519 public key in base64url (32 bytes).",
            field="public_key",
        ) from None  # fmt: skip
    return raw


@post("/devices/pair", status_code=201)
async def pair(ctx: Ctx, data: JSONBody[PairBody], request: Request[Any, Any, Any]) -> Paired:
    """Pair a device with a code (no sign-in: the code is the proof). Called by the bridge."""
    await ctx.limiter.check(
        "pairing_per_ip",
        client_ip(request, ctx.trusted_proxies),
        "Too many pairing attempts from your address.",
    )
    key = _public_key(data.public_key)
    name = data.name.strip()[:80] or "My Mac"
    normalized = devices.normalize_code(data.code)
    if normalized is None:
        raise ApiError(400, "invalid_code", INVALID_CODE, field="code")
    device_id = ids.new_id(ids.DEVICE)
    async with ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE gateway.pairing_codes SET used_at = now(), device_id = %s"
            " WHERE code_hash = %s AND used_at IS NULL AND expires_at > now()"
            " RETURNING tenant_id, user_id",
            (device_id, devices.code_digest(normalized)),
        )
        row = await cur.fetchone()
        if row is None:
            raise ApiError(400, "invalid_code", INVALID_CODE, field="code")
        tenant_id, user_id = row["tenant_id"], row["user_id"]
        device = ev.DevicePairedData(
            name=name, platform=data.platform.strip()[:40] or "macos", user_id=user_id,
            public_key=devices.encode_key(key), fingerprint=devices.fingerprint(key),
        )  # fmt: skip
        paired = ev.new_event(
            ev.DevicePaired, tenant_id=tenant_id, aggregate_id=device_id, actor=f"user:{user_id}", data=device
        )
        # Recorded before the code's use commits: if the append fails, the code stays usable.
        appended = await ctx.store.append(paired, expected_seq=0)
    return Paired(device_id, tenant_id, name, device.fingerprint, appended.seq)


async def _views(ctx: GatewayContext, tenant_id: str) -> list[DeviceView]:
    async with ctx.tenant(tenant_id) as conn:
        found = await devices_queries.devices(conn, tenant_id)
        channels = await connections_queries.channels(conn, tenant_id)
    by_device: dict[str, list[connections_queries.Channel]] = {}
    for channel in channels:
        if channel.device_id is not None:
            by_device.setdefault(channel.device_id, []).append(channel)
    return [
        DeviceView(
            d.device_id,
            d.name,
            d.platform,
            d.state,
            d.state_reason,
            d.fingerprint,
            d.version,
            d.capabilities,
            by_device.get(d.device_id, []),
            d.paired_at,
            d.last_seen_at,
        )
        for d in found
    ]


@get("/devices")
async def list_devices(ctx: Ctx, who: Who, min_seq: FromQuery[int | None] = None) -> Devices:
    """The inbox's bridge devices: state, what they offer, and the channels they host."""
    await ctx.wait_for(min_seq, ("devices", "connections"), who.tenant_id)
    return Devices(await _views(ctx, who.tenant_id))


@delete("/devices/{device_id:str}", status_code=202)
async def revoke_device(ctx: Ctx, who: Who, device_id: FromPath[str]) -> Revoked:
    """Revoke a device: its tunnel closes now and its key is never accepted again."""
    may_connect(who)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await devices_queries.device(conn, device_id)
        hosted = await connections_queries.channels(conn, who.tenant_id, device_id=device_id)
    if found is None or found.tenant_id != who.tenant_id:
        raise ApiError(404, "not_found", f"No device {device_id} in your inbox.", field="id")
    actor = f"user:{who.user_id}"
    revoked = ev.new_event(
        ev.DeviceRevoked, tenant_id=who.tenant_id, aggregate_id=device_id, actor=actor,
        data=ev.DeviceRevokedData(reason="revoked by a person"),
    )  # fmt: skip
    appended = await ctx.store.append(revoked)
    await bridge_relay.close_device(ctx.store.nc, device_id, "revoked")
    states = [
        ev.new_event(
            ev.ConnectionStateChanged,
            tenant_id=who.tenant_id,
            aggregate_id=channel.connection_id,
            actor=actor,
            data=ev.ConnectionStateChangedData(
                state="action_required",
                code="device_revoked",
                message=f"The device {found.name} was revoked: pair a bridge again to use"
                f" {channel.display_name}.",
                action="pair_device",
            ),
        )
        for channel in hosted
    ]
    if states:
        await ctx.store.append_many(states)
    return Revoked(device_id, appended.event_id, appended.seq)


devices_router = Router(
    path="/v1",
    route_handlers=[create_pairing_code, pair, list_devices, revoke_device],
    tags=["devices"],
    dependencies={"who": Provide(caller)},
)
