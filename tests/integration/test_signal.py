"""Signal on the Personal Bridge, against a local stand-in of signal-cli's JSON-RPC daemon
(tests/fakes/signal_rpc.py, the same wire format): connected from the inbox to a device, the
QR code reaches the owner on LIVE (never the log), the phone scans it, a message comes in
(delivered twice, stored once) with its photo, the agent's reply goes out quoting it, and a
device removed on the phone asks to link again. Then the parts around it: the signal-cli the
bridge starts itself, a missing or failing signal-cli, codes nobody scans, and daemons
reached over HTTP, a UNIX socket, or holding one account.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.bridge.device import Bridge
from adapters.bridge.identity import Pairing
from adapters.bridge.local_store import LocalStore
from adapters.channels.signal.config import SignalSetup, parse_address
from adapters.channels.signal.device import SignalDeviceChannel
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.fakes import signal_cli as fake_cli
from tests.fakes.signal_envelopes import ALICE, ME, attachment, data_message, envelope, sent_to
from tests.fakes.signal_rpc import FakeSignal, fake_signal
from tests.integration.conftest import Stack, send_drafts
from tests.integration.test_agent import _until
from tests.integration.test_bridge_pairing import device_list, paired_device
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_whatsapp import _first_live_qr, _state

ACCOUNT = ME.number or ""


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about Signal; the limits: test_plan_limits.py


@pytest.fixture
async def daemon() -> AsyncIterator[FakeSignal]:
    async with fake_signal() as fake:
        yield fake


async def test_signal_links_by_qr_receives_and_replies_through_the_personal_bridge(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path, daemon: FakeSignal, assistant: None
) -> None:
    owner = await _signup(api, "signal-bridge@example.com")
    device, key = await paired_device(api, owner)
    store = LocalStore(tmp_path / "bridge")
    setup = SignalSetup(rpc=parse_address(daemon.tcp_address))

    def signal(connection_id: str, show: Any) -> SignalDeviceChannel:
        return SignalDeviceChannel(
            tenant_id=device["tenant_id"], device_id=device["device_id"], connection_id=connection_id,
            data_dir=tmp_path / "bridge", setup=setup, environ={}, show=show, first_backoff=0.2,
            check_every=0.3,
        )  # fmt: skip

    pairing = Pairing(
        gateway=str(api.base_url), tenant_id=device["tenant_id"], device_id=device["device_id"],
        name=device["name"], fingerprint=device["fingerprint"],
    )  # fmt: skip
    bridge = Bridge(pairing, key, store, [], version="test", platform="test", on_demand={"signal": signal})
    running = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(bridge.connected.wait(), 15)

        async def offers_signal() -> bool:
            return any("signal.read" in d["capabilities"] for d in await device_list(api, owner))

        await _until(offers_signal, "the device to offer Signal")
        listed = (await api.get("/v1/channels", headers=_auth(owner))).json()
        assert not [c for c in listed if c["channel"] == "signal"]  # offered is not connected
        nowhere = await api.post("/v1/channels/signal/connect", json={"device_id": " "}, headers=_auth(owner))
        assert (nowhere.status_code, nowhere.json()["field"]) == (400, "device_id")

        # The QR code: from the device, through the tunnel, to the owner's screens only.
        live = asyncio.create_task(_first_live_qr(api, owner))
        await asyncio.sleep(0.5)  # the stream is open before the code comes
        body = {"device_id": device["device_id"]}
        connected = await api.post("/v1/channels/signal/connect", json=body, headers=_auth(owner))
        assert connected.status_code == 202, connected.text
        connection_id = connected.json()["connection_id"]
        waiting = await _state(api, owner, connection_id, "link_required")
        assert (waiting["state"], waiting["suggested_action"]) == ("connecting", "scan_qr")
        uri = await daemon.waiting_link()
        assert uri.startswith("sgnl://linkdevice?uuid=")
        signal_qr = await asyncio.wait_for(live, 15)
        assert (signal_qr["connection_id"], signal_qr["kind"], signal_qr["code"]) == (
            connection_id,
            "qr",
            uri,
        )
        shown = (await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))).json()
        assert (shown["kind"], shown["code"]) == ("qr", uri)
        assert shown["image"].startswith("data:image/svg+xml")
        assert daemon.called("finishLink")[0] == {"deviceLinkUri": uri, "deviceName": "Moltbot"}

        daemon.scan(uri, ME)
        channel = await _state(api, owner, connection_id, "ok")
        assert (channel["state"], channel["mode"], channel["device_id"]) == (
            "connected",
            "bridge",
            device["device_id"],
        )
        assert channel["state_message"] == f"Connected as {ACCOUNT}."
        gone = await api.get(f"/v1/channels/{connection_id}/qr", headers=_auth(owner))
        assert gone.status_code == 404
        assert await store.cursor(f"signal:{connection_id}") == ACCOUNT.encode()  # kept on the device
        log = [record async for record in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
        assert all(b"sgnl://" not in record.data for record in log)

        # A message in, delivered twice by signal-cli: stored once.
        now_ms = int(time.time() * 1000)  # the agent leaves old messages alone
        question = envelope(ALICE, timestamp=now_ms, data=data_message("Is the shop open?", timestamp=now_ms))
        await daemon.deliver(ACCOUNT, question)
        await daemon.deliver(ACCOUNT, question)

        # The agent drafts (a new connection); the owner sends it: out through the device,
        # quoting the question.
        await send_drafts(api, _auth(owner), 1)

        async def answered() -> list[dict[str, Any]]:
            return daemon.sent

        [sent] = await _until(answered, "the agent's reply through signal-cli", timeout=30)
        assert (sent["account"], sent["recipient"]) == (ACCOUNT, [ALICE.uuid])
        assert (sent["quoteTimestamp"], sent["quoteAuthor"]) == (now_ms, ALICE.uuid)
        conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
        (chat,) = [c for c in conversations if c["channel"] == "signal"]
        assert chat["title"] == "Alice"

        async def recorded() -> list[dict[str, Any]] | None:
            path = f"/v1/conversations/{chat['conversation_id']}/messages"
            items: list[dict[str, Any]] = (await api.get(path, headers=_auth(owner))).json()["items"]
            return items if any(m["direction"] == "out" and m["status"] == "sent" for m in items) else None

        messages = await _until(recorded, "the reply recorded as sent")
        assert len(messages) == 2  # the question once, and the reply
        stored = [json.loads(r.data) async for r in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
        received = [e for e in stored if e["type"] == "message.received"]
        assert [e["actor"] for e in received] == [f"device:{device['device_id']}"]
        [confirmed] = [e for e in stored if e["type"] == "message.sent"]
        assert confirmed["data"]["provider_message_id"].startswith("me:")

        # What the owner writes on the phone is theirs; a photo is fetched from the device.
        daemon.files["ph0t0.jpg"] = b"\xff\xd8\xff\xe0"
        later = now_ms + 5000
        files = [attachment("ph0t0.jpg", "image/jpeg", filename="menu.jpg")]
        await daemon.deliver(
            ACCOUNT, envelope(ALICE, timestamp=later, data=data_message(None, attachments=files))
        )
        own = envelope(
            ME, timestamp=later + 1, sync=sent_to(ALICE, data_message("See you!", timestamp=later + 1))
        )
        await daemon.deliver(ACCOUNT, own)

        async def media_and_own() -> list[dict[str, Any]] | None:
            found = [json.loads(r.data) async for r in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
            media = [e for e in found if e["type"] == "media.available"]
            mine = [e for e in found if e["type"] == "message.sent" and e["data"].get("origin") == "device"]
            return media + mine if media and mine else None

        available, mine = await _until(media_and_own, "the photo stored and the owner's message")
        assert (available["data"]["size"], available["data"]["mime"]) == (4, "image/jpeg")
        assert mine["data"]["text"] == "See you!"

        # The phone removes this linked device: the page says to link again, and why.
        daemon.unlink(ACCOUNT)
        unlinked = await _state(api, owner, connection_id, "unregistered")
        assert (unlinked["state"], unlinked["suggested_action"]) == ("action_required", "link_again")
        assert "connect Signal again" in unlinked["state_message"]
        assert await store.cursor(f"signal:{connection_id}") == b""  # the account is forgotten
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        store.close()


# --- the device side alone --------------------------------------------------------------------


class _Device:
    """One Signal channel on a device, with what it reported, showed and queued."""

    def __init__(self, tmp_path: Path, setup: SignalSetup, environ: dict[str, str], **options: Any) -> None:
        self.data_dir = tmp_path / "bridge"
        self.store = LocalStore(self.data_dir)
        self.states: list[t.State] = []
        self.codes: list[t.Code] = []

        async def show(code: t.Code) -> None:
            self.codes.append(code)

        self.channel = SignalDeviceChannel(
            tenant_id="t_1", device_id="d_1", connection_id="cn_sig", data_dir=self.data_dir, setup=setup,
            environ=environ, show=show, first_backoff=0.2, **options,
        )  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    async def report(self, state: t.State) -> None:
        self.states.append(state)

    def start(self) -> None:
        self.task = asyncio.create_task(self.channel.produce(self.store, lambda: None, self.report))

    async def until_state(self, code: str, timeout: float = 20.0) -> t.State:
        async def reached() -> t.State | None:
            return next((s for s in reversed(self.states) if s.code == code), None)

        state: t.State = await _until(reached, f"the state {code}", timeout=timeout)
        return state

    async def events(self) -> list[dict[str, Any]]:
        """The events queued for the cloud, as JSON."""
        return [json.loads(raw) for _, raw in await self.store.pending()]

    async def halt(self) -> None:
        """Stop the channel, as the bridge stops (or removes) it."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def stop(self) -> None:
        await self.halt()
        self.store.close()


def _send_command(to: str, text: str = "Yes, until 6.") -> SendMessage:
    return SendMessage(
        command_id="send:t_1:m_1", tenant_id="t_1", conversation_id="c_1", connection_id="cn_sig",
        channel="signal", message_id="m_1", to=to, text=text, sender=ev.Sender(id="u_1", name="Ada"),
        requested_at=datetime.now(UTC), causation_id="e_1",
    )  # fmt: skip


@pytest.fixture
def fake_program(tmp_path: Path, daemon: FakeSignal, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The fake signal-cli, installed and joined to the fake daemon: (the program, its argv log)."""
    log = tmp_path / "signal-cli.argv"
    monkeypatch.setenv(fake_cli.LOG_ENV, str(log))
    monkeypatch.setenv(fake_cli.PORT_ENV, str(daemon.tcp_port))
    return fake_cli.install(tmp_path / "bin"), log


async def test_the_bridge_starts_signal_cli_in_its_own_folder_and_stops_it(
    tmp_path: Path, daemon: FakeSignal, fake_program: tuple[Path, Path]
) -> None:
    program, argv_log = fake_program
    device = _Device(tmp_path, SignalSetup(cli=str(program)), dict(os.environ), link_window=5.0)
    device.start()
    try:
        uri = await daemon.waiting_link()
        [started] = fake_cli.recorded(argv_log)
        folder = device.data_dir / "signal" / "cn_sig"
        assert started == ["--config", str(folder), "jsonRpc", "--ignore-stories"]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # the account's keys: the user's alone
        assert [c.code.kind for c in device.codes] == ["qr"]
        daemon.scan(uri, ME)
        await device.until_state("ok")
        assert len(fake_cli.recorded(argv_log)) == 2  # linked, it starts again with the account
        assert daemon.connections == 2

        await daemon.deliver(ACCOUNT, envelope(ALICE, data=data_message("Hello from Alice")))

        async def queued() -> list[Any]:
            return [e for e in await device.events() if e["type"] == "message.received"]

        [received] = await _until(queued, "the message in the device's outbox")
        assert received["data"]["text"] == "Hello from Alice"
        result = await device.channel.execute(_send_command(ALICE.uuid))
        assert (result.outcome, daemon.sent[0]["recipient"]) == ("delivered", [ALICE.uuid])

        await device.halt()  # the connection removed: the bridge stops the channel, then forgets it

        async def all_closed() -> bool:  # its input closed, signal-cli ended: the daemon saw it go
            return not daemon._writers

        await _until(all_closed, "signal-cli to stop with the bridge")
        await device.channel.forget()
        assert not (device.data_dir / "signal" / "cn_sig").exists()  # its keys are gone
        assert await device.store.cursor("signal:cn_sig") == b""
    finally:
        await device.stop()


async def test_without_signal_cli_the_channel_says_how_to_install_it(tmp_path: Path) -> None:
    device = _Device(tmp_path, SignalSetup(), {"PATH": str(tmp_path / "empty")})
    device.start()
    try:
        missing = await device.until_state("signal_cli_missing")
        assert (missing.state, missing.action) == ("action_required", "install_signal_cli")
        assert "brew install signal-cli" in missing.message
        assert device.task is not None
        await asyncio.wait_for(device.task, 5)  # it waits for a person, not in a loop
    finally:
        await device.stop()
    named = _Device(tmp_path / "2", SignalSetup(cli=str(tmp_path / "nowhere" / "signal-cli")), {})
    named.start()
    try:
        assert str(tmp_path / "nowhere") in (await named.until_state("signal_cli_missing")).message
    finally:
        await named.stop()


async def test_signal_cli_that_fails_as_it_starts_says_why(
    tmp_path: Path, fake_program: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fake_cli.JAVA_ENV, "17")
    device = _Device(tmp_path, SignalSetup(cli=str(fake_program[0])), dict(os.environ))
    device.start()
    try:
        failed = await device.until_state("signal_cli_failed")
        assert (failed.state, failed.action) == ("action_required", "fix_signal_cli")
        assert "UnsupportedClassVersionError" in failed.message and "Java 21" in failed.message
    finally:
        await device.stop()


async def test_codes_nobody_scans_stop_after_three(tmp_path: Path, daemon: FakeSignal) -> None:
    setup = SignalSetup(rpc=parse_address(daemon.tcp_address))
    device = _Device(tmp_path, setup, {}, link_window=0.3)
    device.start()
    try:
        expired = await device.until_state("link_expired")
        assert (expired.state, expired.action) == ("action_required", "link_again")
        assert len(daemon.called("startLink")) == 3
        assert [c.code.kind for c in device.codes] == ["qr", "none"] * 3  # each code hidden once stale
    finally:
        await device.stop()


async def test_signal_unreachable_while_linking_is_retried(tmp_path: Path, daemon: FakeSignal) -> None:
    daemon.link_failure = (-3, "Link request error: Connection closed!")  # what no network gives
    device = _Device(tmp_path, SignalSetup(rpc=parse_address(daemon.tcp_address)), {})
    device.start()
    try:
        down = await device.until_state("signal_unreachable")
        assert down.state == "degraded" and "Connection closed" in down.message
        daemon.link_failure = None
        await device.until_state("link_required")
    finally:
        await device.stop()


@pytest.mark.parametrize("transport", ["http", "unix"])
async def test_a_running_daemon_with_its_own_account_over_http_or_a_unix_socket(
    tmp_path: Path, daemon: FakeSignal, transport: str
) -> None:
    daemon.accounts[ACCOUNT] = ME
    address = daemon.http_address if transport == "http" else f"unix:{daemon.socket_path}"
    device = _Device(tmp_path, SignalSetup(rpc=parse_address(address), account=ACCOUNT), {})
    device.start()
    try:
        connected = await device.until_state("ok")
        assert connected.message == f"Connected as {ACCOUNT}."
        assert not daemon.called("startLink")  # its account: no linking
        await asyncio.sleep(0.3)  # the events stream is open
        await daemon.deliver("+15550000000", envelope(ALICE, data=data_message("for another account")))
        await daemon.deliver(ACCOUNT, envelope(ALICE, data=data_message("over " + transport)))

        async def queued() -> list[Any]:
            return [e for e in await device.events() if e["type"] == "message.received"]

        [received] = await _until(queued, "the message in the device's outbox")
        assert received["data"]["text"] == f"over {transport}"
        daemon.fail_next_send(-5, "Failed to send message due to rate limiting", [
            {"recipientAddress": {"uuid": ALICE.uuid, "number": None, "username": None},
             "type": "RATE_LIMIT_FAILURE", "token": "c4a7-0d", "retryAfterSeconds": 86400},
        ])  # fmt: skip
        held = await device.channel.execute(_send_command(ALICE.uuid))
        assert (held.outcome, held.retry_after) == ("deferred", 86400)
        captcha = await device.until_state("captcha_required")
        assert "--challenge c4a7-0d" in captcha.message and "--config" not in captcha.message
        result = await device.channel.execute(_send_command(ALICE.uuid))
        assert result.outcome == "delivered"
        assert device.states[-1].code == "ok"  # sending again: connected again
    finally:
        await device.stop()


async def test_a_daemon_of_one_account_is_used_as_it_is(tmp_path: Path) -> None:
    async with fake_signal(single=ACCOUNT) as one:
        device = _Device(tmp_path, SignalSetup(rpc=parse_address(one.tcp_address)), {})
        device.start()
        try:
            await device.until_state("ok")
            await one.deliver(ACCOUNT, envelope(ALICE, data=data_message("hi")))

            async def queued() -> list[Any]:
                return [e for e in await device.events() if e["type"] == "message.received"]

            await _until(queued, "the message in the device's outbox")
            result = await device.channel.execute(_send_command(f"group:{'Z' * 44}"))
            assert result.outcome == "delivered"
            assert "account" not in one.sent[0] and one.sent[0]["groupId"] == "Z" * 44
        finally:
            await device.stop()


async def test_a_stored_account_the_daemon_no_longer_has_asks_to_link_again(
    tmp_path: Path, daemon: FakeSignal
) -> None:
    device = _Device(tmp_path, SignalSetup(rpc=parse_address(daemon.tcp_address)), {})
    await device.store.record([], "signal:cn_sig", ACCOUNT.encode())  # linked once, then removed
    device.start()
    try:
        gone = await device.until_state("unregistered")
        assert (gone.state, gone.action) == ("action_required", "link_again")
        assert await device.store.cursor("signal:cn_sig") == b""
        assert not daemon.called("startLink")
    finally:
        await device.stop()
