"""The `moltbot` API client commands against a real gateway: login, status, listing,
and `moltbot tail` resuming after the gateway restarts, with no gap and no repeat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.embedded.processes import free_port
from moltbot.roles import run_connectors, run_gateway, run_outbox
from tests.integration.conftest import REPO_ROOT, Stack
from tests.integration.test_gateway import _conversation_with_messages

pytestmark = pytest.mark.slow


class Gateway:
    def __init__(self, stack: Stack, key_file: Path) -> None:
        self.stack = stack
        self.key_file = key_file
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        started = asyncio.Event()
        self._task = asyncio.create_task(
            run_gateway(
                self.stack.roles,
                self.stack.database_url,
                key_file=self.key_file,
                port=self.port,
                started=started,
            )
        )
        await asyncio.wait_for(started.wait(), 20)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@pytest.fixture
async def gateway(stack: Stack, tmp_path: Path) -> AsyncIterator[Gateway]:
    server = Gateway(stack, tmp_path / "jwt.pem")
    sending = [
        asyncio.create_task(run_outbox(stack.roles)),
        asyncio.create_task(run_connectors(stack.roles, stack.spec, ["webchat"])),
    ]
    async with stack.projections():
        await server.start()
        yield server
        await server.stop()
    for task in sending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _env(tmp_path: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MOLTBOT_LOG_FORMAT": "json",
    }


async def _moltbot(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "moltbot", *args],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _signup(tmp_path: Path, gateway: Gateway, email: str) -> subprocess.CompletedProcess[str]:
    return await _moltbot(
        tmp_path, "login", "--signup", "--email", email, "--password-stdin", "--gateway", gateway.url,
        stdin="a long enough password\n",
    )  # fmt: skip


async def test_login_status_and_listing(gateway: Gateway, stack: Stack, tmp_path: Path) -> None:
    signup = await _signup(tmp_path, gateway, "cli@example.com")
    assert signup.returncode == 0, signup.stderr
    assert "Logged in" in signup.stdout
    session_file = tmp_path / "config" / "moltbot" / "session.json"
    assert oct(session_file.stat().st_mode & 0o777) == "0o600"
    tenant_id = json.loads(session_file.read_text())["tenant_id"]

    conversation = await _conversation_with_messages(stack, tenant_id, 3, words="see you at lunch")
    await stack.wait_caught_up()
    status = await _moltbot(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert "cli@example.com" in status.stdout
    assert "unread    1 conversations" in status.stdout
    listing = await _moltbot(tmp_path, "conversations", "list")
    assert "see you at lunch number 2" in listing.stdout
    channels = await _moltbot(tmp_path, "channels", "list")
    assert "webchat    connected" in channels.stdout  # every tenant starts with its website chat

    sent = await _moltbot(
        tmp_path, "send", "--conversation", conversation, "--idempotency-key", "k1", "On", "my", "way"
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == "Sent."
    again = await _moltbot(
        tmp_path, "send", "--conversation", conversation, "--idempotency-key", "k1", "On", "my", "way"
    )
    assert again.stdout.splitlines()[0] == sent.stdout.splitlines()[0]  # same message, same seq
    listing = await _moltbot(tmp_path, "conversations", "list")
    assert "On my way" in listing.stdout
    missing = await _moltbot(tmp_path, "send", "--conversation", "c_nope", "hello")
    assert missing.returncode == 1
    assert "No conversation c_nope" in missing.stderr

    wrong = await _moltbot(
        tmp_path, "login", "--email", "cli@example.com", "--password-stdin", "--gateway", gateway.url,
        stdin="not the password\n",
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "E-mail or password is wrong" in wrong.stderr


async def test_tail_resumes_after_the_gateway_restarts(
    gateway: Gateway, stack: Stack, tmp_path: Path
) -> None:
    signup = await _signup(tmp_path, gateway, "tail@example.com")
    assert signup.returncode == 0, signup.stderr
    tenant_id = json.loads((tmp_path / "config" / "moltbot" / "session.json").read_text())["tenant_id"]
    await _conversation_with_messages(stack, tenant_id, 5)

    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltbot", "tail", "--since", "1", "--json",
        cwd=REPO_ROOT, env=_env(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert tail.stdout is not None
    seen: list[int] = []

    async def read_until(count: int) -> None:
        assert tail.stdout is not None
        while len(seen) < count:
            line = await asyncio.wait_for(tail.stdout.readline(), 30)
            event = json.loads(line)
            assert event["tenant_id"] == tenant_id
            seen.append(event["seq"])

    try:
        await read_until(9)  # tenant.created, user.registered, member.added, conversation + 5 messages
        await gateway.stop()
        await _conversation_with_messages(stack, tenant_id, 4)  # while the gateway is down
        await gateway.start()
        await read_until(14)
    finally:
        tail.terminate()
        await tail.wait()
    assert seen == sorted(set(seen))
    assert len(seen) == 14
