"""Process roles: the long-running parts of the product, each runnable on its own.

Provider SDKs (aiogram, slack-sdk, hikari) and the gateway's web stack are imported by
the roles that use them, not here: they take seconds to import, and a projection
worker, agent or outbox restarted after a crash is back that much sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, cast

import psycopg
import structlog
import uvicorn
from nats.aio.client import Client
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from adapters.agent import byok
from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings, Orchestrator
from adapters.channels import registry as channel_registry
from adapters.channels.directory import ConnectionDirectory
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.leases import BUCKET as LEASE_BUCKET
from adapters.channels.relayed import RelayedConnector
from adapters.channels.runtime import ConnectorRuntime, consumer_name
from adapters.channels.sessions import SessionManager
from adapters.media.store import MediaStore
from adapters.nats import permissions
from adapters.nats.connection import NatsTarget, connection
from adapters.nats.event_store import EventStore
from adapters.nats.jetstream import JetStreamApi
from adapters.nats.outbox import Outbox
from adapters.nats.pull import raise_if_cancelled
from adapters.nats.streams import StreamsFile
from adapters.postgres import audit, tenancy
from adapters.postgres.applied import AppliedSignal
from adapters.push import subscriptions as push_subscriptions
from adapters.push.config import PushConfig
from adapters.vault.cipher import Keyring
from adapters.vault.sealing import Sealer, sealing
from adapters.vault.store import ensure_confined_access
from domain.codec import EventCodec
from domain.connectors import Connector, typing_filter
from domain.mail import Mailer
from domain.models import ModelSource
from domain.plans import Catalog
from projections.agent_reads import AgentReads
from projections.base import Projection
from projections.connection_reads import ConnectionReadModel
from projections.engine import ensure_core
from projections.partition_worker import PartitionWorker
from projections.partitions import Partitioning
from projections.worker import DEFAULT_BATCH, LiveWorker, ProjectionWorker

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from adapters.billing.config import StripeConfig
    from gateway.context import DiscordApp, GatewayContext, SlackApp
    from gateway.limits import Limits
    from gateway.oidc import OidcConfig
    from moltbot.settings import Settings

log = structlog.get_logger()


class GatewayStartError(Exception):
    """The gateway could not start serving (usually: the port is taken)."""


async def run_projections(
    nats: NatsTarget,
    database_url: str,
    spec: StreamsFile,
    projections: Sequence[Projection],
    *,
    batch_size: int = DEFAULT_BATCH,
    partitioning: Partitioning | None = None,
    partitions: int = 0,
    partition: int = 0,
    keyring: Keyring | None = None,
) -> None:
    """Run one live worker per read model until cancelled; with ``keyring`` (the vault's),
    sealed personal fields are opened as they are folded (docs/privacy.md).

    With ``partitions`` N (and ``partitioning``, streams.yaml's ``partitioned_projections``)
    this process is partition worker ``partition`` of N for every read model: it folds only
    the tenants of its buckets. The N processes together replace the single workers.
    """
    async with (
        connection(nats, name="moltbot-projections", role=permissions.PROJECTIONS) as nc,
        personal_data(nc, database_url, keyring) as sealer,
        asyncio.TaskGroup() as tasks,
    ):
        new_worker = _worker_kind(spec, partitioning, partitions, partition)
        jetstream = JetStreamApi(nc)
        store = EventStore(nc, codec=EventCodec(), sealer=sealer)
        for projection in projections:
            worker = new_worker(
                jetstream=jetstream,
                store=store,
                database_url=database_url,
                projection=projection,
                batch_size=batch_size,
            )
            tasks.create_task(worker.run(), name=worker.consumer)
        log.info("projections_running", read_models=[p.name for p in projections])


@contextlib.asynccontextmanager
async def personal_data(
    nc: Client, database_url: str, keyring: Keyring | None
) -> AsyncIterator[Sealer | None]:
    """The process's sealer of personal fields (adapters/vault/sealing.py), given the vault's
    keys; without them, events are appended and read as they are."""
    if keyring is None:
        yield None
        return
    async with sealing(nc, database_url, keyring) as sealer:
        yield sealer


class _NewWorker(Protocol):
    """Makes the live worker of one read model; the arguments every kind of worker takes."""

    def __call__(
        self,
        *,
        jetstream: JetStreamApi,
        store: EventStore,
        database_url: str,
        projection: Projection,
        batch_size: int,
    ) -> LiveWorker: ...


def _worker_kind(
    spec: StreamsFile, partitioning: Partitioning | None, partitions: int, partition: int
) -> _NewWorker:
    """The single worker of each read model, or with ``partitions`` this process's partition worker."""
    if not partitions:
        return functools.partial(ProjectionWorker, consumer_template=spec.consumer_templates["projection"])
    if partitioning is None:
        raise ValueError("partitioned workers need streams.yaml's partitioned_projections")
    return functools.partial(
        PartitionWorker, partitioning=partitioning, partitions=partitions, partition=partition
    )


async def run_outbox(nats: NatsTarget) -> None:
    """Turn send requests into channel commands until cancelled."""
    async with connection(nats, name="moltbot-outbox", role=permissions.OUTBOX) as nc:
        await Outbox(nc, store=EventStore(nc)).run()


# The kinds this cloud runs connectors for, from the channel registry (light: no provider SDK
# loads here): every kind, those that run on a device too (their connector relays sends).
CONNECTOR_KINDS = tuple(channel_registry.KINDS)
SWEEP_EVERY = 30.0  # seconds between looks for the session data of removed connections


@dataclass(frozen=True)
class ChannelSettings:
    """What connectors of provider-backed channels need besides NATS."""

    database_url: str
    keyring: Keyring
    endpoints: ProviderEndpoints = field(default_factory=ProviderEndpoints)
    media: MediaStore | None = None  # where attachments are kept; None: they stay at the provider
    # A kind's protocol library instead of its default (kind -> the library's client factory).
    clients: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


async def run_connectors(
    nats: NatsTarget,
    spec: StreamsFile,
    kinds: Sequence[str] = CONNECTOR_KINDS,
    *,
    channels: ChannelSettings | None = None,
) -> None:
    """Run each connector kind until cancelled: its commands, and for provider-backed kinds
    one live session per connection (held by one replica at a time). Each kind has its own
    NATS connection, signed in as that kind's connector."""
    unknown = [kind for kind in kinds if kind not in CONNECTOR_KINDS]
    if unknown:
        raise LookupError(f"no connector {unknown[0]!r}; known: {', '.join(CONNECTOR_KINDS)}")
    async with contextlib.AsyncExitStack() as stack:
        directory: ConnectionDirectory | None = None
        work: list[Coroutine[Any, Any, None]] = []
        for kind in kinds:
            role = permissions.connector_role(kind)
            nc = await stack.enter_async_context(connection(nats, name=f"moltbot-{role}", role=role))
            sealer = (
                await stack.enter_async_context(personal_data(nc, channels.database_url, channels.keyring))
                if channels is not None
                else None
            )
            store = EventStore(nc, sealer=sealer)
            entry = channel_registry.entry(kind)
            if entry.session is not None:
                if channels is None:
                    raise LookupError(f"the {kind} connector needs the database and the vault keys")
                if directory is None:
                    pool = tenancy.pool(channels.database_url, max_size=4, confined=False)
                    directory = ConnectionDirectory(pool, channels.keyring, ConnectionReadModel(pool))
                    await directory.open()
                    async with pool.connection() as conn:  # credential reads are counted there
                        await ensure_core(conn)  # type: ignore[arg-type]
                        await audit.ensure_schema(conn)  # type: ignore[arg-type]
                    stack.push_async_callback(directory.close)
                connector, sessions = await _provider(entry, nc, store, channels, directory, stack)
                work.append(sessions.run())
            elif entry.connector is None:
                connector = RelayedConnector(kind, entry.capabilities, nc)
            else:
                connector = entry.connector(_no_credentials, ProviderEndpoints())
            config = spec.consumer(consumer_name(kind)).config
            backoff = tuple(ns / 1e9 for ns in config.get("backoff", ()))
            runtime = ConnectorRuntime(
                nc, connector, store=store, max_deliver=int(config.get("max_deliver", -1)), backoff=backoff
            )
            work.append(runtime.run())
        # A stop asked for while the connections, subscriptions and pools above were made may
        # have been swallowed by one of them (a NATS flush): honour it before the work starts.
        raise_if_cancelled()
        # Entered last, so it ends (every task stopped) before the resources above close.
        async with asyncio.TaskGroup() as tasks:
            for job in work:
                tasks.create_task(job)


async def _no_credentials(connection_id: str) -> dict[str, Any]:
    return {}  # a kind without a live session (the website chat) keeps no credentials


async def _provider(
    entry: channel_registry.ChannelKind,
    nc: Client,
    store: EventStore,
    channels: ChannelSettings,
    directory: ConnectionDirectory,
    stack: contextlib.AsyncExitStack,
) -> tuple[Connector, SessionManager]:
    """A provider-backed kind's connector (sends) and session manager (live connections)."""
    kind, start_session = entry.kind, entry.session
    assert start_session is not None
    if entry.connector is None:  # the session answers the sends it holds (relayed to it)
        connector: Connector = RelayedConnector(kind, entry.capabilities, nc, holder=entry.provider)
        forget: Callable[[str], None] = lambda connection_id: None  # noqa: E731 - nothing cached
    else:
        made = cast(
            "channel_registry.ProviderConnector", entry.connector(directory.credentials, channels.endpoints)
        )
        stack.push_async_callback(made.aclose)
        connector, forget = made, made.forget

    def env(tenant_id: str, connection_id: str, secret: dict[str, str]) -> channel_registry.SessionEnv:
        return channel_registry.SessionEnv(
            store=store, tenant_id=tenant_id, connection_id=connection_id, secret=secret,
            endpoints=channels.endpoints, media=channels.media, nc=nc, database_url=channels.database_url,
            pool=directory.pool, new_client=channels.clients.get(kind),
        )  # fmt: skip

    async def session(connection_id: str) -> None:
        tenant_id, secret = await directory.owner_and_credentials(connection_id)
        if tenant_id is None or not secret:
            log.warning("connection_without_credentials", kind=kind, connection_id=connection_id)
            return
        forget(connection_id)  # a reconnect may have brought new credentials
        await start_session(env(tenant_id, connection_id, secret))

    forget_removed, swept_at = entry.forget_removed, 0.0

    async def live() -> set[str]:
        nonlocal swept_at
        if forget_removed is not None and time.monotonic() - swept_at > SWEEP_EVERY:
            swept_at = time.monotonic()
            await forget_removed(env("", "", {}))
        return await directory.live(kind)

    typing = getattr(connector, "typing", None)
    if entry.capabilities.typing and typing is not None:
        show = typing

        async def show_typing(msg: Msg) -> None:
            # subject: live.<tenant>.typing.<kind>.<connection>; only the lease holder's
            # replica has the session, but any replica may show it (it is idempotent).
            connection_id = msg.subject.rsplit(".", 1)[-1]
            with contextlib.suppress(Exception):
                await show(connection_id, json.loads(await store.open(msg.data))["to"])

        await nc.subscribe(typing_filter(kind), queue=f"typing-{kind}", cb=show_typing)
    kv = await nc.jetstream().key_value(LEASE_BUCKET)
    return connector, SessionManager(kv, kind, channels.holder, live, session)


def agent_settings(settings: Settings) -> AgentSettings:
    """The agent's settings from the deployment's (MOLTBOT_AGENT_*, MOLTBOT_LIMIT_*)."""
    return AgentSettings(
        debounce=settings.agent_debounce,
        agent_runs_per_conversation=settings.limits.agent_runs_per_conversation,
        injection_model_check=settings.agent_injection_check,
    )


async def run_agent(
    nats: NatsTarget,
    database_url: str,
    models: ModelChoice,
    *,
    keyring: Keyring | None = None,
    settings: AgentSettings | None = None,
    catalog: Catalog | None = None,
) -> None:
    """Answer messages where the tenants' rules allow (and their plans' AI allowance), until
    cancelled. With ``keyring``, a tenant's own Anthropic key (BYOK) is preferred to the
    deployment's. ``catalog``: the plans (None: the bundled plans.yaml)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await ensure_core(conn)  # type: ignore[arg-type]  # the confined role the reads use
        await ensure_confined_access(conn)  # type: ignore[arg-type]
    reads = AgentReads(database_url)
    await reads.open()
    source: ModelSource = models
    if keyring is not None:
        vault_keys = keyring

        async def own_key(tenant_id: str) -> str | None:
            return await reads.own_anthropic_key(tenant_id, vault_keys)

        source = models.with_tenant_keys(own_key)
    try:
        async with (
            connection(nats, name="moltbot-agent", role=permissions.AGENT) as nc,
            personal_data(nc, database_url, keyring) as sealer,
        ):
            orchestrator = Orchestrator(
                nc, reads, source, store=EventStore(nc, sealer=sealer), settings=settings or AgentSettings(),
                capabilities_for=channel_registry.capabilities_for,
                agent_mode_for=channel_registry.agent_mode_for,
                catalog=catalog or _bundled_catalog(),
            )  # fmt: skip
            await orchestrator.run()
    finally:
        await reads.close()


async def run_notifier(
    nats: NatsTarget,
    database_url: str,
    config: PushConfig,
    *,
    keyring: Keyring,
    catalog: Catalog | None = None,
    mailer: Mailer | None = None,
    inbox_url: str = "http://127.0.0.1:8000",
) -> None:
    """Send browser push notifications for what the log says needs people (adapters/push/
    notifier.py), until cancelled. ``keyring``: the vault's keys (the devices' subscriptions
    and personal fields are sealed with them); ``catalog``: the plans (None: plans.yaml);
    ``mailer``: the morning digest by e-mail (None: by push only), linking to ``inbox_url``."""
    from adapters.push import notices
    from adapters.push.notifier import Notifier
    from adapters.push.webpush import WebPushSender
    from projections.notifier_reads import NotifierReads

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await ensure_core(conn)  # type: ignore[arg-type]  # the confined role the reads use
        await push_subscriptions.ensure_schema(conn)  # type: ignore[arg-type]
        await notices.ensure_schema(conn)  # type: ignore[arg-type]
    pool = tenancy.pool(database_url, max_size=4)
    await pool.open()
    applied = AppliedSignal(database_url)
    await applied.start()
    sender = WebPushSender(config)
    try:
        async with (
            connection(nats, name="moltbot-notifier", role=permissions.NOTIFIER) as nc,
            personal_data(nc, database_url, keyring) as sealer,
        ):
            notifier = Notifier(
                nc, NotifierReads(pool, auto_kinds=channel_registry.answering_kinds(), applied=applied), pool,
                keyring, sender,
                store=EventStore(nc, sealer=sealer), catalog=catalog or _bundled_catalog(), mailer=mailer,
                inbox_url=inbox_url,
            )  # fmt: skip
            await notifier.run()
    finally:
        await sender.aclose()
        await applied.close()
        await pool.close()


async def run_billing(
    database_url: str, config: StripeConfig, *, catalog: Catalog | None = None, interval: float = 300.0
) -> None:
    """Report the AI overage of paid plans to Stripe's meter (adapters/billing/metering.py),
    every ``interval`` seconds until cancelled. ``catalog``: the plans (None: plans.yaml)."""
    from adapters.billing.metering import OverageReporter, ensure_tables
    from adapters.billing.stripe_billing import StripeBilling

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await ensure_core(conn)  # type: ignore[arg-type]  # the confined role billing.customers grants to
        await ensure_tables(conn)  # type: ignore[arg-type]
    pool = tenancy.pool(database_url, max_size=2, confined=False)  # the owner: every inbox's usage
    await pool.open()
    stripe = StripeBilling(config)
    try:
        reporter = OverageReporter(pool, stripe, catalog or _bundled_catalog(), interval=interval)
        await reporter.run()
    finally:
        await stripe.aclose()
        await pool.close()


def _with_own_keys(
    models: ModelChoice | None, pool: AsyncConnectionPool[Any], keyring: Keyring | None
) -> ModelSource | None:
    if models is None or keyring is None:
        return models
    vault_keys = keyring

    async def own_key(tenant_id: str) -> str | None:
        async with tenancy.tenant_transaction(pool, tenant_id) as conn:
            return await byok.read_key(conn, vault_keys, tenant_id)

    return models.with_tenant_keys(own_key)


class GatewayOptions(TypedDict, total=False):
    """What the gateway may be given besides its servers and signing key (Settings.gateway_options
    reads them from the environment); each one left out is off or its default."""

    oidc: OidcConfig | None  # an external identity provider whose access tokens are accepted
    models: ModelChoice | None
    keyring: Keyring | None
    endpoints: ProviderEndpoints | None  # None: the providers' public APIs
    media: MediaStore | None
    slack_app: SlackApp | None
    discord_app: DiscordApp | None
    public_url: str | None
    limits: Limits | None  # None: gateway/limits.py's defaults
    trusted_proxies: tuple[str, ...]
    ops_token: str | None
    billing: StripeConfig | None  # Stripe (MOLTBOT_STRIPE_*); None: billing is off
    catalog: Catalog  # the plans (plans.yaml); left out: the bundled one
    mailer: Mailer | None  # account mail; None: mails are logged as not sent
    email_verification: Literal["required", "optional"]
    push: PushConfig | None  # browser push (VAPID key, push services); None: off


@contextlib.asynccontextmanager
async def gateway_context(
    nats: NatsTarget, database_url: str, key_file: Path, **options: Unpack[GatewayOptions]
) -> AsyncIterator[GatewayContext]:
    """The gateway's connections: NATS, a PostgreSQL pool, the token signing key, and the
    verifier of an external identity provider's tokens when ``oidc`` is given."""
    from adapters.billing.stripe_billing import StripeBilling
    from adapters.postgres.rate_counter import RateCounter
    from gateway.auth import Tokens
    from gateway.context import GatewayContext
    from gateway.limits import Limiter
    from gateway.limits import Limits as DefaultLimits
    from gateway.oidc import IdentityLinks, OidcVerifier
    from gateway.schema import ensure_gateway_tables

    tokens = Tokens.from_pem_file(key_file)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await ensure_gateway_tables(conn)  # type: ignore[arg-type]

    pool = tenancy.pool(database_url, max_size=10)  # as the confined role (row-level security)
    await pool.open()
    owner_pool = tenancy.pool(database_url, max_size=2, confined=False)  # erasures only
    await owner_pool.open()
    applied = AppliedSignal(database_url)
    await applied.start()
    oidc, keyring = options.get("oidc"), options.get("keyring")
    verifier = OidcVerifier(oidc, links=IdentityLinks(pool)) if oidc is not None else None
    stripe_config = options.get("billing")
    billing = StripeBilling(stripe_config) if stripe_config is not None else None
    try:
        async with (
            connection(nats, name="moltbot-gateway", role=permissions.GATEWAY) as nc,
            personal_data(nc, database_url, keyring) as sealer,
        ):
            ctx = GatewayContext(
                store=EventStore(nc, sealer=sealer),
                pool=pool,
                tokens=tokens,
                oidc=verifier,
                models=_with_own_keys(options.get("models"), pool, keyring),
                keyring=keyring,
                endpoints=options.get("endpoints") or ProviderEndpoints(),
                media=options.get("media"),
                slack_app=options.get("slack_app"),
                discord_app=options.get("discord_app"),
                public_url=options.get("public_url"),
                limiter=Limiter(RateCounter(pool), options.get("limits") or DefaultLimits()),
                trusted_proxies=options.get("trusted_proxies", ()),
                ops_token=options.get("ops_token"),
                billing=billing,
                catalog=options.get("catalog") or _bundled_catalog(),
                mailer=options.get("mailer"),
                email_verification=options.get("email_verification", "optional"),
                sealer=sealer,
                owner_pool=owner_pool,
                push=options.get("push"),
                applied=applied,
            )
            daily = asyncio.create_task(_retention_daily(ctx)) if sealer is not None else None
            scheduler = asyncio.create_task(_release_scheduled(ctx))
            try:
                yield ctx
            finally:  # mail on its way gets a moment to leave
                for loop in (daily, scheduler):
                    if loop is not None:
                        loop.cancel()
                        await asyncio.gather(loop, return_exceptions=True)
                if ctx.background:
                    await asyncio.wait(ctx.background, timeout=5)
    finally:
        if verifier is not None:
            await verifier.aclose()
        if billing is not None:
            await billing.aclose()
        await applied.close()
        await owner_pool.close()
        await pool.close()


RETENTION_FIRST, RETENTION_EVERY = 60.0, 86400.0  # seconds after start, then between runs


async def _retention_daily(ctx: GatewayContext) -> None:
    """Apply the plans' history windows once a day (adapters/vault/retention.py); with several
    gateways, the one holding the lock does it, and a second run the same day finds nothing."""
    from datetime import UTC, datetime

    from adapters.vault.retention import apply_retention

    await asyncio.sleep(RETENTION_FIRST)
    while True:
        assert ctx.owner_pool is not None and ctx.sealer is not None and ctx.catalog is not None
        try:
            async with ctx.owner_pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtext('moltbot.retention')) AS mine"
                )
                row = await cur.fetchone()
                if row is not None and row["mine"]:
                    await apply_retention(
                        ctx.owner_pool,
                        ctx.store,
                        ctx.sealer,
                        ctx.store.nc,
                        ctx.catalog,
                        datetime.now(UTC).date(),
                        ctx.media,
                    )
        except Exception as exc:  # the next day tries again; the log says why this one did not
            raise_if_cancelled()  # a query cancelled mid-flight surfaces as a database error
            log.error("retention_failed", error=type(exc).__name__, detail=str(exc)[:300])
        await asyncio.sleep(RETENTION_EVERY)


async def _release_scheduled(ctx: GatewayContext) -> None:
    """Release scheduled messages, follow-ups, away periods' ends and morning digests as their
    time comes (adapters/postgres/scheduled_sends.py); every gateway ticks, and each is keyed
    by what it releases, so each happens once."""
    from datetime import UTC, datetime

    from adapters.postgres.scheduled_sends import EVERY, end_run_out, owe_digests, release_due, remind_due

    while True:
        await asyncio.sleep(EVERY)
        assert ctx.owner_pool is not None
        try:
            now = datetime.now(UTC)
            await release_due(ctx.owner_pool, ctx.store, now)
            await remind_due(ctx.owner_pool, ctx.store, now)
            await end_run_out(ctx.owner_pool, ctx.store, now)
            await owe_digests(ctx.owner_pool, ctx.store, now)
        except psycopg.errors.UndefinedTable:
            raise_if_cancelled()
            log.debug("scheduled_sends_waiting", reason="the inbox read model is not created yet")
        except Exception as exc:  # the next tick tries again; the log says why this one did not
            raise_if_cancelled()
            log.warning("scheduled_sends_failed", error=type(exc).__name__, detail=str(exc)[:300])
        raise_if_cancelled()  # an append (a NATS publish) or a query can swallow the cancellation


def _bundled_catalog() -> Catalog:
    from moltbot.settings import bundled_plans_file, load_catalog

    return load_catalog(bundled_plans_file())


async def run_gateway(
    nats: NatsTarget,
    database_url: str,
    *,
    key_file: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    started: asyncio.Event | None = None,
    **options: Unpack[GatewayOptions],
) -> None:
    """Serve the HTTP API until cancelled."""
    from gateway.app import MAX_WS_MESSAGE_BYTES, create_app

    async with gateway_context(nats, database_url, key_file, **options) as ctx:
        config = uvicorn.Config(
            create_app(ctx),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws_max_size=MAX_WS_MESSAGE_BYTES,
            # Frames go uncompressed, as SSE does: compressing each one cost the gateway more CPU
            # than writing it (bench/), and a client on a slow link can ask for batched frames.
            ws_per_message_deflate=False,
            # Event streams never end by themselves: give them this long, then close them.
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            # Bound here, not by uvicorn: it answers a taken port with sys.exit.
            listener.bind((host, port))
        except OSError as exc:
            listener.close()
            raise GatewayStartError(
                f"The gateway cannot listen on {host}:{port} ({exc.strerror})."
                " Choose another port with MOLTBOT_GATEWAY_PORT or --port."
            ) from None
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            while not server.started:
                if serving.done():
                    serving.result()
                    raise GatewayStartError(f"The gateway stopped while starting on {host}:{port}.")
                await asyncio.sleep(0.02)
            log.info("gateway_listening", url=f"http://{host}:{port}")
            if started is not None:
                started.set()
            await asyncio.shield(serving)
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
