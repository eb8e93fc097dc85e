"""Shared plumbing for the embedded server supervisors.

One child process per :class:`ManagedProcess`: spawned with ``asyncio.create_subprocess_exec`` in its own
session, its output appended to a log file, and (on Linux) a parent-death signal so the child never outlives
us. Readiness, graceful stop with escalation and hard kill live here so the NATS and PostgreSQL supervisors
only describe *what* to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import structlog

log = structlog.get_logger()

_PR_SET_PDEATHSIG = 1
_POLL_INTERVAL = 0.05


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started, or did not become ready in time."""


@dataclass(frozen=True, slots=True)
class RunAs:
    """Credentials a child process switches to before exec (only possible when we are root)."""

    user: str
    uid: int
    gid: int


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS may hand it out again before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail clearly if something already listens on ``host:port``.

    Otherwise a readiness probe could succeed against that other server while ours fails to bind.
    SO_REUSEADDR makes lingering TIME_WAIT connections (e.g. after a kill -9) not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot start {what}: {host}:{port} is already in use ({exc})"
            ) from exc


def tail(path: Path, lines: int = 40, *, start: int = 0) -> str:
    """The last ``lines`` lines of a text file, reading only from byte offset ``start`` on."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(start, size - 64 * 1024))
            data = fh.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def death_signal_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when the spawning thread dies.

    Linux only (``None`` elsewhere). ``PR_SET_PDEATHSIG`` is cleared by uid/gid changes, so it must run
    after any credential switch: CPython applies ``user=``/``group=``/``extra_groups=`` before calling
    ``preexec_fn``, so passing those to the spawn call is safe. The signal is tied to the *thread* that
    forked, i.e. the event loop thread. If we died between fork and prctl the child has already been
    reparented; it then exits instead of lingering.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _is_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (missing or a zombie waiting for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc`` scan; empty elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    children: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry.name))
    return children


async def wait_gone(pids: Sequence[int], within: float) -> list[int]:
    """Wait until all ``pids`` are gone; returns those still running after ``within`` seconds."""
    deadline = time.monotonic() + within
    remaining = [pid for pid in pids if not _is_gone(pid)]
    while remaining and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_INTERVAL)
        remaining = [pid for pid in remaining if not _is_gone(pid)]
    return remaining


def process_name(pid: int) -> str | None:
    """The kernel's short name (``comm``) of a live process, or ``None`` if unknown."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


async def _spawn(
    argv: Sequence[str],
    out: IO[bytes],
    *,
    env: dict[str, str] | None,
    run_as: RunAs | None,
    death_signal: signal.Signals,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    """Spawn in a new session (Ctrl-C in a terminal reaches only us), output to ``out``."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=death_signal_preexec(death_signal),
        user=None if run_as is None else run_as.uid,
        group=None if run_as is None else run_as.gid,
        extra_groups=None if run_as is None else [],
    )


async def run_to_completion(
    argv: Sequence[str],
    *,
    log_file: Path,
    run_as: RunAs | None = None,
    env: dict[str, str] | None = None,
    time_limit: float = 120.0,
    cwd: Path | None = None,
) -> None:
    """Run a one-shot command (e.g. ``initdb``), output appended to ``log_file``; raise if it fails."""
    with log_file.open("ab") as out:
        offset = out.tell()
        proc = await _spawn(argv, out, env=env, run_as=run_as, death_signal=signal.SIGTERM, cwd=cwd)
    try:
        async with asyncio.timeout(time_limit):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise EmbeddedServerError(
            f"{Path(argv[0]).name} timed out after {time_limit}s; log {log_file}:\n"
            f"{tail(log_file, start=offset)}"
        ) from None
    if code != 0:
        raise EmbeddedServerError(
            f"{Path(argv[0]).name} exited with code {code}; log {log_file}:\n{tail(log_file, start=offset)}"
        )


class ManagedProcess:
    """A long-running child process: spawn, wait until ready, stop with escalation, or kill."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_file: Path,
        death_signal: signal.Signals = signal.SIGTERM,
        run_as: RunAs | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.argv = list(argv)
        self.log_file = log_file
        self.death_signal = death_signal
        self.run_as = run_as
        self.env = env
        self._proc: asyncio.subprocess.Process | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """Log lines written since the last spawn."""
        return tail(self.log_file, lines, start=self._log_offset)

    async def spawn(self) -> int:
        if self.running:
            raise EmbeddedServerError(f"{self.name} is already running (pid {self.pid})")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            self._log_offset = out.tell()
            self._proc = await _spawn(
                self.argv, out, env=self.env, run_as=self.run_as, death_signal=self.death_signal, cwd=self.cwd
            )
        log.debug("process_spawned", name=self.name, pid=self._proc.pid, argv=self.argv)
        return self._proc.pid

    async def wait_ready(self, probe: Callable[[], Awaitable[bool]], within: float) -> None:
        """Poll ``probe`` until it returns True; fail early if the process exits, or after ``within`` seconds.

        On failure the process is stopped and the error carries the tail of its log.
        """
        deadline = time.monotonic() + within
        while True:
            if not self.running:
                raise EmbeddedServerError(
                    f"{self.name} exited with code {self.returncode} during startup; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            if await probe():
                return
            if time.monotonic() >= deadline:
                await self.kill()
                raise EmbeddedServerError(
                    f"{self.name} not ready after {within}s; log {self.log_file}:\n{self.log_tail()}"
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def _signal_and_wait(self, sig: signal.Signals, grace: float) -> bool:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, grace: float, signals: Sequence[signal.Signals] = (signal.SIGTERM,)) -> None:
        """Send each signal in turn, waiting ``grace`` seconds after each; SIGKILL as the last resort."""
        for sig in signals:
            if await self._signal_and_wait(sig, grace):
                return
            log.warning("process_stop_escalated", name=self.name, pid=self.pid, after=sig.name)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL the process and reap it."""
        await self._signal_and_wait(signal.SIGKILL, 30.0)


class Supervisor(ABC):
    """An embedded server (or cluster) as an async context manager: started on entry, stopped
    on exit however the block ends."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def restart(self) -> None:
        """Stop (if running) and start again on the same ports and data."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ProcessSupervisor(Supervisor):
    """A :class:`Supervisor` of one server process (its :class:`ManagedProcess` once started)
    listening on ``host:port``."""

    host: str
    port: int
    _process: ManagedProcess | None = None

    def _check_startable(self, what: str, address: str) -> None:
        """Refuse to start ``what`` while it runs, or while something else listens on its port."""
        if self.running:
            raise EmbeddedServerError(f"{what} is already running at {address} (pid {self.pid})")
        ensure_port_free(self.host, self.port, what)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running
