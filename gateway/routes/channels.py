"""Connecting and disconnecting channels.

``POST /v1/channels/telegram/connect`` takes a bot token, asks Telegram whose it is, seals
it in the vault and records the connection (``connection.created``, then ``connecting``);
the Telegram connector's session picks it up and reports ``connected``. The token never
appears in an event, a log line or an answer. ``DELETE /v1/channels/{id}`` records
``connection.deleted`` and forgets the credentials; its session stops.
"""

from __future__ import annotations

import msgspec
from litestar import Router, delete, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from adapters.channels import telegram
from adapters.vault.store import CredentialStore
from domain import events as ev
from domain import ids
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError


class TelegramConnect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bot_token: str


class ChannelAccepted(msgspec.Struct, frozen=True):
    connection_id: str
    display_name: str
    event_id: str
    seq: int


def _may_connect(who: Caller) -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", "Only the inbox's owner or an admin can connect or remove channels.")


@post("/channels/telegram/connect", status_code=202)
async def connect_telegram(ctx: Ctx, who: Who, data: JSONBody[TelegramConnect]) -> ChannelAccepted:
    """Connect a Telegram bot: paste the token @BotFather gave you."""
    _may_connect(who)
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    token = data.bot_token.strip()
    try:
        bot = await telegram.validate_token(token, api_base=ctx.telegram_api_base)
    except telegram.TokenRejected as exc:
        detail = f"{exc}. Copy the token again from @BotFather (it looks like 123456:ABC…)."
        raise ApiError(400, "token_rejected", detail, field="bot_token") from None
    except telegram.TelegramUnreachable as exc:
        raise ApiError(503, "provider_unavailable", str(exc), headers={"Retry-After": "10"}) from None
    connection_id = ids.new_id(ids.CONNECTION)
    async with ctx.tenant(who.tenant_id) as conn:
        await CredentialStore(conn, ctx.keyring).put(
            who.tenant_id, connection_id, telegram.KIND, {"token": token}
        )
    actor = f"user:{who.user_id}"
    created = ev.new_event(
        ev.ConnectionCreated, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=actor,
        data=ev.ConnectionCreatedData(channel=telegram.KIND, display_name=f"@{bot.username}"),
    )  # fmt: skip
    connecting = ev.new_event(
        ev.ConnectionStateChanged, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=actor,
        causation_id=created.id,
        data=ev.ConnectionStateChangedData(
            state="connecting", code="starting", message=f"Connecting to Telegram as @{bot.username}…"
        ),
    )  # fmt: skip
    appended = await ctx.store.append_many([created, connecting])
    return ChannelAccepted(connection_id, f"@{bot.username}", created.id, appended[-1].seq)


async def _channel(ctx: GatewayContext, who: Caller, connection_id: str) -> str:
    async with ctx.tenant(who.tenant_id) as conn:
        cur = await conn.execute(
            "SELECT channel FROM rm_connections.connections WHERE connection_id = %s AND deleted_at IS NULL",
            (connection_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"No channel {connection_id} in your inbox.", field="id")
    return str(row["channel"])


@delete("/channels/{connection_id:str}", status_code=202)
async def disconnect(ctx: Ctx, who: Who, connection_id: FromPath[str]) -> ChannelAccepted:
    """Remove a channel: its conversations stay in your inbox, nothing more comes in or goes out."""
    _may_connect(who)
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
    route_handlers=[connect_telegram, disconnect],
    tags=["channels"],
    dependencies={"who": Provide(caller)},
)
