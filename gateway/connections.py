"""Recording a channel connection, and finding the connection a provider posts to: what
the channel routes and the install flow share. ``gateway.webhooks`` maps a connection to
its tenant for unauthenticated provider requests, and to its workspace (``team_id``; and
app, ``app_id``, for OAuth installs) where the provider has them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from adapters.channels.errors import NotConnected
from adapters.channels.webhooks import HookTarget
from adapters.vault.store import CredentialStore
from domain import events as ev
from domain import ids
from gateway.auth import Caller
from gateway.errors import ApiError

if TYPE_CHECKING:
    from adapters.channels.endpoints import ProviderEndpoints
    from adapters.media.store import MediaStore
    from domain.ports import EventStore
    from gateway.context import GatewayContext

WEBHOOKS_SQL = """
CREATE TABLE IF NOT EXISTS gateway.webhooks (
    connection_id text PRIMARY KEY,
    tenant_id     text NOT NULL,
    kind          text NOT NULL
);
-- The workspace a connection receives for, and the app of an OAuth install.
ALTER TABLE gateway.webhooks ADD COLUMN IF NOT EXISTS team_id text, ADD COLUMN IF NOT EXISTS app_id text;
CREATE INDEX IF NOT EXISTS webhooks_app_team ON gateway.webhooks (app_id, team_id) WHERE app_id IS NOT NULL;
GRANT SELECT, INSERT ON gateway.webhooks TO moltbot_gateway;
GRANT UPDATE (team_id) ON gateway.webhooks TO moltbot_gateway;
"""


class ChannelAccepted(msgspec.Struct, frozen=True, omit_defaults=True):
    connection_id: str
    display_name: str
    event_id: str
    seq: int
    # Where a provider configured by hand (Meta's dashboard, the Azure Bot's messaging
    # endpoint) posts, and the verify token it checks that address with where it does; only
    # for such kinds (WhatsApp Business, Teams), absent otherwise.
    webhook_url: str | None = None
    verify_token: str | None = None


def may_connect(who: Caller) -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", "Only the inbox's owner or an admin can connect or remove channels.")


def need_vault(ctx: GatewayContext) -> None:
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")


async def record(
    ctx: GatewayContext,
    who: Caller,
    kind: str,
    display_name: str,
    secret: dict[str, str],
    provider: str,
    *,
    team_id: str | None = None,
    app_id: str | None = None,
    device_id: str | None = None,
) -> ChannelAccepted:
    """Seal the credentials, then record the connection (created, connecting), with its
    workspace (``team_id``), when installed by OAuth its app, and the device it runs on
    (``device_id``: the Personal Bridge) when not in the cloud. The callers have checked
    the plan's room for one more (``gateway.plan_limits.ensure_room``) before asking the provider."""
    assert ctx.keyring is not None
    connection_id = ids.new_id(ids.CONNECTION)
    async with ctx.tenant(who.tenant_id) as conn:
        await CredentialStore(conn, ctx.keyring).put(who.tenant_id, connection_id, kind, secret)
        await conn.execute(
            "INSERT INTO gateway.webhooks (connection_id, tenant_id, kind, team_id, app_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            (connection_id, who.tenant_id, kind, team_id, app_id),
        )
    actor = f"user:{who.user_id}"
    created = ev.new_event(
        ev.ConnectionCreated, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=actor,
        data=ev.ConnectionCreatedData(
            channel=kind, display_name=display_name, mode="cloud" if device_id is None else "bridge",
            device_id=device_id,
        ),
    )  # fmt: skip
    connecting = ev.new_event(
        ev.ConnectionStateChanged, tenant_id=who.tenant_id, aggregate_id=connection_id, actor=actor,
        causation_id=created.id,
        data=ev.ConnectionStateChangedData(
            state="connecting", code="starting", message=f"Connecting to {provider} as {display_name}…"
        ),
    )  # fmt: skip
    appended = await ctx.store.append_many([created, connecting])
    return ChannelAccepted(connection_id, display_name, created.id, appended[-1].seq)


async def opened(ctx: GatewayContext, tenant_id: str, connection_id: str) -> dict[str, str]:
    """A connection's credentials, or {} once it is removed (they are forgotten)."""
    if ctx.keyring is None:
        return {}
    async with ctx.tenant(tenant_id) as conn:
        return await CredentialStore(conn, ctx.keyring).get(tenant_id, connection_id) or {}


class GatewayHooks:
    """What a kind's webhook gets from the gateway (``adapters.channels.webhooks.Hooks``)."""

    def __init__(self, ctx: GatewayContext) -> None:
        self._ctx = ctx
        self.store: EventStore = ctx.store
        self.media: MediaStore | None = ctx.media
        self.endpoints: ProviderEndpoints = ctx.endpoints

    def app_signing_secret(self, kind: str) -> str | None:
        app = self._ctx.channel_app(kind)
        return app.signing_secret if app is not None else None

    async def target(self, kind: str, connection_id: str) -> HookTarget:
        async with self._ctx.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tenant_id, team_id, app_id FROM gateway.webhooks"
                " WHERE connection_id = %s AND kind = %s",
                (connection_id, kind),
            )
            row = await cur.fetchone()
        if row is None or self._ctx.keyring is None:
            raise NotConnected(f"No {kind} connection here.")
        tenant_id = str(row["tenant_id"])
        return HookTarget(
            connection_id=connection_id, tenant_id=tenant_id,
            secret=await opened(self._ctx, tenant_id, connection_id),
            team_id=row["team_id"], app_id=row["app_id"],
        )  # fmt: skip

    async def targets_in(self, kind: str, app_id: str, team_id: str) -> list[HookTarget]:
        async with self._ctx.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT connection_id, tenant_id FROM gateway.webhooks WHERE kind = %s AND app_id = %s"
                " AND team_id = %s ORDER BY connection_id DESC",  # ids are ULIDs: newest first
                (kind, app_id, team_id),
            )
            rows = await cur.fetchall()
        targets = []
        for row in rows:
            secret = await opened(self._ctx, row["tenant_id"], row["connection_id"])
            if secret:  # a removed connection's credentials are forgotten
                target = HookTarget(
                    connection_id=row["connection_id"], tenant_id=row["tenant_id"], secret=secret,
                    team_id=team_id, app_id=app_id,
                )  # fmt: skip
                targets.append(target)
        return targets

    async def remember_workspace(self, connection_id: str, team_id: str) -> None:
        async with self._ctx.pool.connection() as conn:
            await conn.execute(
                "UPDATE gateway.webhooks SET team_id = %s WHERE connection_id = %s AND team_id IS NULL",
                (team_id, connection_id),
            )
