"""Reaching signal-cli: a daemon already running (``MOLTBOT_SIGNAL_RPC``: its UNIX socket,
TCP port or HTTP address), or ``signal-cli jsonRpc`` started here (``MOLTBOT_SIGNAL_CLI``,
else ``signal-cli`` on the ``PATH``) with its own data folder, in multi-account mode (the
mode in which it links new devices), talking over its standard input and output.

A started signal-cli writes its log to ``signal-cli.log`` in its folder (made anew at each
start) and is stopped when the block ends: its input is closed, which ends it cleanly; it is
terminated if it lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import structlog

from adapters.channels.signal.config import Address, SignalSetup
from adapters.channels.signal.rpc import MAX_LINE_BYTES, Closed, LineRpc, SignalRpc
from adapters.channels.signal.rpc_http import HttpRpc

log = structlog.get_logger()

LOG_FILE = "signal-cli.log"
STOP_GRACE = 10.0  # seconds signal-cli gets to end by itself once its input is closed
CONNECT_TIMEOUT = 10.0


class CliMissing(Exception):
    """No signal-cli to start: ``configured`` is MOLTBOT_SIGNAL_CLI when it was set."""

    def __init__(self, configured: str | None) -> None:
        super().__init__(f"no signal-cli at {configured}" if configured else "no signal-cli on the PATH")
        self.configured = configured


class Unreachable(ConnectionError):
    """The daemon at the configured address does not take connections."""


def find_cli(configured: str | None, environ: Mapping[str, str]) -> str:
    """The signal-cli program to start; :class:`CliMissing` when there is none."""
    if configured is not None:
        found = shutil.which(configured, path=environ.get("PATH")) if os.sep not in configured else configured
        if found is None or not (os.path.isfile(found) and os.access(found, os.X_OK)):
            raise CliMissing(configured)
        return found
    found = shutil.which("signal-cli", path=environ.get("PATH"))
    if found is None:
        raise CliMissing(None)
    return found


def log_tail(folder: Path, lines: int = 1) -> str:
    """The last lines a started signal-cli logged ("" when none)."""
    try:
        text = (folder / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(kept[-lines:])[:300]


@contextlib.asynccontextmanager
async def open_daemon(
    setup: SignalSetup, folder: Path, environ: Mapping[str, str]
) -> AsyncIterator[SignalRpc]:
    """signal-cli's JSON-RPC for the block: the configured daemon, else a signal-cli started in
    ``folder``. :class:`CliMissing` or :class:`Unreachable` when there is none to talk to."""
    if setup.rpc is not None:
        async with _running(setup.rpc) as rpc:
            yield rpc
        return
    async with _started(find_cli(setup.cli, environ), folder, environ) as rpc:
        yield rpc


@contextlib.asynccontextmanager
async def _running(address: Address) -> AsyncIterator[SignalRpc]:
    if address.transport == "http":
        async with httpx.AsyncClient() as http:
            try:
                (
                    await http.get(f"{address.base_url}/api/v1/check", timeout=CONNECT_TIMEOUT)
                ).raise_for_status()
            except httpx.HTTPError as exc:
                raise Unreachable(f"the signal-cli daemon at {address}: {exc!r}") from None
            yield HttpRpc(http, address.base_url)
        return
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if address.transport == "unix":
                assert address.path is not None
                reader, writer = await asyncio.open_unix_connection(address.path, limit=MAX_LINE_BYTES)
            else:
                reader, writer = await asyncio.open_connection(
                    address.host, address.port, limit=MAX_LINE_BYTES
                )
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"the signal-cli daemon at {address}: {exc!r}") from None
    try:
        yield LineRpc(_SocketLines(reader, writer), name=f"the signal-cli daemon at {address}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class _SocketLines:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read_line(self) -> bytes:
        return await _line(self._reader)

    async def write_line(self, line: bytes) -> None:
        self._writer.write(line)
        await self._writer.drain()


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError as exc:  # a line over the limit: the stream cannot be read on
        raise Closed(f"a line longer than {MAX_LINE_BYTES} bytes: {exc}") from None


@contextlib.asynccontextmanager
async def _started(program: str, folder: Path, environ: Mapping[str, str]) -> AsyncIterator[SignalRpc]:
    await asyncio.to_thread(_own_folder, folder)
    with (folder / LOG_FILE).open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            program, "--config", str(folder), "jsonRpc", "--ignore-stories",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            env=dict(environ), limit=MAX_LINE_BYTES,
        )  # fmt: skip
    log.info("signal_cli_started", pid=process.pid)
    try:
        yield LineRpc(_Pipes(process), name="signal-cli")
    finally:
        await _stop(process)


def _own_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # the account's keys: its user's alone


class _Pipes:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None and process.stdin is not None
        self._out, self._in = process.stdout, process.stdin

    async def read_line(self) -> bytes:
        return await _line(self._out)

    async def write_line(self, line: bytes) -> None:
        try:
            self._in.write(line)
            await self._in.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Closed(f"signal-cli stopped: {exc}") from None


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End signal-cli: close its input (it finishes what it does and exits), else terminate
    it (also when the wait is cancelled: it never outlives the bridge)."""
    try:
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_GRACE)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.info("signal_cli_stopped", pid=process.pid, returncode=process.returncode)


def forget_folder(folder: Path) -> None:
    """Delete a started signal-cli's data (the linked account's keys) from this computer."""
    shutil.rmtree(folder, ignore_errors=True)
