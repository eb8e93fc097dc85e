"""Real servers for integration tests.

One PostgreSQL per test session with a fresh database per test; a fresh nats-server
per test (it starts in ~60 ms), with streams.yaml applied. Nothing of our own backbone
is mocked, its security included: the nats-server has a user per role with the role's
permissions (the roles run by these fixtures sign in as theirs, and a permissions
violation in the server's log fails the test), and each test's database belongs to the
product's login role, which is no superuser.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import pytest
from nats.aio.client import Client

from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings
from adapters.billing.config import StripeConfig
from adapters.channels.endpoints import ProviderEndpoints
from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.embedded.processes import free_port
from adapters.embedded.secrets import new_password
from adapters.mail.outbox import FolderOutbox, outbox_folder
from adapters.media.store import LocalMediaStore, MediaStore
from adapters.nats import permissions
from adapters.nats.connection import NatsAccess, NatsLogin, NatsTarget, connect
from adapters.nats.event_store import EventStore
from adapters.nats.streams import StreamsFile, apply_streams, load_streams_file
from adapters.postgres.database import connection as pg_connection
from adapters.postgres.database import provision_login_role
from adapters.push.config import PushConfig
from adapters.push.vapid import VapidKey
from adapters.vault.cipher import Keyring
from adapters.vault.sealing import sealing
from domain.mail import Mailer
from domain.plans import Catalog
from gateway.context import DiscordApp, SlackApp
from gateway.limits import Limits
from moltbot.roles import (
    CONNECTOR_KINDS,
    ChannelSettings,
    GatewayOptions,
    run_agent,
    run_connectors,
    run_gateway,
    run_outbox,
    run_projections,
)
from moltbot.settings import bundled_plans_file, load_catalog
from moltbot.waits import await_chain
from projections import rebuild as rebuild_ops
from projections.base import Projection, live_schema
from projections.registry import all_projections

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT_ROLE = "moltbot"  # as in `moltbot up`: the login role the product's processes use
PRODUCT_PASSWORD = new_password()


@pytest.fixture(scope="session")
def streams_spec() -> StreamsFile:
    return load_streams_file(REPO_ROOT / "streams.yaml")


@pytest.fixture(scope="session")
async def postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PostgresServer]:
    async with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture
async def database_url(postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh database owned by the product's login role, and its URL as that role."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield await provision_login_role(postgres.url, name, PRODUCT_ROLE, PRODUCT_PASSWORD)
    await postgres.drop_database(name)


def nats_users() -> dict[str, str]:
    """A password for the admin and each role, as `moltbot up` generates them."""
    return {role: new_password() for role in permissions.roles(CONNECTOR_KINDS)}


def nats_access(server: NatsServer) -> NatsAccess:
    """Each role's login to ``server``."""
    users = server.users or {}
    return NatsAccess(server.url, {role: NatsLogin(user=role, password=pw) for role, pw in users.items()})


def permission_violations(server: NatsServer) -> list[str]:
    """The server's log lines that report a refused publish or subscribe."""
    lines = server.log_file.read_text().splitlines()
    return [line for line in lines if "Publish Violation" in line or "Subscription Violation" in line]


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path / "nats", users=nats_users()) as server:
        yield server
    # A role that lacks a permission it needs shows here first (its client only logs it).
    assert not permission_violations(server), "\n".join(permission_violations(server))


@pytest.fixture
async def nc(nats_server: NatsServer, streams_spec: StreamsFile) -> AsyncIterator[Client]:
    client = await connect(nats_access(nats_server), name="tests")
    await apply_streams(client, streams_spec)
    yield client
    await client.close()


@pytest.fixture
def store(nc: Client) -> EventStore:
    return EventStore(nc)


STOP_WITHIN = 30.0  # seconds a role has to stop once cancelled, as on Ctrl-C in `moltbot up`


async def stop_roles(*roles: asyncio.Task[Any], within: float = STOP_WITHIN) -> None:
    """Cancel role tasks and wait for them to end. A role still running after ``within``
    seconds (a loop that lost its cancellation) fails the test with where every task of the
    loop waits, instead of hanging the run."""
    for role in roles:
        role.cancel()
    _, pending = await asyncio.wait(roles, timeout=within)
    if pending:
        stuck = "; ".join(f"{t.get_name()} at {(await_chain(t) or ['?'])[-1]}" for t in pending)
        everything = "\n".join(
            f"{t.get_name()}:\n  " + "\n  ".join(await_chain(t)) for t in asyncio.all_tasks()
        )
        pytest.fail(f"roles did not stop within {within:.0f} s: {stuck}\nall tasks:\n{everything}")
    for role in roles:
        with contextlib.suppress(asyncio.CancelledError):
            await role


def stop_up(process: subprocess.Popen[bytes], log_file: Path, sig: int = signal.SIGINT) -> None:
    """Stop a `moltbot up` process as Ctrl-C (or a supervisor) does; one still running after
    60 s is killed and fails the test with what its log said it was waiting for."""
    process.send_signal(sig)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        waits = [line for line in log_file.read_text().splitlines() if "stack_still_stopping" in line]
        said = waits[-1] if waits else "no stack_still_stopping line"
        pytest.fail(f"moltbot up did not stop within 60 s: {said}")


@dataclass
class Stack:
    """The servers of one test, and helpers to run and inspect read models.

    ``nats_url`` carries the admin's user and password (for tests that connect themselves or
    start a ``moltbot`` process); ``nats`` signs each role in as its own user.
    """

    nats_url: str
    database_url: str
    store: EventStore
    spec: StreamsFile
    nats: NatsAccess | None = None
    keyring: Keyring | None = None  # the vault's keys: personal fields sealed and opened with them

    def vault_environ(self) -> dict[str, str]:
        """The vault's keys as a ``moltbot`` process of this stack reads them: every process of
        a deployment shares them (they wrap the data keys of personal fields)."""
        if self.keyring is None:
            return {}
        key_file = self.keyring.to_key_file()
        keys = ",".join(f"{key_id}:{key}" for key_id, key in key_file.keys.items())
        return {"MOLTBOT_VAULT_KEYS": keys, "MOLTBOT_VAULT_KEY_ID": key_file.current}

    @property
    def roles(self) -> NatsTarget:
        """What role runners connect with: each role as itself when the users are known."""
        return self.nats if self.nats is not None else self.nats_url

    @contextlib.asynccontextmanager
    async def projections(
        self, projections: Sequence[Projection] | None = None, *, batch_size: int = 1000
    ) -> AsyncIterator[None]:
        """Run live projection workers for the duration of the block."""
        task = asyncio.create_task(
            run_projections(
                self.roles,
                self.database_url,
                self.spec,
                list(projections or all_projections()),
                batch_size=batch_size,
                keyring=self.keyring,
            )
        )
        try:
            yield
        finally:
            await stop_roles(task)

    async def wait_caught_up(self, timeout: float = 30.0, names: Sequence[str] | None = None) -> int:
        return await wait_caught_up(self.database_url, await self.store.last_seq(), timeout, names)

    async def snapshot(self, projections: Sequence[Projection] | None = None) -> dict[str, list[Any]]:
        return await snapshot(self.database_url, projections)

    async def verify_read_models(self) -> None:
        """Every read model rebuilt from the log beside the live one: they must be identical
        (``moltbot projections verify``)."""
        await self.wait_caught_up()
        async with pg_connection(self.database_url) as conn:
            for projection in all_projections():
                report = await rebuild_ops.verify(conn, projection, self.store)
                assert report.identical, report


async def moltbot_cli(stack: Stack, *args: str) -> tuple[int, str, str]:
    """``python -m moltbot ARGS`` against ``stack`` (its servers and vault keys, as an
    operator's shell has them): exit code, stdout, stderr."""
    env = (
        os.environ
        | {"MOLTBOT_NATS_URL": stack.nats_url, "MOLTBOT_DATABASE_URL": stack.database_url}
        | stack.vault_environ()
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltbot", *args, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def wait_caught_up(
    database_url: str, seq: int, timeout: float = 30.0, names: Sequence[str] | None = None
) -> int:
    """Wait until every live read model's checkpoint reaches ``seq``."""
    wanted = list(names or [p.name for p in all_projections()])
    deadline = asyncio.get_running_loop().time() + timeout
    async with pg_connection(database_url) as conn:
        while True:
            with contextlib.suppress(Exception):
                cur = await conn.execute(
                    "SELECT projection, last_seq FROM moltbot.projection_checkpoints WHERE slot = 'live'"
                )
                rows = {r["projection"]: r["last_seq"] for r in await cur.fetchall()}
                if all(rows.get(name, -1) >= seq for name in wanted):
                    return seq
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"read models did not reach seq {seq}: {rows}")
            await asyncio.sleep(0.05)


async def snapshot(
    database_url: str, projections: Sequence[Projection] | None = None
) -> dict[str, list[Any]]:
    """Every row of every live read-model table, in a stable order."""
    tables: dict[str, list[Any]] = {}
    async with pg_connection(database_url) as conn:
        for projection in projections or all_projections():
            for table in projection.tables:
                qualified = f"{live_schema(projection)}.{table}"
                cur = await conn.execute(f"SELECT * FROM {qualified} LIMIT 0")
                n_columns = len(cur.description or [])
                order = ", ".join(str(i) for i in range(1, n_columns + 1))
                cur = await conn.execute(f"SELECT * FROM {qualified} ORDER BY {order}")
                tables[qualified] = [tuple(row.values()) for row in await cur.fetchall()]
    return tables


@pytest.fixture
async def stack(
    nats_server: NatsServer, nc: Client, database_url: str, streams_spec: StreamsFile, keyring: Keyring
) -> AsyncIterator[Stack]:
    """The servers, with a store that seals and opens personal fields as the product's roles do."""
    async with sealing(nc, database_url, keyring) as sealer:
        yield Stack(
            nats_server.login_url(), database_url, EventStore(nc, sealer=sealer), streams_spec,
            nats=nats_access(nats_server), keyring=keyring,
        )  # fmt: skip


@pytest.fixture
def keyring() -> Keyring:
    """The vault's keys for one test."""
    key_id, key = Keyring.generate_key()
    return Keyring({key_id: key}, key_id)


@pytest.fixture
def endpoints() -> ProviderEndpoints:
    """Where connectors and the gateway reach providers (a module with fakes overrides this)."""
    return ProviderEndpoints()


@pytest.fixture
def media_store(tmp_path: Path) -> MediaStore:
    """Where connectors keep attachments (a module may use an S3-compatible fake)."""
    return LocalMediaStore(tmp_path / "media")


@pytest.fixture
def public_url() -> str | None:
    """The gateway's public address for provider webhooks (a module may set one)."""
    return None


@pytest.fixture
def slack_app() -> SlackApp | None:
    """The deployment's Slack app for OAuth installs (a module with a fake sets one)."""
    return None


@pytest.fixture
def discord_app() -> DiscordApp | None:
    """The deployment's Discord application for "Add to server" (a module with a fake sets one)."""
    return None


@pytest.fixture
def plan_catalog() -> Catalog:
    """The plans the gateway and the agent hold inboxes to: plans.yaml (a module whose
    subject is not the plans may use :func:`roomy_catalog`)."""
    return load_catalog(bundled_plans_file())


def roomy_catalog() -> Catalog:
    """plans.yaml with a Free plan that has room for devices, channels, agents and any model,
    for tests of other things than the limits (tests/integration/test_plan_limits.py)."""
    catalog = load_catalog(bundled_plans_file())
    free = catalog.plans["free"]
    roomy = msgspec.structs.replace(
        free.limits, cloud_channels=None, bridge_channels=10, agents=None, models=None, seats=None
    )
    plans = dict(catalog.plans) | {"free": msgspec.structs.replace(free, limits=roomy)}
    return msgspec.structs.replace(catalog, plans=plans)


def roomy_plans_file(folder: Path) -> Path:
    """:func:`roomy_catalog` as a plans file in ``folder`` (MOLTBOT_PLANS_FILE of a process)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plans.yaml"
    path.write_bytes(msgspec.yaml.encode(roomy_catalog()))
    return path


@pytest.fixture
def channel_clients() -> dict[str, Any]:
    """Protocol libraries the connectors use instead of a kind's own (kind -> client
    factory; a module with a fake WhatsApp sets one)."""
    return {}


@pytest.fixture
def billing() -> StripeConfig | None:
    """The gateway's Stripe settings: billing off (a module with the fake Stripe sets them)."""
    return None


async def early_in_a_rate_window(needed_s: float = 15) -> None:
    """Wait, if need be, for a fresh minute: counted limits reset at each whole minute
    (fixed windows), so a test that counts hits up to a refusal needs them all in one."""
    if (left := 60 - time.time() % 60) < needed_s:
        await asyncio.sleep(left + 0.2)


@pytest.fixture
def limits() -> Limits:
    """The gateway's rate limits and stream caps (a module may set smaller ones)."""
    return Limits()


@pytest.fixture
def mailer(tmp_path: Path) -> Mailer:
    """Where the gateway's account mail goes: .eml files in ``tmp_path/mail/outbox`` (as on
    the embedded default); a module may send it to a local SMTP server instead."""
    return FolderOutbox(outbox_folder(tmp_path), "Moltbot Cloud <no-reply@moltbot.localhost>")


@pytest.fixture
def email_verification() -> Literal["required", "optional"]:
    return "optional"


@pytest.fixture(scope="session")
def push_config() -> PushConfig:
    """Browser push as `moltbot up` has it (a VAPID key of its own), with push services only on
    127.0.0.1: tests/fakes/push_service.py."""
    subject = "mailto:ops@moltbot.localhost"
    return PushConfig(key=VapidKey.generate(), subject=subject, services=("127.0.0.1",))


@pytest.fixture
async def api(
    stack: Stack,
    mailer: Mailer,
    email_verification: Literal["required", "optional"],
    limits: Limits,
    tmp_path: Path,
    agent_models: ModelChoice,
    keyring: Keyring,
    endpoints: ProviderEndpoints,
    slack_app: SlackApp | None,
    discord_app: DiscordApp | None,
    public_url: str | None,
    media_store: MediaStore,
    channel_clients: dict[str, Any],
    billing: StripeConfig | None,
    plan_catalog: Catalog,
    push_config: PushConfig,
) -> AsyncIterator[httpx.AsyncClient]:
    """The product over real servers: gateway (an HTTP client on it), projections, outbox
    and connectors, each as in ``moltbot up``."""
    options = GatewayOptions(
        models=agent_models, keyring=keyring, endpoints=endpoints, media=media_store, slack_app=slack_app,
        discord_app=discord_app,
        public_url=public_url, limits=limits, billing=billing, catalog=plan_catalog, mailer=mailer,
        email_verification=email_verification, push=push_config,
    )  # fmt: skip
    async with running_product(stack, tmp_path / "jwt.pem", options, channel_clients) as client:
        yield client


@contextlib.asynccontextmanager
async def running_product(
    stack: Stack, key_file: Path, options: GatewayOptions, channel_clients: dict[str, Any] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The product's roles on ``stack`` (gateway, projections, outbox, connectors) while the
    block runs, and an HTTP client on its gateway."""
    assert stack.keyring is not None, "the product's roles seal personal fields: the stack needs its keyring"
    port = free_port()
    started = asyncio.Event()
    roles = [
        asyncio.create_task(
            run_gateway(
                stack.roles, stack.database_url, key_file=key_file, port=port, started=started, **options
            )
        ),
        asyncio.create_task(run_outbox(stack.roles)),
        asyncio.create_task(
            run_connectors(
                stack.roles,
                stack.spec,
                channels=ChannelSettings(
                    stack.database_url,
                    stack.keyring,
                    endpoints=options.get("endpoints") or ProviderEndpoints(),
                    media=options.get("media"),
                    clients=channel_clients or {},
                ),
            )
        ),
    ]
    async with stack.projections():
        await asyncio.wait_for(started.wait(), 20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    await stop_roles(*roles)


@pytest.fixture
async def agent_models() -> AsyncIterator[ModelChoice]:
    """The agent's models: the offline one (a module may override this fixture)."""
    models = ModelChoice(None)
    yield models
    await models.aclose()


@pytest.fixture
async def assistant(
    api: httpx.AsyncClient, stack: Stack, agent_models: ModelChoice, keyring: Keyring, plan_catalog: Catalog
) -> AsyncIterator[None]:
    """The agent role beside ``api``, with a short debounce window."""
    role = asyncio.create_task(
        run_agent(
            stack.roles,
            stack.database_url,
            agent_models,
            keyring=keyring,
            settings=AgentSettings(debounce=0.3),
            catalog=plan_catalog,
        )
    )
    yield
    await stop_roles(role)
