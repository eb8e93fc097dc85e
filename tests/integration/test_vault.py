"""The credential vault on a real PostgreSQL: secrets round-trip, stay bound to their
connection, rotate to a new key one row at a time, and never appear in clear in the
table, the logs or the CLI's output."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.postgres.database import Connection
from adapters.postgres.database import connection as pg_connection
from adapters.vault.cipher import CannotDecrypt, Keyring, load_keyring
from adapters.vault.store import CredentialStore, RotationReport, ensure_schema
from tests.integration.conftest import REPO_ROOT

K1, K2, K_LOST = bytes(range(32)), bytes(range(32, 64)), bytes(range(64, 96))
OLD = Keyring({"k1": K1}, "k1")
NEW = Keyring({"k1": K1, "k2": K2}, "k2")
TOKEN = "7654321:AAH-very-secret-bot-token"  # looked for in every output


def _keys_env(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in pairs)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Connection]:
    async with pg_connection(database_url) as connection:
        await ensure_schema(connection)
        yield connection


async def _rows(conn: Connection) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM vault.credentials ORDER BY connection_id")
    return await cur.fetchall()


async def _key_ids(conn: Connection) -> dict[str, str]:
    return {row["connection_id"]: row["key_id"] for row in await _rows(conn)}


async def test_put_get_replace_delete(conn: Connection) -> None:
    await ensure_schema(conn)  # idempotent
    store = CredentialStore(conn, OLD)
    assert await store.get("t_1", "cn_tg_1") is None

    await store.put("t_1", "cn_tg_1", "telegram_bot", {"bot_token": TOKEN})
    assert await store.get("t_1", "cn_tg_1") == {"bot_token": TOKEN}
    assert await store.get("t_2", "cn_tg_1") is None  # another tenant's connection id

    await store.put("t_1", "cn_tg_1", "telegram_bot", {"bot_token": "rotated-by-botfather"})
    assert await store.get("t_1", "cn_tg_1") == {"bot_token": "rotated-by-botfather"}
    assert len(await _rows(conn)) == 1

    assert await store.delete("cn_tg_1") is True
    assert await store.get("t_1", "cn_tg_1") is None
    assert await store.delete("cn_tg_1") is False


async def test_a_ciphertext_copied_to_another_connection_does_not_decrypt(conn: Connection) -> None:
    store = CredentialStore(conn, OLD)
    await store.put("t_1", "cn_victim", "slack_oauth", {"access_token": TOKEN})
    await store.put("t_1", "cn_attacker", "slack_oauth", {"access_token": "mine"})
    await conn.execute(
        "UPDATE vault.credentials SET (key_id, nonce, ciphertext) ="
        " (SELECT key_id, nonce, ciphertext FROM vault.credentials WHERE connection_id = 'cn_victim')"
        " WHERE connection_id = 'cn_attacker'"
    )
    with pytest.raises(CannotDecrypt):
        await store.get("t_1", "cn_attacker")


async def test_rotate_reseals_every_row_under_the_current_key(conn: Connection) -> None:
    secrets = {f"cn_{i}": {"bot_token": f"{TOKEN}-{i}"} for i in range(5)}
    for connection_id, secret in secrets.items():
        await CredentialStore(conn, OLD).put("t_1", connection_id, "telegram_bot", secret)
    before = {row["connection_id"]: bytes(row["ciphertext"]) for row in await _rows(conn)}
    progress: list[tuple[int, int]] = []

    report = await CredentialStore(conn, NEW).rotate(batch=2, progress=lambda *p: progress.append(p))

    assert report == RotationReport(key_id="k2", rotated=5, already_current=0, failed=[])
    assert progress[-1] == (5, 5)
    assert set((await _key_ids(conn)).values()) == {"k2"}
    after = {row["connection_id"]: bytes(row["ciphertext"]) for row in await _rows(conn)}
    assert all(after[c] != before[c] for c in secrets)
    only_new = CredentialStore(conn, Keyring({"k2": K2}, "k2"))  # the old key is no longer needed
    for connection_id, secret in secrets.items():
        assert await only_new.get("t_1", connection_id) == secret

    again = await CredentialStore(conn, NEW).rotate(batch=2)
    assert again == RotationReport(key_id="k2", rotated=0, already_current=5, failed=[])


async def test_rotate_reports_rows_it_cannot_open_and_goes_on(conn: Connection) -> None:
    await CredentialStore(conn, Keyring({"lost": K_LOST}, "lost")).put("t_1", "cn_b", "x", {"t": TOKEN})
    for connection_id in ("cn_a", "cn_c"):
        await CredentialStore(conn, OLD).put("t_1", connection_id, "x", {"t": TOKEN})

    report = await CredentialStore(conn, NEW).rotate(batch=1)

    assert report == RotationReport(key_id="k2", rotated=2, already_current=0, failed=["cn_b"])
    assert await _key_ids(conn) == {"cn_a": "k2", "cn_b": "lost", "cn_c": "k2"}


async def test_the_secret_is_never_logged_nor_stored_in_clear(
    conn: Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    with capture_logs() as logs:
        await CredentialStore(conn, OLD).put("t_1", "cn_tg_1", "telegram_bot", {"bot_token": TOKEN})
        await CredentialStore(conn, NEW).rotate()
        assert await CredentialStore(conn, NEW).get("t_1", "cn_tg_1") == {"bot_token": TOKEN}
        await CredentialStore(conn, Keyring({"k3": K_LOST}, "k3")).rotate()  # fails, and logs why

    events = [entry["event"] for entry in logs]
    assert events[:2] == ["credential_stored", "credential_rotated"]
    assert "credential_rotation_failed" in events
    assert any(entry.get("connection_id") == "cn_tg_1" for entry in logs)
    captured = capsys.readouterr()
    for text in (repr(logs), captured.out, captured.err):
        assert TOKEN not in text
        assert "very-secret" not in text
        assert base64.b64encode(K1).decode() not in text

    cur = await conn.execute(
        "SELECT convert_to(t::text, 'UTF8') AS whole FROM vault.credentials t"  # every column, as text
    )
    (row,) = await cur.fetchall()
    assert TOKEN.encode() not in bytes(row["whole"])
    for stored in (await _rows(conn))[0].values():
        assert TOKEN.encode() not in (stored if isinstance(stored, bytes) else str(stored).encode())


# --- the CLI ----------------------------------------------------------------------------


def _env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """Only the database: no NATS URL, no stack file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MOLTBOT_DATA_DIR": str(tmp_path / "data"),
        "MOLTBOT_LOG_FORMAT": "json",
        **variables,
    }


async def _moltbot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "moltbot", "vault", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_rotate_with_keys_from_the_environment(
    conn: Connection, database_url: str, tmp_path: Path
) -> None:
    for connection_id in ("cn_1", "cn_2"):
        await CredentialStore(conn, OLD).put("t_1", connection_id, "telegram_bot", {"bot_token": TOKEN})
    env = _env(
        tmp_path,
        MOLTBOT_DATABASE_URL=database_url,
        MOLTBOT_VAULT_KEYS=_keys_env(("k1", K1), ("k2", K2)),
        MOLTBOT_VAULT_KEY_ID="k2",
    )

    first = await _moltbot(env, "rotate")
    assert first.returncode == 0, first.stderr
    assert "Re-encrypted 2 credentials under key k2 (0 already current, 0 failed);" in first.stdout
    second = await _moltbot(env, "rotate", "--quiet")
    assert second.returncode == 0, second.stderr
    assert "Re-encrypted 0 credentials under key k2 (2 already current, 0 failed);" in second.stdout

    assert await _key_ids(conn) == {"cn_1": "k2", "cn_2": "k2"}
    for output in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert TOKEN not in output
        assert base64.b64encode(K2).decode() not in output
    assert not (tmp_path / "data" / "vault").exists()  # keys from the environment: no key file

    printed = await _moltbot(env, "new-key")  # with environment keys: only prints an entry
    assert printed.returncode == 0, printed.stderr
    key_id, _, encoded = printed.stdout.strip().partition(":")
    assert len(base64.b64decode(encoded)) == 32
    assert f"MOLTBOT_VAULT_KEY_ID={key_id}" in printed.stderr


async def test_cli_rotation_with_the_local_key_file(
    conn: Connection, database_url: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, MOLTBOT_DATABASE_URL=database_url)
    key_file = tmp_path / "data" / "vault" / "keys.json"
    first_keyring = load_keyring(keys=None, current=None, key_file=key_file)  # as a first start would
    await CredentialStore(conn, first_keyring).put("t_1", "cn_1", "telegram_bot", {"bot_token": TOKEN})

    added = await _moltbot(env, "new-key")
    assert added.returncode == 0, added.stderr
    new_id = load_keyring(keys=None, current=None, key_file=key_file).current_id
    assert new_id != first_keyring.current_id
    assert f"Added key {new_id}" in added.stdout

    rotated = await _moltbot(env, "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert f"Re-encrypted 1 credentials under key {new_id} (0 already current, 0 failed);" in rotated.stdout
    assert await _key_ids(conn) == {"cn_1": new_id}


async def test_cli_rotate_fails_when_a_key_is_missing(
    conn: Connection, database_url: str, tmp_path: Path
) -> None:
    await CredentialStore(conn, OLD).put("t_1", "cn_1", "telegram_bot", {"bot_token": TOKEN})
    env = _env(tmp_path, MOLTBOT_DATABASE_URL=database_url, MOLTBOT_VAULT_KEYS=_keys_env(("k2", K2)))

    result = await _moltbot(env, "rotate")

    assert result.returncode == 1
    assert "cn_1: cannot decrypt with the configured keys" in result.stderr
    assert "Re-encrypted 0 credentials under key k2 (0 already current, 1 failed);" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


async def test_cli_rotate_needs_a_database(tmp_path: Path) -> None:
    result = await _moltbot(_env(tmp_path), "rotate")
    assert result.returncode == 1
    assert "set MOLTBOT_DATABASE_URL" in result.stderr
    assert not (tmp_path / "data" / "vault").exists()
