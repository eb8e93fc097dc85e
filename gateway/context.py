"""What every request handler may use: the event store, the read-model pool, tokens.

Built once by the composition root and kept on ``app.state.ctx``; routes take it (and
the authenticated caller) through Litestar dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import msgspec
import psycopg
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from adapters.billing.stripe_billing import StripeBilling
from adapters.channels import registry as channel_registry
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.registry import Webhook
from adapters.media.store import MediaStore
from adapters.postgres import tenancy
from adapters.postgres.applied import AppliedSignal
from adapters.push.config import PushConfig
from adapters.vault.cipher import Keyring
from adapters.vault.sealing import Sealer
from domain.mail import Mailer
from domain.models import ModelSource
from domain.plans import Catalog
from gateway import sessions
from gateway.auth import ROLES, Caller, Role, Tokens
from gateway.brief_cache import BriefCache
from gateway.errors import ApiError
from gateway.feed import LiveEventStore
from gateway.limits import Limiter, Limits
from gateway.oidc import OidcVerifier, peek_issuer

EmailVerification = Literal["required", "optional"]
MIN_SEQ_WAIT = 5.0  # seconds a read with ?min_seq= may wait for the read models


@dataclass(frozen=True)
class SlackApp:
    """The deployment's Slack app, for "Add to Slack" installs (OAuth) and its Events API."""

    client_id: str
    client_secret: str
    signing_secret: str
    redirect_uri: str  # <public URL>/v1/channels/slack/oauth/callback


@dataclass(frozen=True)
class DiscordApp:
    """The deployment's Discord application, for "Add to server" installs: its bot joins the
    server, and each installed server is one connection (its session keeps to that server)."""

    client_id: str
    client_secret: str
    bot_token: str
    redirect_uri: str  # <public URL>/v1/channels/discord/oauth/callback
    signing_secret: str = ""  # nothing is posted to us: the bot's gateway session receives


@dataclass(frozen=True)
class GatewayContext:
    store: LiveEventStore  # the event log (domain.ports), and its NATS connection for live signals
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
    discord_app: DiscordApp | None = None  # None: Discord connects by pasted bot tokens only
    public_url: str | None = None  # where providers reach this gateway (webhooks), e.g. https://…
    # Rate limits and stream caps (gateway/limits.py); without a counter only the caps apply.
    limiter: Limiter = field(default_factory=lambda: Limiter(None, Limits()))
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For is believed
    # /metrics and /readyz: with a token, only for `Authorization: Bearer <it>`; without
    # one, only for clients on this machine (never for the public behind a proxy).
    ops_token: str | None = None
    # Stripe (adapters/billing), when MOLTBOT_STRIPE_* are set; None: billing is off.
    billing: StripeBilling | None = None
    catalog: Catalog | None = None  # the plans (plans.yaml): what each inbox may do (gateway/plan_limits.py)
    mailer: Mailer | None = None  # account mail (adapters/mail): SMTP, or the data folder's outbox
    # MOLTBOT_EMAIL_VERIFICATION: "required" keeps channels and billing shut until verified.
    email_verification: EmailVerification = "optional"
    background: set[asyncio.Task[None]] = field(default_factory=set)  # mail on its way
    # Personal fields: their data keys (None: events are stored as they are), and the
    # database's owner role, which only an erasure uses (gateway/routes/erasure.py).
    sealer: Sealer | None = None
    owner_pool: AsyncConnectionPool[Any] | None = None
    # Browser push (VAPID key, push services); None: push notifications are off here.
    push: PushConfig | None = None
    # Conversation briefs already written, by their latest message (gateway/routes/briefs.py).
    briefs: BriefCache = field(default_factory=BriefCache)
    applied: AppliedSignal | None = None  # read models' commits, for ?min_seq= waits (else polling)
    webhooks: dict[str, Webhook | None] = field(default_factory=dict)  # by kind, made on first delivery

    def webhook(self, kind: str) -> Webhook | None:
        """The kind's inbound webhook (None: the kind has none), one per gateway: a webhook may
        keep what it learns between deliveries (Teams: Microsoft's signing keys)."""
        if kind not in self.webhooks:
            make = channel_registry.entry(kind).webhook
            self.webhooks[kind] = make() if make is not None else None
        return self.webhooks[kind]

    def channel_app(self, kind: str) -> SlackApp | DiscordApp | None:
        """The deployment's own app of a channel kind (OAuth installs, an app-wide webhook)."""
        apps: dict[str, SlackApp | DiscordApp | None] = {"slack": self.slack_app, "discord": self.discord_app}
        return apps.get(kind)

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

    async def standing(self, who: Caller) -> Caller:
        """``who`` with its role in the members read model now: 401 once the session has
        ended (signed out, revoked, password reset) or the membership is gone, so a removed
        member or a revoked device is refused at once, not when its access token expires."""
        try:
            async with self.tenant(who.tenant_id) as conn:
                now = await sessions.standing(conn, who)
        except psycopg.errors.UndefinedTable:  # the projections have never run here yet
            async with self.pool.connection() as conn:
                now = await sessions.standing(conn, who, members=False)
        role = now.role
        if role is None and now.members_seq < who.membership_seq:
            role = who.role  # a sign-up the read model has not read yet: its token's role stands
        if not now.going:
            raise ApiError(
                401, "session_ended", "This session has ended (signed out or revoked): log in again."
            )
        if role is None or role not in ROLES:
            raise ApiError(
                401, "not_a_member", "You are no longer a member of this inbox: log in again to reach yours."
            )
        return msgspec.structs.replace(who, role=cast(Role, role))

    def tenant(self, tenant_id: str) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A transaction that row-level security confines to ``tenant_id``."""
        return tenancy.tenant_transaction(self.pool, tenant_id)

    async def wait_for(self, min_seq: int | None, read_models: tuple[str, ...], tenant_id: str) -> None:
        """Return once every read model in ``read_models`` has applied ``min_seq``.

        A sequence past the end of the log is refused at once (it could only time out);
        the wait holds no pooled connection between its looks, and a tenant may have only
        a few such waits at a time."""
        if not min_seq:
            return
        if await tenancy.applied_seq(self.pool, read_models) >= min_seq:
            return
        last_seq = await self.store.last_seq()
        if min_seq > last_seq:
            raise ApiError(
                400,
                "invalid_request",
                f"min_seq {min_seq} is past the end of the event log (last seq {last_seq}):"
                " pass the seq an earlier answer gave you.",
                field="min_seq",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MIN_SEQ_WAIT
        held = [("min_seq_waits_per_tenant", tenant_id)]
        busy = "Too many reads are waiting for ?min_seq= at once; retry shortly."
        async with self.limiter.hold(held, busy):
            left = max(0.0, deadline - loop.time())
            if not await tenancy.wait_for_seq(
                self.pool, min_seq, read_models, within=left, applied=self.applied
            ):
                raise ApiError(
                    503,
                    "not_caught_up",
                    f"The read models have not reached seq {min_seq} yet; retry shortly.",
                    field="min_seq",
                    headers={"Retry-After": "1"},
                )


def context(state: State) -> GatewayContext:
    ctx: GatewayContext = state.ctx
    return ctx


# Where a token may ride in the URL: an EventSource and an <img> cannot send headers.
# Anywhere else a URL token would end up in logs, history and Referer headers.
QUERY_TOKEN_PATHS = ("/v1/events", "/v1/media/")


async def caller(request: Request[Any, Any, Any]) -> Caller:
    """The authenticated caller, from ``Authorization: Bearer <token>`` (or ``?access_token=``
    on the event stream and media only), held to the tenant's API rate limit."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not token and request.query_params.get("access_token"):
        path = request.url.path
        if not (path == QUERY_TOKEN_PATHS[0] or path.startswith(QUERY_TOKEN_PATHS[1])):
            raise ApiError(
                401,
                "unauthorized",
                "?access_token= is accepted on /v1/events and /v1/media only:"
                " send Authorization: Bearer <token>.",
            )
        token = request.query_params["access_token"]
    if not token:
        raise ApiError(401, "unauthorized", "Send an access token: Authorization: Bearer <token>.")
    ctx = context(request.app.state)
    who = await ctx.verify_access(token)
    await ctx.limiter.check("api_per_tenant", who.tenant_id, "Your inbox is making too many API requests.")
    return await ctx.standing(who)


# Route parameter types: the request's context and its authenticated caller.
Ctx = NamedDependency[GatewayContext]
Who = NamedDependency[Caller]
