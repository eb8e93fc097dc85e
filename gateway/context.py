"""What every request handler may use: the event store, the read-model pool, tokens.

Built once by the composition root and kept on ``app.state.ctx``; routes take it (and
the authenticated caller) through Litestar dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from adapters.channels.endpoints import ProviderEndpoints
from adapters.media.store import MediaStore
from adapters.nats.event_store import EventStore
from adapters.vault.cipher import Keyring
from domain.models import ModelSource
from gateway.auth import Caller, Tokens
from gateway.errors import ApiError
from gateway.limits import Limiter, Limits
from gateway.oidc import OidcVerifier, peek_issuer

MIN_SEQ_WAIT = 5.0  # seconds a read with ?min_seq= may wait for the read models


@dataclass(frozen=True)
class SlackApp:
    """The deployment's Slack app, for "Add to Slack" installs (OAuth) and its Events API."""

    client_id: str
    client_secret: str
    signing_secret: str
    redirect_uri: str  # <public URL>/v1/channels/slack/oauth/callback


@dataclass(frozen=True)
class GatewayContext:
    store: EventStore
    pool: AsyncConnectionPool[Any]
    tokens: Tokens
    oidc: OidcVerifier | None = None  # external identity provider, when configured
    # The agent's models for dry runs (POST /v1/agents/{id}/test); None: no preview.
    models: ModelSource | None = None
    # The vault's keys, to seal what tenants entrust (their own Anthropic key, bot tokens).
    keyring: Keyring | None = None
    endpoints: ProviderEndpoints = field(default_factory=ProviderEndpoints)  # where providers are reached
    media: MediaStore | None = None  # where connectors keep attachments
    slack_app: SlackApp | None = None  # None: Slack connects by pasted tokens only
    public_url: str | None = None  # where providers reach this gateway (webhooks), e.g. https://…
    # Rate limits and stream caps (gateway/limits.py); without a counter only the caps apply.
    limiter: Limiter = field(default_factory=lambda: Limiter(None, Limits()))
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For is believed

    async def verify_access(self, token: str) -> Caller:
        """The caller of an access token: the gateway's own, or the OIDC provider's when configured.

        A token whose (unverified) issuer is not ours goes to the OIDC verifier; anything else,
        including what is not a JWT at all, gets the gateway's own checks and errors.
        """
        if self.oidc is not None:
            issuer = peek_issuer(token)
            if issuer is not None and issuer != Tokens.ISSUER:
                return await self.oidc.verify(token)
        return self.tokens.verify(token)

    @contextlib.asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A transaction that row-level security confines to ``tenant_id``."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT set_config('moltbot.tenant_id', %s, true)", (tenant_id,))
            yield conn

    async def wait_for(self, min_seq: int | None, read_models: tuple[str, ...]) -> None:
        """Return once every read model in ``read_models`` has applied ``min_seq``."""
        if not min_seq:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MIN_SEQ_WAIT
        async with self.pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    "SELECT coalesce(min(last_seq), 0) AS seq FROM moltbot.projection_checkpoints"
                    " WHERE slot = 'live' AND projection = ANY(%s)",
                    (list(read_models),),
                )
                row = await cur.fetchone()
                if row is not None and row["seq"] >= min_seq:
                    return
                if loop.time() > deadline:
                    raise ApiError(
                        503,
                        "not_caught_up",
                        f"The read models have not reached seq {min_seq} yet; retry shortly.",
                        field="min_seq",
                        headers={"Retry-After": "1"},
                    )
                await asyncio.sleep(0.02)


def context(state: State) -> GatewayContext:
    ctx: GatewayContext = state.ctx
    return ctx


async def caller(request: Request[Any, Any, Any]) -> Caller:
    """The authenticated caller, from ``Authorization: Bearer <token>`` or ``?access_token=``."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    token = token or request.query_params.get("access_token", "")
    if not token:
        raise ApiError(401, "unauthorized", "Send an access token: Authorization: Bearer <token>.")
    return await context(request.app.state).verify_access(token)


# Route parameter types: the request's context and its authenticated caller.
Ctx = NamedDependency[GatewayContext]
Who = NamedDependency[Caller]
