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
to the kind's webhook, which checks its signature or secret before anything is stored.
OAuth installs ("Add to …") are ``gateway/routes/installs.py``. The errors of the channels
are answered by ``gateway/errors.py``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, post
from litestar.di import Provide
from litestar.params import FromPath

from adapters.channels.registry import KINDS, ChannelKind, ConnectEnv
from adapters.vault.store import CredentialStore
from domain import events as ev
from gateway.auth import Caller
from gateway.connections import WEBHOOKS_SQL, ChannelAccepted, GatewayHooks, may_connect, need_vault, record
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.routes.installs import OAUTH_STATES_SQL, install_routes
from projections import connections_queries

__all__ = ["OAUTH_STATES_SQL", "WEBHOOKS_SQL", "channels_router"]

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
    connected = await entry.connect(body, ConnectEnv(endpoints=ctx.endpoints, public_url=ctx.public_url))
    accepted = await record(
        ctx, who, kind, connected.display_name, connected.secret, entry.provider, team_id=connected.team_id
    )
    if connected.then is not None:
        await connected.then(accepted.connection_id)
    return accepted


async def _webhook(
    ctx: GatewayContext, kind: str, connection_id: str | None, request: Request[Any, Any, Any]
) -> Response[Any]:
    entry = _kind(kind)
    if entry.webhook is None:
        raise ApiError(404, "not_found", f"{entry.provider} does not post to this gateway.")
    body = await request.body()
    answer = await entry.webhook().receive(GatewayHooks(ctx), connection_id, dict(request.headers), body)
    return Response(answer)


@post("/webhooks/{kind:str}/{connection_id:str}", status_code=200, include_in_schema=False)
async def connection_webhook(
    ctx: Ctx, kind: FromPath[str], connection_id: FromPath[str], request: Request[Any, Any, Any]
) -> Response[Any]:
    """A provider's delivery to one connection (its secret or signature is checked first)."""
    return await _webhook(ctx, kind, connection_id, request)


@post("/webhooks/{kind:str}", status_code=200, include_in_schema=False)
async def app_webhook(ctx: Ctx, kind: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
    """A provider's delivery to the deployment's app, routed to a connection by the kind."""
    return await _webhook(ctx, kind, None, request)


async def _channel(ctx: GatewayContext, who: Caller, connection_id: str) -> str:
    async with ctx.tenant(who.tenant_id) as conn:
        channel = await connections_queries.channel_of(conn, connection_id)
    if channel is None:
        raise ApiError(404, "not_found", f"No channel {connection_id} in your inbox.", field="id")
    return channel


@delete("/channels/{connection_id:str}", status_code=202)
async def disconnect(ctx: Ctx, who: Who, connection_id: FromPath[str]) -> ChannelAccepted:
    """Remove a channel: its conversations stay in your inbox, nothing more comes in or goes out."""
    may_connect(who)
    channel = await _channel(ctx, who, connection_id)
    if channel == "webchat":
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
    return ChannelAccepted(connection_id, channel, appended.event_id, appended.seq)


channels_router = Router(
    path="/v1",
    route_handlers=[connect, *install_routes, connection_webhook, app_webhook, disconnect],
    tags=["channels"],
    dependencies={"who": Provide(caller)},
)
