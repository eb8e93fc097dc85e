"""The bridge's local state: the outbox keeps events until acked and moves the cursor with
them; a command carried out once is answered from the record when it comes again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.bridge.channels import Report
from adapters.bridge.device import Bridge, tunnel_url
from adapters.bridge.identity import Pairing, load_key, save_key
from adapters.bridge.local_store import LocalStore
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage


def _event(n: int) -> ev.Event:
    return ev.new_event(
        ev.TenantRenamed, tenant_id="t_1", aggregate_id="t_1", actor="device:d_1",
        data=ev.TenantRenamedData(name=f"n{n}"),
    )  # fmt: skip


async def test_the_outbox_keeps_events_until_acked_and_moves_the_cursor_with_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    await store.record([_event(1), _event(2)], "imessage", b'{"rowid":2}')
    await store.record([_event(3)], "imessage", b'{"rowid":3}')
    assert [seq for seq, _ in await store.pending()] == [1, 2, 3]
    assert await store.cursor("imessage") == b'{"rowid":3}'
    await store.acked(2)
    await store.dropped(3)
    assert await store.pending() == []
    await store.record([_event(4)])
    store.close()

    reopened = LocalStore(tmp_path)  # after a crash: what was not acked is still there
    [(seq, raw)] = await reopened.pending()
    assert seq == 4
    assert msgspec.json.decode(raw)["data"]["name"] == "n4"
    reopened.close()


class _CountingChannel:
    kind = "imessage"
    capabilities: tuple[str, ...] = ("imessage.send",)

    def __init__(self) -> None:
        self.executed: list[str] = []

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        return None

    async def execute(self, command: SendMessage) -> t.Result:
        self.executed.append(command.command_id)
        return t.Result(
            id=command.command_id, outcome="delivered", provider_message_id="p1", sent_at=datetime.now(UTC)
        )


async def test_a_command_delivered_again_is_not_carried_out_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    channel = _CountingChannel()
    pairing = Pairing(
        gateway="http://127.0.0.1:9", tenant_id="t_1", device_id="d_1", name="Mac", fingerprint="x"
    )
    bridge = Bridge(pairing, Ed25519PrivateKey.generate(), store, [channel], version="t", platform="linux")
    command = SendMessage(
        command_id="send:t_1:m_1", tenant_id="t_1", conversation_id="c_1", connection_id="cn_1",
        channel="imessage", message_id="m_1", to="iMessage;-;+1555", text="hi",
        sender=ev.Sender(id="u_1", name="Ada"), requested_at=datetime.now(UTC), causation_id="e_1",
    )  # fmt: skip
    frame = t.Command(id=command.command_id, kind="imessage", command=command)
    await bridge._execute(frame)
    await bridge._execute(frame)
    assert channel.executed == ["send:t_1:m_1"]
    remembered = await store.executed(command.command_id)
    assert remembered is not None and remembered.outcome == "delivered"
    store.close()


def test_the_tunnel_address_follows_the_gateways_scheme() -> None:
    assert tunnel_url("https://inbox.example.com/") == "wss://inbox.example.com/v1/bridge/tunnel"
    assert tunnel_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/v1/bridge/tunnel"


def test_the_private_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    save_key(tmp_path / "bridge", key)
    assert (tmp_path / "bridge" / "device.key").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path / "bridge").private_bytes_raw() == key.private_bytes_raw()


def test_a_big_frame_goes_in_parts_and_comes_back_whole() -> None:
    frame = t.File(id="f1", data=bytes(range(256)) * 1000)
    messages = t.split(msgspec.json.encode(frame), "p1")
    assert len(messages) > 1
    assert all(len(m.encode()) <= 32 * 1024 for m in messages)
    assembler = t.Assembler()
    assembled = [assembler.add(msgspec.json.decode(m, type=t.Part)) for m in messages]
    assert assembled[:-1] == [None] * (len(messages) - 1)
    assert assembled[-1] == frame


def test_parts_out_of_order_or_too_big_are_refused() -> None:
    with pytest.raises(ValueError, match="out of order"):
        t.Assembler().add(t.Part(id="x", index=1, count=2, data=b"{}"))
    small = t.Assembler(max_bytes=t.PART_BYTES)
    small.add(t.Part(id="x", index=0, count=2, data=b"a" * t.PART_BYTES))
    with pytest.raises(ValueError, match="larger"):
        small.add(t.Part(id="x", index=1, count=2, data=b"a"))
