"""Connecting and disconnecting channels, and what providers post to us, for every kind
the channel registry (``adapters/channels/registry.py``) describes.

``POST /v1/channels/{kind}/connect`` takes the kind's connect body (a bot token, an app's
tokens…), asks the provider whose credentials they are, seals them in the vault and records
the connection (``connection.created``, then ``connecting``); the kind's session picks it
up and reports ``connected``. Credentials never appear in an event, a log line or an
answer. ``DELETE /v1/channels/{id}`` records ``connection.deleted`` and forgets the
credentials; its session stops.

``POST /v1/webhooks/{kind}/{connection_id}`` (a connection's own address) and
``POST /v1/webhooks/{kind}`` (the deployment app's Request URL) hand a provider's delivery
to the kind's webhook, which checks its signature or secret before anything is stored;
``GET /v1/webhooks/{kind}/{connection_id}`` answers a provider's check of that address
(Meta's ``hub.challenge``) for the kinds whose webhook makes one.
OAuth installs ("Add to …") are ``gateway/routes/installs.py``. The errors of the channels
are answered by ``gateway/errors.py``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import segno
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from adapters.channels.registry import KINDS, ChannelKind, ConnectEnv, SubscriptionCheck
from adapters.nats import bridge_relay, pairing_codes
from adapters.postgres import tenancy
from adapters.vault.store import CredentialStore
from domain import events as ev
from gateway.audit_log import note
from gateway.auth import Caller
from gateway.connections import WEBHOOKS_SQL, ChannelAccepted, GatewayHooks, may_connect, need_vault, record
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.plan_limits import ensure_room
from gateway.routes.installs import OAUTH_STATES_SQL, install_routes
from gateway.routes.recovery import ensure_verified
from projections import connections_queries, devices_queries

__all__ = ["OAUTH_STATES_SQL", "WEBHOOKS_SQL", "channels_router"]

RECONNECT_LAG = 5.0  # how long a bridge channel change waits for its read model before the device is told

_FIELD = re.compile(r"`\$\.(\w+)`|field `(\w+)`")


def _kind(kind: str) -> ChannelKind:
    entry = KINDS.get(kind)
    if entry is None:
        raise ApiError(404, "not_found", f"No channel kind {kind!r}.", field="kind")
    return entry


def _decoded(body: bytes, into: type[msgspec.Struct]) -> Any:
    """The kind's connect body, or 400 naming the field at fault."""
    try:
        return msgspec.json.decode(body, type=into)
    except msgspec.ValidationError as exc:
        found = _FIELD.search(str(exc))
        field = (found[1] or found[2]) if found else None
        raise ApiError(400, "invalid_request", str(exc), field=field) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_request", f"The body is not JSON: {exc}") from None


async def _welcome_again(ctx: GatewayContext, device_id: str, seq: int) -> None:
    """Have the device open its tunnel again, once the connections read model holds ``seq``:
    the tunnel welcomes it with the device's connections as that read model lists them."""
    await tenancy.wait_for_seq(ctx.pool, seq, ("connections",), within=RECONNECT_LAG, applied=ctx.applied)
    await bridge_relay.close_device(ctx.store.nc, device_id, "reconnect")


@post("/channels/{kind:str}/connect", status_code=202)
async def connect(
    ctx: Ctx, who: Who, kind: FromPath[str], request: Request[Any, Any, Any]
) -> ChannelAccepted:
    """Connect a channel: the kind's credentials (see docs/connectors.md for each kind)."""
    entry = _kind(kind)
    if entry.connect is None or entry.connect_body is None:
        raise ApiError(404, "not_found", f"A {kind} channel is not connected this way.", field="kind")
    body = _decoded(await request.body(), entry.connect_body)
    may_connect(who)
    need_vault(ctx)
    await ensure_verified(ctx, who, "connecting channels")
    # Before asking the provider: the plan has room for one more.
    await ensure_room(ctx, who, "bridge_channels" if getattr(body, "device_id", None) else "cloud_channels")
    connected = await entry.connect(body, ConnectEnv(endpoints=ctx.endpoints, public_url=ctx.public_url))
    if connected.device_id is not None:
        await _may_host(ctx, who, kind, connected.device_id)
    accepted = await record(
        ctx, who, kind, connected.display_name, connected.secret, entry.provider, team_id=connected.team_id,
        device_id=connected.device_id,
    )  # fmt: skip
    if connected.device_id is not None:  # the device opens its tunnel again and is welcomed with it
        await _welcome_again(ctx, connected.device_id, accepted.seq)
    if connected.then is not None:
        await connected.then(accepted.connection_id)
    await note(
        ctx, request, who.tenant_id, "channel.connected", actor=f"user:{who.user_id}",
        target=accepted.connection_id, detail={"kind": kind},
    )  # fmt: skip
    if connected.verify_token is not None or connected.show_webhook_url:  # pasted in the provider's dashboard
        url = f"{ctx.public_url or ''}/v1/webhooks/{kind}/{accepted.connection_id}"
        accepted = msgspec.structs.replace(accepted, webhook_url=url, verify_token=connected.verify_token)
    return accepted


async def _may_host(ctx: GatewayContext, who: Caller, kind: str, device_id: str) -> None:
    """Refuse (4xx, saying why) to run ``kind`` on a device that cannot host it now."""
    async with ctx.tenant(who.tenant_id) as conn:
        device = await devices_queries.device(conn, device_id)
        hosted = await connections_queries.channels(conn, who.tenant_id, device_id=device_id)
    if device is None or device.tenant_id != who.tenant_id:
        detail = f"No device {device_id} in your inbox (GET /v1/devices)."
        raise ApiError(404, "not_found", detail, field="device_id")
    if device.revoked_at is not None:
        detail = f"{device.name} was revoked: pair it again first."
        raise ApiError(409, "device_revoked", detail, field="device_id")
    if f"{kind}.read" not in device.capabilities:
        offers = ", ".join(device.capabilities) or "nothing"
        raise ApiError(
            409, "not_hostable",
            f"The bridge on {device.name} cannot run {kind} (it offers: {offers});"
            " update it to the latest moltbot and start it again.",
            field="device_id",
        )  # fmt: skip
    if any(channel.channel == kind for channel in hosted):
        raise ApiError(
            409, "already_connected", f"{device.name} runs a {kind} channel already; remove it first.",
            field="device_id",
        )  # fmt: skip


async def _webhook(
    ctx: GatewayContext, kind: str, connection_id: str | None, request: Request[Any, Any, Any]
) -> Response[Any]:
    entry = _kind(kind)
    webhook = ctx.webhook(kind)
    if webhook is None:
        raise ApiError(404, "not_found", f"{entry.provider} does not post to this gateway.")
    body = await request.body()
    answer = await webhook.receive(GatewayHooks(ctx), connection_id, dict(request.headers), body)
    return Response(answer)


@post("/webhooks/{kind:str}/{connection_id:str}", status_code=200, include_in_schema=False)
async def connection_webhook(
    ctx: Ctx, kind: FromPath[str], connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> Response[Any]:
    """A provider's delivery to one connection (its secret or signature is checked first)."""
    return await _webhook(ctx, kind, connection_id, request)


@get("/webhooks/{kind:str}/{connection_id:str}", include_in_schema=False, cache=False)
async def connection_webhook_check(
    ctx: Ctx, kind: FromPath[str], connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> Response[str]:
    """A provider checking a connection's address before posting there (Meta's ``hub.challenge``):
    the kind's answer as text, 404 for kinds that make no such check."""
    entry = _kind(kind)
    webhook = ctx.webhook(kind)
    if not isinstance(webhook, SubscriptionCheck):
        raise ApiError(404, "not_found", f"{entry.provider} does not check this gateway's address.")
    answer = await webhook.confirm(GatewayHooks(ctx), connection_id, dict(request.query_params))
    return Response(answer, media_type="text/plain")


@post("/webhooks/{kind:str}", status_code=200, include_in_schema=False)
async def app_webhook(ctx: Ctx, kind: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
    """A provider's delivery to the deployment's app, routed to a connection by the kind."""
    return await _webhook(ctx, kind, None, request)


async def channel_or_404(ctx: GatewayContext, who: Caller, connection_id: str) -> connections_queries.Channel:
    async with ctx.tenant(who.tenant_id) as conn:
        found = await connections_queries.connection(conn, connection_id)
    if found is None:
        raise ApiError(404, "not_found", f"No channel {connection_id} in your inbox.", field="id")
    return found


@delete("/channels/{connection_id:str}", status_code=202)
async def disconnect(
    ctx: Ctx, who: Who, connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> ChannelAccepted:
    """Remove a channel: its conversations stay in your inbox, nothing more comes in or goes out."""
    may_connect(who)
    found = await channel_or_404(ctx, who, connection_id)
    if found.channel == "webchat":
        raise ApiError(
            400, "invalid_request", "The website chat belongs to every inbox and cannot be removed."
        )
    deleted = ev.new_event(
        ev.ConnectionDeleted,
        tenant_id=who.tenant_id,
        aggregate_id=connection_id,
        actor=f"user:{who.user_id}",
        data=ev.ConnectionDeletedData(reason="removed by a person"),
    )
    appended = await ctx.store.append(deleted)
    if ctx.keyring is not None:
        async with ctx.tenant(who.tenant_id) as conn:
            await CredentialStore(conn, ctx.keyring).delete(connection_id)
    if found.device_id is not None:  # its device is welcomed without it (WhatsApp stops, forgets its keys)
        await _welcome_again(ctx, found.device_id, appended.seq)
    await note(
        ctx, request, who.tenant_id, "channel.disconnected", actor=f"user:{who.user_id}",
        target=connection_id, detail={"kind": found.channel},
    )  # fmt: skip
    return ChannelAccepted(connection_id, found.channel, appended.event_id, appended.seq)


class ChannelPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    agent_mode: ev.AgentMode | None = None  # auto, draft or off in the channel's conversations
    takeover_minutes: int | None = None  # how long the agent steps back after a person answers
    dm_policy: ev.DmPolicy | None = None  # who the agent answers in direct messages


@patch("/channels/{connection_id:str}", status_code=202)
async def update_channel(
    ctx: Ctx,
    who: Who,
    connection_id: FromPath[str],
    data: JSONBody[ChannelPatch],
    request: Request[Any, Any, Any],
) -> ChannelAccepted:
    """How the agent behaves in the channel's conversations (each may still have its own mode),
    and who it answers in direct messages (``dm_policy``)."""
    may_connect(who)
    if data == ChannelPatch():
        raise ApiError(
            400, "invalid_request", "Send at least one of agent_mode, takeover_minutes, dm_policy."
        )
    if data.takeover_minutes is not None and not 1 <= data.takeover_minutes <= 1440:
        raise ApiError(
            400, "invalid_request", "takeover_minutes is 1-1440 (a day at most).", field="takeover_minutes"
        )
    found = await channel_or_404(ctx, who, connection_id)
    changed = ev.new_event(
        ev.ConnectionAgentSettingsChanged, tenant_id=who.tenant_id, aggregate_id=connection_id,
        actor=f"user:{who.user_id}",
        data=ev.ConnectionAgentSettingsChangedData(
            agent_mode=data.agent_mode, takeover_minutes=data.takeover_minutes, dm_policy=data.dm_policy
        ),
    )  # fmt: skip
    appended = await ctx.store.append(changed)
    await note(
        ctx, request, who.tenant_id, "channel.agent_settings_changed", actor=f"user:{who.user_id}",
        target=connection_id, detail=msgspec.to_builtins(changed.data),
    )  # fmt: skip
    return ChannelAccepted(connection_id, found.channel, appended.event_id, appended.seq)


class PairingCodeView(msgspec.Struct, frozen=True):
    connection_id: str
    kind: str  # "qr": scan ``image`` (it encodes ``code``); "pair_code": type ``code`` on the phone
    code: str
    expires_at: str
    image: str | None = None  # an SVG data URL of the QR code


@get("/channels/{connection_id:str}/qr", cache=False)
async def pairing_code(ctx: Ctx, who: Who, connection_id: FromPath[str]) -> PairingCodeView:
    """The code to link the channel with your phone while it is shown (WhatsApp): the
    same as the live ``channel.qr`` signals of ``/v1/events`` and ``/v1/ws``."""
    may_connect(who)
    await channel_or_404(ctx, who, connection_id)
    code = await pairing_codes.latest(ctx.store.nc, who.tenant_id, connection_id)
    if code is None or code.code is None or code.expires_at is None:
        raise ApiError(
            404, "not_found", "This channel shows no code now: it is paired, or not asking for one"
            " (its state on GET /v1/channels says why).",
        )  # fmt: skip
    image = qr_image(code.code) if code.kind == "qr" else None
    return PairingCodeView(connection_id, code.kind, code.code, code.expires_at.isoformat(), image)


def qr_image(code: str) -> str:
    """An SVG data URL of a QR code encoding ``code``."""
    return str(segno.make_qr(code, error="l").svg_data_uri(scale=6, border=2))


channels_router = Router(
    path="/v1",
    route_handlers=[
        connect,
        *install_routes,
        connection_webhook,
        connection_webhook_check,
        app_webhook,
        disconnect,
        update_channel,
        pairing_code,
    ],
    tags=["channels"],
    dependencies={"who": Provide(caller)},
)
