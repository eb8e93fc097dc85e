"""The `moltbot` API client commands against a real gateway: login, status, listing (and
what an empty list says), and `moltbot tail` resuming after the gateway restarts, with no gap
and no repeat; the client's event stream skips what carries no sequence of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pyotp
import pytest

from adapters.embedded.processes import free_port
from adapters.vault.cipher import Keyring
from moltbot import client
from moltbot.roles import run_connectors, run_gateway, run_outbox
from tests.integration.conftest import REPO_ROOT, Stack
from tests.integration.test_gateway import _conversation_with_messages

pytestmark = pytest.mark.slow


class Gateway:
    def __init__(self, stack: Stack, key_file: Path, keyring: Keyring) -> None:
        self.stack = stack
        self.key_file = key_file
        self.keyring = keyring
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
                keyring=self.keyring,
            )
        )
        await asyncio.wait_for(started.wait(), 20)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@pytest.fixture
async def gateway(stack: Stack, tmp_path: Path, keyring: Keyring) -> AsyncIterator[Gateway]:
    server = Gateway(stack, tmp_path / "jwt.pem", keyring)
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

    empty = await _moltbot(tmp_path, "conversations", "list")
    assert empty.returncode == 0, empty.stderr
    [hint] = empty.stdout.splitlines()
    assert hint.startswith(f"No conversations yet. Try your website chat: {gateway.url}/webchat/wk_")
    async with httpx.AsyncClient() as http:
        assert (await http.get(hint.rsplit(" ", 1)[-1])).status_code == 200  # the link works

    conversation = await _conversation_with_messages(stack, tenant_id, 3, words="see you at lunch")
    await stack.wait_caught_up()
    status = await _moltbot(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert "cli@example.com" in status.stdout
    assert "unread    1 conversations" in status.stdout
    usage = await _moltbot(tmp_path, "usage")
    assert usage.returncode == 0, usage.stderr
    assert "plan      Free (no charge), billing off" in usage.stdout
    assert "  channels         0 of 2" in usage.stdout
    assert "AI        $0.00 this month of $2.00" in usage.stdout
    assert "upgrade   pro" in usage.stdout
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


async def test_the_event_stream_skips_deltas_and_keep_alives_and_resumes_after_the_last_id(
    tmp_path: Path,
) -> None:
    # As the gateway sends them: live agent deltas and keep-alives set no id, and SSE repeats
    # the last id on them; the connection drops after seq 2.
    responses = [
        b'id: 1\nevent: message.received\ndata: {"n": 1}\n\n'
        b'event: agent.delta\ndata: {"delta": "Hi"}\n\n'
        b": keep-alive\n\n"
        b'id: 2\nevent: message.sent\ndata: {"n": 2}\n\n',
        b'event: agent.delta\ndata: {"delta": "!"}\n\nid: 3\nevent: message.received\ndata: {"n": 3}\n\n',
    ]
    asked_after: list[str | None] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:] if line)
        asked_after.append(headers.get("last-event-id"))
        body = responses[min(len(asked_after), len(responses)) - 1]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + body)
        await writer.drain()
        if len(asked_after) >= len(responses):
            await reader.read()  # the last connection stays open until the client goes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = client.Session(
        gateway_url=f"http://127.0.0.1:{port}", access_token="a", refresh_token="r",
        tenant_id="t_1", user_id="u_1", email="sse@example.com",
    )  # fmt: skip
    async with (
        server,
        client.Api(session, tmp_path / "session.json") as api,
        contextlib.aclosing(api.events(None, None)) as stream,
    ):
        seen = [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
    assert seen == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]
    assert asked_after == [None, "2"]


async def test_login_with_two_factor_sign_in(gateway: Gateway, tmp_path: Path) -> None:
    signup = await _signup(tmp_path, gateway, "cli-2fa@example.com")
    assert signup.returncode == 0, signup.stderr
    access = json.loads((tmp_path / "config" / "moltbot" / "session.json").read_text())["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        secret = (await http.post("/v1/me/2fa", headers=headers)).json()["secret"]
        confirmed = await http.post(
            "/v1/me/2fa/confirm", headers=headers, json={"code": pyotp.TOTP(secret).now()}
        )
    recovery = confirmed.json()["recovery_codes"]

    login = ["login", "--email", "cli-2fa@example.com", "--password-stdin", "--gateway", gateway.url]
    asked = await _moltbot(tmp_path, *login, stdin="a long enough password\n")
    assert asked.returncode == 1
    assert "pass --otp CODE" in asked.stderr
    wrong = await _moltbot(tmp_path, *login, "--otp", "000000", stdin="a long enough password\n")
    assert wrong.returncode == 1
    assert "already used" in wrong.stderr
    signed_in = await _moltbot(tmp_path, *login, "--otp", recovery[0], stdin="a long enough password\n")
    assert signed_in.returncode == 0, signed_in.stderr
    assert "Logged in" in signed_in.stdout
