"""`moltbot up` on an empty folder: real servers start, commands find them through the
data folder, a second `up` is refused, Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nats
import nats.errors
import psycopg
import pytest

from tests.conftest import stop_up

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(**settings: str) -> dict[str, str]:
    """This process's environment without any MOLTBOT_ setting, plus ``settings``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | settings


def _start_up(data: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`moltbot up` in the background, its output in ``log`` (a pipe nobody reads could fill)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "moltbot", "--data", str(data), "up"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _moltbot(data: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = _env()
    return subprocess.run(
        [sys.executable, "-m", "moltbot", "--data", str(data), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_up_runs_the_stack_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "stack"
    gateway_port = _free_port()
    env = _env(MOLTBOT_LOG_FORMAT="json", MOLTBOT_GATEWAY_PORT=str(gateway_port))
    log = tmp_path / "up.log"
    up = _start_up(data, env, log)
    try:
        stack_file = data / "stack.json"
        deadline = time.monotonic() + 90
        while not stack_file.exists():
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "stack.json never appeared"
            time.sleep(0.1)
        stack = json.loads(stack_file.read_text())
        assert stack["nats_url"].startswith("nats://127.0.0.1:")
        assert stack["database_url"].startswith("postgresql://")
        assert stack["gateway_url"] == f"http://127.0.0.1:{gateway_port}"
        with urllib.request.urlopen(f"{stack['gateway_url']}/healthz", timeout=10) as health:
            assert json.loads(health.read()) == {"status": "ok"}
        servers = _children(up.pid)
        assert len(servers) == 2  # nats-server and the postmaster
        _assert_locked_down(data, stack, log)
        while "Moltbot is running." not in log.read_text():
            assert time.monotonic() < deadline, "no banner"
            time.sleep(0.1)
        _assert_first_start_is_clean(log.read_text(), gateway_port)

        second = _moltbot(data, "up", timeout=30)
        assert second.returncode == 1
        assert "already running" in second.stderr

        generated = _moltbot(data, "events", "generate", "400")
        assert generated.returncode == 0, generated.stderr
        deadline = time.monotonic() + 60
        while True:
            status = _moltbot(data, "projections", "status")
            assert status.returncode == 0, status.stderr
            rows = [line.split() for line in status.stdout.splitlines()[1:]]
            # READ MODEL VERSION CHECKPOINT STREAM-LAST LAG RUNNING CONSUMER
            if rows and all(row[2] == "400" and row[4] == "0" and row[5] == "single" for row in rows):
                break
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        streams = _moltbot(data, "streams", "ls")
        assert "EVENTS" in streams.stdout and "400" in streams.stdout
        tail = _moltbot(data, "events", "tail", "--last", "3")
        assert len(tail.stdout.splitlines()) == 3
        assert tail.stdout.splitlines()[-1].split()[0] == "400"
    finally:
        stop_up(up, log)
    assert up.returncode in (0, 130)
    assert not (data / "stack.json").exists()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in servers)

    # Data survives: a restart on the same folder finds the log and read models again.
    restarted = _start_up(data, env, log)
    try:
        deadline = time.monotonic() + 90
        while not (data / "stack.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        status = _moltbot(data, "projections", "status")
        assert " 400 " in status.stdout
        servers = _children(restarted.pid)
    finally:
        stop_up(restarted, log, signal.SIGTERM)  # as a supervisor stops it: in order too
    assert restarted.returncode == 0, log.read_text()[-2000:]
    assert "stack_stopped" in log.read_text()
    assert not any(_alive(pid) for pid in servers)


def _assert_first_start_is_clean(output: str, gateway_port: int) -> None:
    """A fresh start logs nothing at warning level or above, and once ready says
    where the inbox is, where the data lives, which model answers and what to try next."""
    for line in output.splitlines():
        if line.startswith("{"):
            assert json.loads(line)["level"] not in ("warning", "error", "critical"), line
        else:  # the banner, and the web server's own log lines ("INFO - ...")
            assert not line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback")), line
    banner = output[output.index("Moltbot is running.") :]
    assert f"inbox  http://127.0.0.1:{gateway_port}" in banner
    assert "data   " in banner and "stack" in banner
    assert "agent  offline-1" in banner  # no MOLTBOT_ANTHROPIC_API_KEY in the test's environment
    assert "login --signup" in banner
    assert "mail   written to " in banner and "mail list" in banner  # no MOLTBOT_SMTP_URL: the outbox


def _assert_locked_down(data: Path, stack: dict[str, str], log: Path) -> None:
    """Neither server lets in a client without credentials; the product's database role is
    no superuser; the files naming the credentials are the owner's alone; no log shows them."""
    for secret in ("stack.json", "nats/credentials.json", "nats/nats-server.conf"):
        assert (data / secret).stat().st_mode & 0o777 == 0o600, secret
    assert stack["nats_user"] == "admin"

    async def check() -> None:
        with pytest.raises(nats.errors.Error):
            await nats.connect(stack["nats_url"], allow_reconnect=False, connect_timeout=2)
        admin = await nats.connect(
            stack["nats_url"], user=stack["nats_user"], password=stack["nats_password"], allow_reconnect=False
        )
        assert (await admin.jetstream().stream_info("EVENTS")).config.name == "EVENTS"
        await admin.close()
        database_url = stack["database_url"]
        password = database_url.split("@")[0].rsplit(":", 1)[1]
        with pytest.raises(psycopg.OperationalError):
            await psycopg.AsyncConnection.connect(database_url.replace(f":{password}@", "@"))
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            )
            assert await cur.fetchone() == (False, False, False)

    asyncio.run(check())
    assert stack["nats_password"] not in log.read_text()
    assert stack["database_url"] not in log.read_text()


def test_commands_without_a_stack_say_what_to_do(tmp_path: Path) -> None:
    result = _moltbot(tmp_path / "nothing-here", "projections", "status", timeout=30)
    assert result.returncode == 1
    assert "No running Moltbot stack" in result.stderr
    assert "moltbot up" in result.stderr


def test_help_lists_every_command() -> None:
    result = _moltbot(Path("."), "--help", timeout=30)
    for command in ("up", "streams", "events", "projections"):
        assert command in result.stdout
    events_help = _moltbot(Path("."), "events", "--help", timeout=30).stdout
    for action in ("import", "export", "tail", "generate"):
        assert action in events_help


def test_a_taken_gateway_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env(MOLTBOT_GATEWAY_PORT=str(port))
        result = subprocess.run(
            [sys.executable, "-m", "moltbot", "--data", str(tmp_path / "stack"), "up"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "MOLTBOT_GATEWAY_PORT" in result.stderr
    assert not (tmp_path / "stack" / "stack.json").exists()
