"""iMessage through the Personal Bridge, as a new user runs it: a pairing code from the inbox,
``moltbot bridge pair`` and ``moltbot bridge run`` as real processes, a schema-accurate
chat.db and a fake ``osascript`` (the only parts that stand in for the Mac).

New rows reach the inbox (text kept only in ``attributedBody`` included), a reply reaches
osascript exactly once and shows sent, killing the bridge or the gateway mid-traffic loses
and doubles nothing, and a revoked device stops with a clear message."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.embedded.processes import free_port
from domain.plans import Catalog
from moltbot.roles import run_connectors, run_outbox
from tests.conftest import roomy_catalog, roomy_plans_file
from tests.fakes import osascript as fake_osascript
from tests.fakes.imessage_chatdb import Chat, ChatDBBuilder
from tests.integration.conftest import Stack
from tests.integration.test_bridge_pairing import device_list, pairing_code, until_device
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about iMessage on a device; the limits: test_plan_limits.py


pytestmark = pytest.mark.slow


@dataclass
class Mac:
    """The device side of one test: its chat.db, fake osascript and bridge folder."""

    db: ChatDBBuilder
    osascript: Path
    sent_log: Path
    data: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MOLTBOT_IMESSAGE_DB": str(self.db.path),
            "MOLTBOT_OSASCRIPT": str(self.osascript),
            fake_osascript.LOG_ENV: str(self.sent_log),
            "MOLTBOT_LOG_FORMAT": "json",
        }

    def sends(self) -> list[list[str]]:
        return [fake_osascript.script_arguments(argv) for argv in fake_osascript.recorded(self.sent_log)]


@pytest.fixture
def mac(tmp_path: Path) -> Iterator[Mac]:
    builder = ChatDBBuilder(tmp_path / "chat.db", start=datetime.now(UTC) - timedelta(days=1))
    yield Mac(
        builder, fake_osascript.install(tmp_path / "bin"), tmp_path / "osascript.log", tmp_path / "bridge"
    )
    builder.close()


async def moltbot(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltbot", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


@pytest.fixture
async def bridge_runs(mac: Mac) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Bridge processes a test starts, killed at the end if still running."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start_bridge(mac: Mac, runs: list[asyncio.subprocess.Process]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltbot", "bridge", "run", "--data", str(mac.data), env=mac.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    runs.append(process)
    return process


async def paired(api: httpx.AsyncClient, account: dict[str, str], mac: Mac) -> str:
    code = await pairing_code(api, account)
    status, out = await moltbot(
        "bridge", "pair", code, "--gateway", str(api.base_url), "--name", "Ada's Mac",
        "--data", str(mac.data),
        env=mac.env(),
    )  # fmt: skip
    assert status == 0, out
    assert "Paired Ada's Mac" in out
    assert oct((mac.data / "device.key").stat().st_mode & 0o777) == "0o600"
    return out.split(" as ", 1)[1].split(" ", 1)[0]


async def conversations(api: httpx.AsyncClient, account: dict[str, str]) -> list[dict[str, Any]]:
    response = await api.get("/v1/conversations", headers=_auth(account))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def messages(
    api: httpx.AsyncClient, account: dict[str, str], conversation_id: str
) -> list[dict[str, Any]]:
    response = await api.get(
        f"/v1/conversations/{conversation_id}/messages", headers=_auth(account), params={"limit": 200}
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def until_texts(
    api: httpx.AsyncClient, account: dict[str, str], wanted: set[str], timeout: float = 30.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The iMessage conversation once it holds every text in ``wanted``."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[dict[str, Any]] = []
    while asyncio.get_running_loop().time() < deadline:
        for conversation in await conversations(api, account):
            if conversation["channel"] == "imessage":
                seen = await messages(api, account, conversation["conversation_id"])
                if wanted <= {m["text"] for m in seen}:
                    # The list was read before the messages: read it again, as of them.
                    [fresh] = [
                        c
                        for c in await conversations(api, account)
                        if c["conversation_id"] == conversation["conversation_id"]
                    ]
                    return fresh, seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {wanted}: {[m['text'] for m in seen]}")


def hello_from(mac: Mac, chat: Chat, text: str) -> None:
    mac.db.message(chat, text)  # text NULL, the words in attributedBody (as on current macOS)


async def talking(
    api: httpx.AsyncClient, mac: Mac, runs: list[asyncio.subprocess.Process], email: str
) -> tuple[dict[str, str], Chat, asyncio.subprocess.Process]:
    """A new account whose paired bridge runs and has brought one message in."""
    account = await _signup(api, email)
    chat = mac.db.direct_chat("+15557654321")
    await paired(api, account, mac)
    bridge = await start_bridge(mac, runs)
    hello_from(mac, chat, "first")
    await until_texts(api, account, {"first"})
    return account, chat, bridge


async def test_a_new_user_pairs_a_mac_reads_and_replies_then_revokes(
    api: httpx.AsyncClient, mac: Mac, bridge_runs: list[asyncio.subprocess.Process]
) -> None:
    account = await _signup(api, "imessage@example.com")
    chat = mac.db.direct_chat("+15551234567")
    hello_from(mac, chat, "from last week")  # history: backfilled, not unread
    device_id = await paired(api, account, mac)
    bridge = await start_bridge(mac, bridge_runs)

    conversation, _ = await until_texts(api, account, {"from last week"})
    assert conversation["unread_count"] == 0
    started = asyncio.get_running_loop().time()
    hello_from(mac, chat, "Are we still on for Friday? 🎉")
    conversation, _ = await until_texts(api, account, {"Are we still on for Friday? 🎉"})
    print(f"chat.db row to inbox: {asyncio.get_running_loop().time() - started:.2f}s")
    assert conversation["unread_count"] == 1

    [listed] = await device_list(api, account)
    assert (listed["device_id"], listed["state"]) == (device_id, "online")
    assert "imessage.send" in listed["capabilities"]
    [connection] = listed["connections"]
    assert (connection["channel"], connection["mode"], connection["state"]) == (
        "imessage",
        "bridge",
        "connected",
    )

    reply = 'Yes! "7pm" \\ see you\nthere — 👋'
    sent = await api.post(
        "/v1/messages", json={"conversation_id": conversation["conversation_id"], "text": reply},
        headers={**_auth(account), "Idempotency-Key": "reply-1"},
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["message_id"]
    for _ in range(300):
        mine = [
            m
            for m in await messages(api, account, conversation["conversation_id"])
            if m["message_id"] == message_id
        ]
        if mine and mine[0]["status"] == "sent":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the reply never showed sent: {mine}")
    assert mac.sends() == [[chat.guid, reply]]

    revoked = await api.delete(f"/v1/devices/{device_id}", headers=_auth(account))
    assert revoked.status_code == 202
    out, _ = await asyncio.wait_for(bridge.communicate(), 30)
    assert bridge.returncode == 3
    assert "This device was revoked" in out.decode()
    assert not (mac.data / "device.key").exists()
    await until_device(api, account, device_id, "revoked")


async def test_killing_the_bridge_mid_traffic_loses_and_doubles_nothing(
    api: httpx.AsyncClient, mac: Mac, bridge_runs: list[asyncio.subprocess.Process]
) -> None:
    account, chat, bridge = await talking(api, mac, bridge_runs, "imessage-kill@example.com")

    texts = [f"burst {n}" for n in range(60)]
    for n, text in enumerate(texts):
        hello_from(mac, chat, text)
        if n == 30:
            bridge.send_signal(signal.SIGKILL)
            await bridge.wait()
    bridge = await start_bridge(mac, bridge_runs)
    _, seen = await until_texts(api, account, set(texts), timeout=60)
    counted = [m["text"] for m in seen if m["text"].startswith("burst ")]
    assert sorted(counted) == sorted(texts), "each message exactly once"


async def test_a_send_waits_for_an_offline_device_and_is_carried_out_once(
    api: httpx.AsyncClient, mac: Mac, bridge_runs: list[asyncio.subprocess.Process]
) -> None:
    account = await _signup(api, "imessage-offline@example.com")
    chat = mac.db.direct_chat("+15550001111")
    device_id = await paired(api, account, mac)
    bridge = await start_bridge(mac, bridge_runs)
    hello_from(mac, chat, "ping me later")
    conversation, _ = await until_texts(api, account, {"ping me later"})
    bridge.send_signal(signal.SIGKILL)
    await bridge.wait()
    await until_device(api, account, device_id, "offline")

    sent = await api.post(
        "/v1/messages", json={"conversation_id": conversation["conversation_id"], "text": "later it is"},
        headers=_auth(account),
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    await asyncio.sleep(1.0)
    assert mac.sends() == []  # nobody to hand it to yet
    await start_bridge(mac, bridge_runs)
    for _ in range(600):  # the connector looks again every 30 s at most
        if mac.sends():
            break
        await asyncio.sleep(0.1)
    assert mac.sends() == [[chat.guid, "later it is"]]


@pytest.fixture
async def gateway_process(stack: Stack, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    """The gateway as its own process (so it can be killed), with the other roles in this one."""
    gateway = GatewayProcess(stack, tmp_path / "gateway-data", free_port())
    roles = [
        asyncio.create_task(run_outbox(stack.roles)),
        asyncio.create_task(run_connectors(stack.roles, stack.spec)),
    ]
    async with stack.projections():
        await gateway.start()
        try:
            yield gateway
        finally:
            await gateway.kill()
            for role in roles:
                role.cancel()
            await asyncio.gather(*roles, return_exceptions=True)


@dataclass
class GatewayProcess:
    stack: Stack
    data: Path
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            **os.environ,
            "MOLTBOT_NATS_URL": self.stack.nats_url,
            "MOLTBOT_DATABASE_URL": self.stack.database_url,
            **self.stack.vault_environ(),
            "MOLTBOT_LOG_FORMAT": "json",
            "MOLTBOT_PLANS_FILE": str(roomy_plans_file(self.data)),  # as the in-process gateway's
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "moltbot", "--data", str(self.data), "gateway", "--port", str(self.port),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError("the gateway process did not start")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


async def test_killing_the_gateway_mid_traffic_loses_and_doubles_nothing(
    gateway_process: GatewayProcess, mac: Mac, bridge_runs: list[asyncio.subprocess.Process]
) -> None:
    async with httpx.AsyncClient(base_url=gateway_process.url, timeout=30) as api:
        account, chat, _ = await talking(api, mac, bridge_runs, "imessage-gateway-kill@example.com")

        texts = [f"through a crash {n}" for n in range(60)]
        for n, text in enumerate(texts):
            hello_from(mac, chat, text)
            if n == 20:
                await asyncio.sleep(0.3)  # some of the burst in flight
                await gateway_process.kill()
        await gateway_process.start()
        _, seen = await until_texts(api, account, set(texts), timeout=90)
        counted = [m["text"] for m in seen if m["text"].startswith("through a crash ")]
        assert sorted(counted) == sorted(texts), "each message exactly once"


async def test_a_mac_that_may_not_control_messages_says_what_to_allow(
    api: httpx.AsyncClient,
    mac: Mac,
    bridge_runs: list[asyncio.subprocess.Process],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = await _signup(api, "imessage-automation@example.com")
    chat = mac.db.direct_chat("+15554445555")
    await paired(api, account, mac)
    monkeypatch.setenv(fake_osascript.FAIL_ENV, "1743")  # macOS: "Not authorized to send Apple events"
    await start_bridge(mac, bridge_runs)
    hello_from(mac, chat, "can you answer?")
    conversation, _ = await until_texts(api, account, {"can you answer?"})
    sent = await api.post(
        "/v1/messages", json={"conversation_id": conversation["conversation_id"], "text": "trying"},
        headers=_auth(account),
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    for _ in range(300):
        [device] = await device_list(api, account)
        [connection] = device["connections"]
        if connection["state_code"] == "automation_permission_required":
            break
        await asyncio.sleep(0.1)
    assert (connection["state"], connection["state_code"]) == (
        "action_required",
        "automation_permission_required",
    )
    assert "Automation" in connection["state_message"]


async def test_a_mistyped_code_keeps_the_pairing_the_device_has(api: httpx.AsyncClient, mac: Mac) -> None:
    account = await _signup(api, "imessage-repair@example.com")
    await paired(api, account, mac)
    before = {name: (mac.data / name).read_bytes() for name in ("device.key", "device.json")}
    status, out = await moltbot(
        "bridge", "pair", "AAAA-AAAA", "--gateway", str(api.base_url), "--data", str(mac.data), env=mac.env()
    )
    assert status == 1
    assert "pairing refused (400)" in out and "not valid" in out
    assert {name: (mac.data / name).read_bytes() for name in before} == before


async def test_a_photo_and_a_long_message_come_through_the_tunnel(
    api: httpx.AsyncClient,
    mac: Mac,
    bridge_runs: list[asyncio.subprocess.Process],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = await _signup(api, "imessage-files@example.com")
    chat = mac.db.direct_chat("+15556667777")
    home = mac.data.parent / "home"
    monkeypatch.setenv("HOME", str(home))  # where the bridge finds ~/Library/Messages/Attachments
    await paired(api, account, mac)
    await start_bridge(mac, bridge_runs)
    photo = bytes(range(256)) * 400  # 100 KiB: more than one WebSocket message can carry
    message = mac.db.message(chat, "look \ufffc", has_attachments=True)
    filename = mac.db.attachment(message, "IMG_0001.jpeg", mime="image/jpeg", size=len(photo))
    stored = home / filename.removeprefix("~/")
    stored.parent.mkdir(parents=True)
    stored.write_bytes(photo)
    long_text = "🎉 " * 9000  # 27 KB of text in one message
    hello_from(mac, chat, long_text)

    conversation, _ = await until_texts(api, account, {"look ", long_text})
    for _ in range(300):
        [shown] = [
            m for m in await messages(api, account, conversation["conversation_id"]) if m["text"] == "look "
        ]
        if shown["media"]:
            break
        await asyncio.sleep(0.1)
    [media] = shown["media"]
    assert (media["mime"], media["size"]) == ("image/jpeg", len(photo))
    downloaded = await api.get(media["url"], headers=_auth(account))
    assert downloaded.status_code == 200
    assert downloaded.content == photo
