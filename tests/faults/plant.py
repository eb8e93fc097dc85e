"""The product as separate processes over real servers, so a fault can hit one part.

Each role runs as its own ``moltbot`` process, as an operator would deploy it: gateway,
projection workers, agent (offline model), outbox and the webchat connector; the Teams
connector and a Personal Bridge running Signal are started by the faults that need them
(against local fakes of Microsoft's side and of signal-cli).
A role can be SIGKILLed and started again; nats-server and PostgreSQL can be restarted
under them.
Each role signs in to NATS as its own user (given by environment, as a deployment does)
and to PostgreSQL as the product's login role, which is no superuser.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
from nats.js.errors import NotFoundError

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.embedded.processes import ManagedProcess, free_port
from adapters.nats import permissions
from adapters.nats.connection import connect
from adapters.postgres.database import connection as pg_connection
from projections.registry import all_projections
from tests.fakes.signal_rpc import FakeSignal
from tests.fakes.teams_api import FakeTeams

REPO_ROOT = Path(__file__).resolve().parents[2]

# The NATS user each role process signs in as.
NATS_USERS = {
    "gateway": permissions.GATEWAY,
    "projections": permissions.PROJECTIONS,
    "agent": permissions.AGENT,
    "outbox": permissions.OUTBOX,
    "connector": permissions.connector_role("webchat"),
    "connector-teams": permissions.connector_role("teams"),
}

ROLES: dict[str, tuple[str, ...]] = {
    "gateway": ("gateway",),
    "projections": ("projections", "run"),
    "agent": ("agent",),
    "outbox": ("outbox",),
    "connector": ("connector", "webchat"),
    "connector-teams": ("connector", "teams"),
}
ON_DEMAND = frozenset({"connector-teams", "bridge"})  # started by the fault that uses them

CONSUMERS = {
    "agent": ("EVENTS", "agent"),
    "outbox": ("EVENTS", "outbox"),
    "connector": ("COMMANDS", "connector-webchat"),
    "connector-teams": ("COMMANDS", "connector-teams"),
}


async def checkpoints(database_url: str) -> dict[str, int]:
    async with pg_connection(database_url) as conn:
        cur = await conn.execute(
            "SELECT projection, last_seq FROM moltbot.projection_checkpoints WHERE slot = 'live'"
        )
        return {row["projection"]: int(row["last_seq"]) for row in await cur.fetchall()}


async def read_models_reach(database_url: str, seq: int) -> bool:
    try:
        reached = await checkpoints(database_url)
    except Exception:
        return False
    return len(reached) == len(all_projections()) and min(reached.values()) >= seq


class Plant:
    """Every role of the product as a child process, over one nats-server and one database."""

    def __init__(
        self,
        work: Path,
        nats: NatsServer,
        postgres: PostgresServer,
        database_url: str,
        *,
        model_url: str,
        providers: dict[str, str] | None = None,
    ) -> None:
        self.model_url = model_url  # the agent's model: a local fake of Anthropic's API
        self.providers = providers or {}  # MOLTBOT_*_BASE of the providers' local fakes
        self.work = work
        self.nats = nats
        self.postgres = postgres
        self.database_url = database_url
        self.port = free_port()
        self.gateway_url = f"http://127.0.0.1:{self.port}"
        self._processes: dict[str, ManagedProcess] = {}
        self.teams: FakeTeams | None = None  # Microsoft's side, for the Teams connector's fault
        self.signal: FakeSignal | None = None  # signal-cli's daemon, for the bridge's fault
        self.bridge_env: dict[str, str] = {}  # the bridge's own settings (its signal-cli)

    def _bridge_dir(self) -> Path:
        return self.work / "bridge"

    def _env(self, role: str) -> dict[str, str]:
        if role == "bridge":  # on the user's computer: it reaches the gateway only
            return os.environ | {
                "PYTHONPATH": str(REPO_ROOT),
                "MOLTBOT_LOG_FORMAT": "json",
                **self.bridge_env,
            }
        user = NATS_USERS[role]
        assert self.nats.users is not None, "the plant's nats-server runs with users"
        return os.environ | {
            "MOLTBOT_NATS_URL": self.nats.url,
            "MOLTBOT_NATS_USER": user,
            "MOLTBOT_NATS_PASSWORD": self.nats.users[user],
            "MOLTBOT_DATABASE_URL": self.database_url,
            "MOLTBOT_DATA_DIR": str(self.work / "data"),
            "MOLTBOT_GATEWAY_PORT": str(self.port),
            "MOLTBOT_PUBLIC_URL": self.gateway_url,  # where providers post (Teams' webhook)
            "MOLTBOT_LOG_FORMAT": "json",
            "MOLTBOT_AGENT_DEBOUNCE": "0.3",
            "MOLTBOT_ANTHROPIC_API_KEY": "sk-ant-faults-fake-key",
            "MOLTBOT_ANTHROPIC_BASE_URL": self.model_url,
            # The load's visitors all write from this machine's address, one message every
            # 2 s each: past the website-chat and per-conversation limits, which have their
            # own tests (tests/integration/test_gateway_limits.py, test_agent_security.py).
            **dict.fromkeys(
                (
                    "MOLTBOT_LIMIT_WEBCHAT_PER_IP",
                    "MOLTBOT_LIMIT_WEBCHAT_NEW_VISITORS_PER_IP",
                    "MOLTBOT_LIMIT_WEBCHAT_PER_WIDGET",
                    "MOLTBOT_LIMIT_WEBCHAT_PER_VISITOR",
                    "MOLTBOT_LIMIT_AGENT_RUNS_PER_CONVERSATION",
                ),
                "0",
            ),
            "PYTHONPATH": str(REPO_ROOT),
            **self.providers,
        }

    async def start(self, role: str, *, wait: bool = False) -> None:
        """Start ``role``; with ``wait``, return once it does its work (not only runs)."""
        argv = ROLES[role] if role != "bridge" else ("bridge", "run", "--data", str(self._bridge_dir()))
        process = ManagedProcess(
            role,
            [sys.executable, "-m", "moltbot", *argv],
            log_file=self.work / "logs" / f"{role}.log",
            death_signal=signal.SIGKILL,
            env=self._env(role),
        )
        self._processes[role] = process
        await process.spawn()
        if role == "gateway":
            await process.wait_ready(self._gateway_ready, 60)
        elif wait:
            await process.wait_ready(lambda: self._ready(role), 90)

    async def start_all(self) -> None:
        await self.start("gateway")  # first: it creates the shared key files the others read
        others = [role for role in ROLES if role != "gateway" and role not in ON_DEMAND]
        await asyncio.gather(*(self.start(role, wait=True) for role in others))

    async def pair_bridge(self, access_token: str) -> str:
        """Pair a Personal Bridge with the inbox of ``access_token`` as its owner would (a code
        made in the inbox, ``moltbot bridge pair``); the device's id."""
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=10) as http:
            made = await http.post(
                "/v1/devices/pairing-codes", headers={"authorization": f"Bearer {access_token}"}
            )
        made.raise_for_status()
        argv = ["bridge", "pair", made.json()["code"], "--gateway", self.gateway_url]
        argv += ["--data", str(self._bridge_dir()), "--name", "Faults Mac"]
        pairing = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "moltbot", *argv, env=self._env("bridge"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(pairing.communicate(), 60)
        assert pairing.returncode == 0, out.decode()
        return out.decode().split(" as ", 1)[1].split(" ", 1)[0]

    async def kill(self, role: str) -> None:
        await self._processes[role].kill()

    async def stop_all(self) -> None:
        await asyncio.gather(*(p.stop(5) for p in self._processes.values()))

    def log_tail(self, role: str) -> str:
        return self._processes[role].log_tail(20)

    async def _ready(self, role: str) -> bool:
        """Projections: every read model exists. Consumers: a pull request is waiting."""
        if role == "projections":
            return await read_models_reach(self.database_url, 0)
        stream, consumer = CONSUMERS[role]
        nc = await connect(self.nats.login_url(), name="faults-probe")
        try:
            info = await nc.jetstream().consumer_info(stream, consumer)
        except NotFoundError:
            return False
        finally:
            await nc.close()
        return bool(info.num_waiting)

    async def _gateway_ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                response = await http.get(f"{self.gateway_url}/healthz")
        except httpx.TransportError:
            return False
        return response.status_code == 200
