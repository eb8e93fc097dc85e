"""``moltbot up``: the whole product on one machine.

Starts a real nats-server (JetStream, fsync on every write) — or with ``cluster=3`` three
of them as one cluster, streams replicated on all three — and a real PostgreSQL under
the data folder — or uses external ones given by ``MOLTBOT_NATS_URL`` /
``MOLTBOT_DATABASE_URL`` — applies streams.yaml, runs the projection workers and, once every
read model's tables exist, the other process roles; writes ``stack.json`` so other commands
find the servers, prints a banner (inbox URL, data folder, model, what to try), and stops
everything in order on Ctrl-C. A lock file keeps a second ``up`` off the same folder.

Nothing listens without credentials: the embedded nats-server gets one user per role
(passwords generated into ``<data>/nats/credentials.json``, permissions from
``adapters/nats/permissions.py``) and each role connects as its own; PostgreSQL asks for
passwords, and the product uses the login role ``moltbot`` (no superuser), whose URL is
the ``database_url`` of ``stack.json``. Both files are readable by their owner alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog

from adapters.agent.choice import ModelChoice
from adapters.embedded.nats_cluster import CLUSTER_SIZE, NatsCluster
from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.embedded.processes import free_port
from adapters.embedded.secrets import read_or_create_secret, read_or_create_users, write_private
from adapters.mail.outbox import outbox_folder
from adapters.nats import permissions
from adapters.nats.connection import NatsAccess, NatsLogin, connection
from adapters.nats.streams import apply_streams, load_streams_file
from adapters.postgres.database import connection as pg_connection
from adapters.postgres.database import provision_login_role, without_password
from adapters.vault.cipher import load_keyring
from domain.agent import DEFAULT_MODEL
from domain.models import OFFLINE_MODEL
from moltbot.roles import (
    CONNECTOR_KINDS,
    ChannelSettings,
    GatewayStartError,
    agent_settings,
    run_agent,
    run_billing,
    run_connectors,
    run_gateway,
    run_notifier,
    run_outbox,
    run_projections,
)
from moltbot.settings import DEFAULT_DATA_DIR, NATS_CREDENTIALS_FILE, Settings
from moltbot.waits import waiting_tasks
from projections.base import Projection
from projections.engine import ensure_core, read_checkpoint
from projections.registry import all_projections

log = structlog.get_logger()

DATABASE = "moltbot"
PRODUCT_ROLE = "moltbot"  # the PostgreSQL login role of every process role


class StackAlreadyRunning(Exception):
    pass


class StackConfigError(Exception):
    """``up`` was asked for something it cannot run (e.g. a cluster of two)."""


def check_cluster_size(cluster: int, settings: Settings) -> None:
    """Only one node or a cluster of three; and a cluster only of embedded servers."""
    if cluster not in (1, CLUSTER_SIZE):
        raise StackConfigError(f"--cluster must be 1 or {CLUSTER_SIZE}, not {cluster}")
    if cluster > 1 and settings.nats_url:
        raise StackConfigError(
            "--cluster starts embedded nats-servers, but MOLTBOT_NATS_URL points at external ones:"
            " unset it, or apply the streams there with `moltbot streams apply --replicas 3`"
        )


@contextlib.contextmanager
def exclusive_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / "moltbot.lock"
    handle: IO[str] = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StackAlreadyRunning(
            f"A Moltbot stack is already running on {data_dir} (pid {holder}). Stop it with"
            " Ctrl-C in its terminal, or start another one with --data OTHER_FOLDER."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _remembered_ports(data_dir: Path) -> dict[str, int]:
    path = data_dir / "ports.json"
    if path.exists():
        ports: dict[str, int] = json.loads(path.read_text())
        return ports
    return {}


def _port(remembered: dict[str, int], name: str) -> int:
    """Reuse last run's port so URLs stay stable, unless something else took it."""
    port = remembered.get(name)
    if port is not None:
        try:
            import socket

            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
    return free_port()


@asynccontextmanager
async def servers(
    settings: Settings, *, cluster: int = 1
) -> AsyncIterator[tuple[dict[str, Any], NatsAccess]]:
    """Start (or point at) nats-server(s) and PostgreSQL; yields the stack description
    (what ``stack.json`` says) and how each role signs in to NATS."""
    data_dir = settings.data_dir
    remembered = _remembered_ports(data_dir)
    nats_login: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        users: dict[str, str] | None = None
        if not settings.nats_url:
            users = read_or_create_users(data_dir / NATS_CREDENTIALS_FILE, permissions.roles(CONNECTOR_KINDS))
            nats_login = {"nats_user": permissions.ADMIN, "nats_password": users[permissions.ADMIN]}
        if settings.nats_url:
            nats_url = settings.nats_url
            given = settings.nats_login()
            if given is not None and given.creds_file is not None:
                nats_login = {"nats_creds": str(given.creds_file)}
            elif given is not None:
                nats_login = {"nats_user": given.user}  # its password stays in the environment
        elif cluster > 1:
            names = [f"nats-{n}" for n in range(1, cluster + 1)]
            nodes = NatsCluster(
                data_dir,
                ports=[_port(remembered, name) for name in names],
                route_ports=[_port(remembered, f"{name}-routes") for name in names],
                users=users,
            )
            await stack.enter_async_context(nodes)
            nats_url = nodes.url
            for name, port, route_port in zip(names, nodes.ports, nodes.route_ports, strict=True):
                remembered[name] = port
                remembered[f"{name}-routes"] = route_port
        else:
            nats = NatsServer(data_dir / "nats", port=_port(remembered, "nats"), users=users)
            await stack.enter_async_context(nats)
            nats_url = nats.url
            remembered["nats"] = nats.port
        if settings.database_url:
            database_url = settings.database_url
        else:
            postgres = PostgresServer(data_dir / "postgres", port=_port(remembered, "postgres"))
            await stack.enter_async_context(postgres)
            password = read_or_create_secret(data_dir / "postgres" / f"{PRODUCT_ROLE}.password")
            database_url = await provision_login_role(postgres.url, DATABASE, PRODUCT_ROLE, password)
            remembered["postgres"] = postgres.port
        (data_dir / "ports.json").write_text(json.dumps(remembered))
        if users is not None:
            access = NatsAccess(
                nats_url, {role: NatsLogin(user=role, password=password) for role, password in users.items()}
            )
        else:
            access = settings.nats_access(nats_url)
        description = {
            "nats_url": nats_url,
            **nats_login,
            "database_url": database_url,
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(),
            "data_dir": str(data_dir),
        }
        yield description, access


async def up(settings: Settings, *, cluster: int = 1) -> None:
    """Run the whole stack in the foreground until cancelled (Ctrl-C).

    ``cluster=3`` runs three nats-servers (``<data>/nats-1..3``) with every stream on all three.
    """
    check_cluster_size(cluster, settings)
    with stopped_by_signals() as received:
        try:
            await _up(settings, cluster)
        except asyncio.CancelledError:
            if not received:  # cancelled by something else than a signal: not ours to hide
                raise


STILL_STOPPING_AFTER = 10.0  # seconds of stopping before the log says what it waits for


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[list[signal.Signals]]:
    """SIGINT (Ctrl-C) and SIGTERM (a supervisor, ``docker stop``) both stop the stack in
    order: roles first, then the servers. Installed explicitly, so this holds even when the
    process started with SIGINT ignored, as the background jobs of a script do."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []
    watch: list[asyncio.TimerHandle] = []

    def stop(sig: signal.Signals) -> None:
        log.info("stack_stopping", signal=sig.name)
        received.append(sig)
        task.cancel()
        if not watch:
            watch.append(loop.call_later(STILL_STOPPING_AFTER, still_stopping))

    def still_stopping() -> None:
        """A stop that takes long says what it waits for (a role that lost its cancellation)."""
        log.warning("stack_still_stopping", after_s=STILL_STOPPING_AFTER, waiting=waiting_tasks())
        watch[0] = loop.call_later(STILL_STOPPING_AFTER, still_stopping)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        yield received
    finally:
        for handle in watch:
            handle.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _up(settings: Settings, cluster: int) -> None:
    with exclusive_lock(settings.data_dir):
        async with servers(settings, cluster=cluster) as (description, nats):
            description["nats_cluster_size"] = cluster
            spec = load_streams_file(settings.streams_file)
            replicas = cluster if cluster > 1 else None  # one node: as streams.yaml says
            async with connection(nats, name="moltbot-up", role=permissions.ADMIN) as nc:
                for report in await apply_streams(nc, spec, replicas=replicas):
                    log.info("stream_applied", stream=report.name, action=report.action, detail=report.line())
            gateway_started = asyncio.Event()
            models = ModelChoice(settings.anthropic_api_key, base_url=settings.anthropic_base_url)
            media_store = settings.media_store()
            keyring = load_keyring(
                keys=settings.vault_keys, current=settings.vault_key_id, key_file=settings.vault_key_file
            )
            log.info(
                "agent_model",
                model="anthropic" if settings.anthropic_api_key else "offline (no Anthropic key set)",
            )
            try:
                async with asyncio.TaskGroup() as roles:
                    roles.create_task(
                        run_projections(
                            nats, description["database_url"], spec, all_projections(), keyring=keyring
                        ),
                        name="projections",
                    )
                    # Connectors, the agent and the gateway query read models at once: not before they exist.
                    await read_models_created(description["database_url"], all_projections())
                    roles.create_task(run_outbox(nats), name="outbox")
                    roles.create_task(
                        run_agent(
                            nats,
                            description["database_url"],
                            models,
                            keyring=keyring,
                            settings=agent_settings(settings),
                        ),
                        name="agent",
                    )
                    channels = ChannelSettings(
                        description["database_url"],
                        keyring,
                        endpoints=settings.endpoints,
                        media=media_store,
                    )
                    roles.create_task(run_connectors(nats, spec, channels=channels), name="connectors")
                    roles.create_task(
                        run_notifier(
                            nats,
                            description["database_url"],
                            settings.push_config(),
                            keyring=keyring,
                            catalog=settings.catalog(),
                            mailer=settings.mailer(),
                            inbox_url=settings.inbox_url(),
                        ),
                        name="notifier",
                    )
                    stripe_config = settings.billing()
                    if stripe_config is not None:  # billing on: the AI overage goes to Stripe's meter
                        roles.create_task(
                            run_billing(
                                description["database_url"],
                                stripe_config,
                                catalog=settings.catalog(),
                                interval=settings.billing_interval,
                            ),
                            name="billing",
                        )
                    roles.create_task(
                        run_gateway(
                            nats,
                            description["database_url"],
                            key_file=settings.jwt_key_file,
                            port=settings.gateway_port,
                            started=gateway_started,
                            **settings.gateway_options(models=models, keyring=keyring, media=media_store),
                        ),
                        name="gateway",
                    )
                    await gateway_started.wait()
                    description["gateway_url"] = f"http://127.0.0.1:{settings.gateway_port}"
                    write_private(settings.stack_file, json.dumps(description, indent=2) + "\n")
                    log.info(
                        "stack_ready",
                        gateway_url=description["gateway_url"],
                        nats_url=description["nats_url"],
                        database_url=without_password(description["database_url"]),
                        stack_file=str(settings.stack_file),
                    )
                    print(banner(settings, description["gateway_url"]), flush=True)
            except* GatewayStartError as failed:
                raise failed.exceptions[0] from None
            finally:
                await models.aclose()
                await media_store.aclose()
                settings.stack_file.unlink(missing_ok=True)
                log.info("stack_stopped")


async def read_models_created(database_url: str, projections: Sequence[Projection]) -> None:
    """Wait until every read model has its live tables: a worker writes the read model's
    checkpoint row in the transaction that creates them (projections/worker.py)."""
    async with pg_connection(database_url, application_name="moltbot-up") as conn:
        await ensure_core(conn)  # the checkpoint table, made the way every worker makes it
        waiting = list(projections)
        while waiting:
            async with conn.transaction():
                waiting = [p for p in waiting if await read_checkpoint(conn, p, "live") is None]
            if waiting:
                await asyncio.sleep(0.05)


def banner(settings: Settings, inbox_url: str) -> str:
    """What ``up`` prints once it serves: where to go, where the data is, what answers."""
    if settings.anthropic_api_key:
        model = f"{DEFAULT_MODEL} (Anthropic) for new agents"
    else:
        model = f"{OFFLINE_MODEL}, the built-in offline model (MOLTBOT_ANTHROPIC_API_KEY selects Claude)"
    data = "" if settings.data_dir == DEFAULT_DATA_DIR.resolve() else f" --data {settings.data_dir}"
    if settings.smtp_url:
        mail = "sent through MOLTBOT_SMTP_URL"
    else:
        mail = f"written to {outbox_folder(settings.data_dir)} (moltbot{data} mail list)"
    return "\n".join(
        [
            "",
            "Moltbot is running. Ctrl-C stops it.",
            f"  inbox  {inbox_url}",
            f"  data   {settings.data_dir}",
            f"  agent  {model}",
            f"  mail   {mail}",
            "Next:",
            "  1. Open the inbox, create an account and press Try it: write as a website visitor.",
            f"  2. In another terminal: moltbot{data} login --signup, then moltbot conversations list",
            "",
        ]
    )
