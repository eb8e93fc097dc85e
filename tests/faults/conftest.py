"""Fixtures of the fault suite, and its table printed at the end of the run.

``MOLTBOT_FAULTS_SCALE`` sizes the load (1 in ``make test``; ``make faults`` uses more).
The table also goes to ``tests/artifacts/faults.md``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.connection import connect
from adapters.nats.event_store import EventStore
from adapters.nats.streams import apply_streams, load_streams_file
from adapters.postgres.database import provision_login_role
from tests.conftest import PRODUCT_PASSWORD, PRODUCT_ROLE, nats_users, permission_violations, roomy_plans_file
from tests.fakes import signal_cli
from tests.fakes.anthropic_api import fake_anthropic, text
from tests.fakes.signal_rpc import fake_signal
from tests.fakes.teams_api import fake_teams
from tests.faults.audit import describe
from tests.faults.plant import REPO_ROOT, Plant

RESULTS = pytest.StashKey[list[dict[str, Any]]]()
ARTIFACT = REPO_ROOT / "tests" / "artifacts" / "faults.md"


def scale() -> float:
    return float(os.environ.get("MOLTBOT_FAULTS_SCALE", "1"))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS] = []


@pytest.fixture
def fault_results(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return request.config.stash[RESULTS]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(RESULTS, [])
    if not rows:
        return
    table = describe(sorted(rows, key=lambda r: r["order"]))
    terminalreporter.write_sep("-", f"fault injection (scale {scale():g})")
    terminalreporter.write_line(table)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(f"# Fault injection, scale {scale():g}\n\n{table}\n")


@pytest.fixture(scope="module")
async def restartable_postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL of the suite's own: one fault restarts it."""
    async with PostgresServer(tmp_path_factory.mktemp("faults-pg")) as server:
        yield server


@pytest.fixture
async def plant(tmp_path: Path, restartable_postgres: PostgresServer) -> AsyncIterator[Plant]:
    database = f"f_{uuid.uuid4().hex[:12]}"
    database_url = await provision_login_role(
        restartable_postgres.url, database, PRODUCT_ROLE, PRODUCT_PASSWORD
    )
    # The agent answers visitors with a model (a local fake of Anthropic's API): the offline
    # model would only draft for them, and the suite follows every reply out of the product.
    async with (
        NatsServer(tmp_path / "nats", users=nats_users()) as nats,
        fake_anthropic(otherwise=text("We open at nine, every day.")) as model,
        fake_teams() as teams,
        fake_signal(hold_while_away=True) as signal,
    ):
        nc = await connect(nats.login_url(), name="faults-setup")
        await apply_streams(nc, load_streams_file(REPO_ROOT / "streams.yaml"))
        await nc.close()
        providers = {
            "MOLTBOT_TEAMS_LOGIN_BASE": teams.login_base,
            "MOLTBOT_TEAMS_OPENID_URL": teams.openid_url,
            # Room for a device and its channels (the free plan has none): the bridge's fault.
            "MOLTBOT_PLANS_FILE": str(roomy_plans_file(tmp_path / "plans")),
        }
        product = Plant(
            tmp_path, nats, restartable_postgres, database_url, model_url=model.base_url, providers=providers
        )
        product.teams = teams
        product.signal = signal
        product.bridge_env = {  # the bridge starts a fake signal-cli joined to the fake daemon
            "MOLTBOT_SIGNAL_CLI": str(signal_cli.install(tmp_path / "bin")),
            signal_cli.PORT_ENV: str(signal.tcp_port),
            signal_cli.LOG_ENV: str(tmp_path / "signal-cli.argv"),
        }
        await product.start_all()
        try:
            yield product
        finally:
            await product.stop_all()
    assert not permission_violations(nats), "\n".join(permission_violations(nats))


@pytest.fixture
async def store(plant: Plant) -> AsyncIterator[EventStore]:
    nc = await connect(plant.nats.login_url(), name="faults-load")
    yield EventStore(nc)
    await nc.close()
