"""The real WhatsApp client (neonize, whatsmeow) where WhatsApp cannot be reached: a dial
with no DNS or a refused proxy ends at once and says why; a black-holed dial is cut by the
connect timeout; a stored device is resumed and an unknown one is logged out (neonize itself
would crash the process); stopping is prompt and repeatable. Plus what each of neonize's
events means, on real protobufs.

Needs no internet (this machine has none: the plain dial test expects the DNS failure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from projections.engine import ensure_core
from tests.conftest import REPO_ROOT, Stack
from tests.fakes.whatsapp_messages import ALICE, ME, Message, j, message_ev  # first: it keeps the root logger
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup

# isort: split
from neonize.proto import Neonize_pb2 as P
from neonize.utils.jid import Jid2String
from neonize.utils.log import stream_handler as neonize_handler

from adapters.channels.whatsapp import client as c
from adapters.channels.whatsapp.neonize_client import (
    NeonizeClient,
    client_event,
    parse_jid,
    phone_digits,
)
from adapters.channels.whatsapp.store import ensure_schema, library_dsn

DEVICE = "15551230000:7@s.whatsapp.net"


async def _all_events(client: NeonizeClient, within: float = 60.0) -> list[c.ClientEvent]:
    async def read() -> list[c.ClientEvent]:
        return [event async for event in client.events()]

    return await asyncio.wait_for(read(), within)


async def _stop_timed(client: NeonizeClient) -> float:
    started = time.monotonic()
    await client.stop()
    return time.monotonic() - started


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _refused_proxy() -> str:
    return f"socks5://127.0.0.1:{_closed_port()}"


def _store_device(database: Path, device: str, push_name: str) -> None:
    """A paired device's row as whatsmeow keeps it (keys are random: no dial gets that far)."""
    from neonize.aioze.client import ClientFactory

    ClientFactory.get_all_devices_from_db(str(database))  # the library creates its tables
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, signed_pre_key,"
            " signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig,"
            " adv_account_sig_key, adv_device_sig, push_name) VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
            (
                device, os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
                b"details", os.urandom(64), os.urandom(32), os.urandom(64), push_name,
            ),
        )  # fmt: skip


# --- importing ---------------------------------------------------------------------------------


def test_importing_neonize_here_left_the_root_logger_alone() -> None:
    assert neonize_handler not in logging.getLogger().handlers


def test_importing_the_client_first_leaves_the_root_logger_alone() -> None:
    check = (
        "import logging; root = logging.getLogger(); before = (list(root.handlers), root.level);"
        "import adapters.channels.whatsapp.neonize_client;"
        "assert (list(root.handlers), root.level) == before, root.handlers"
    )
    subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=True, timeout=60)


# --- dialling where WhatsApp cannot be reached -----------------------------------------------


async def test_with_no_dns_the_dial_ends_at_once_saying_why(tmp_path: Path) -> None:
    client = NeonizeClient(c.ClientConfig(str(tmp_path / "wa.db"), "conn-no-dns", None))
    started = time.monotonic()
    await client.start()
    events = await _all_events(client)
    took = time.monotonic() - started
    assert len(events) == 1 and isinstance(events[0], c.Ended), events
    assert events[0].error is not None and "failed to dial" in events[0].error
    assert "web.whatsapp.com" in events[0].error and "no such host" in events[0].error
    assert took < 10, took
    assert await _stop_timed(client) < 5
    assert await _stop_timed(client) < 5  # again: harmless


async def test_a_refused_proxy_ends_the_dial_at_once(tmp_path: Path) -> None:
    client = NeonizeClient(
        c.ClientConfig(str(tmp_path / "wa.db"), "conn-refused", None), proxy=_refused_proxy()
    )
    await client.start()
    events = await _all_events(client, within=30)
    assert len(events) == 1 and isinstance(events[0], c.Ended), events
    assert events[0].error is not None and "connection refused" in events[0].error
    await client.stop()


async def test_a_black_holed_dial_is_cut_by_the_connect_timeout(tmp_path: Path) -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listener = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = NeonizeClient(
        c.ClientConfig(str(tmp_path / "wa.db"), "conn-black-hole", None),
        connect_timeout=3,
        stop_wait=1,
        proxy=f"http://127.0.0.1:{port}",
    )
    try:
        started = time.monotonic()
        await client.start()
        events = await _all_events(client, within=30)
        took = time.monotonic() - started
        assert events == [c.Ended("no answer from WhatsApp within 3 s")]
        assert 3 <= took < 10, took
        assert held, "the dial never reached the proxy"
        assert await _stop_timed(client) < 3  # after stop_wait: the library's own stop waits for the dial
    finally:
        for writer in held:
            writer.close()  # the dial fails at once now, and the library's stop returns
        listener.close()
        await listener.wait_closed()
    assert await _stop_timed(client) < 5


# --- sessions in the store ---------------------------------------------------------------------


async def test_a_stored_device_is_resumed(tmp_path: Path) -> None:
    database = tmp_path / "wa.db"
    _store_device(database, DEVICE, push_name="Alice, at work")  # a comma breaks neonize's device list
    client = NeonizeClient(c.ClientConfig(str(database), "conn-resume", DEVICE), proxy=_refused_proxy())
    await client.start()
    events = await _all_events(client, within=30)
    assert len(events) == 1 and isinstance(events[0], c.Ended), events
    assert events[0].error is not None and "connection refused" in events[0].error
    await client.stop()


@pytest.mark.parametrize("device", ["15550000000:3@s.whatsapp.net", "not a device"])
async def test_a_device_the_store_lacks_is_logged_out_not_a_crash(tmp_path: Path, device: str) -> None:
    database = tmp_path / "wa.db"
    _store_device(database, DEVICE, push_name="Alice")
    client = NeonizeClient(c.ClientConfig(str(database), "conn-gone", device))
    await client.start()
    events = client.events()
    assert await asyncio.wait_for(anext(events), 30) == c.LoggedOut()
    assert await _stop_timed(client) < 5
    assert [event async for event in events] == [c.Ended(None)]


async def test_before_start_nothing_reaches_the_library(tmp_path: Path) -> None:
    client = NeonizeClient(c.ClientConfig(str(tmp_path / "wa.db"), "conn-idle", None))
    with pytest.raises(c.SendFailed):
        await client.send_text(f"{ALICE}@s.whatsapp.net", "hi")
    with pytest.raises(c.SendFailed):
        await client.send_typing(f"{ALICE}@s.whatsapp.net", True)
    with pytest.raises(ValueError, match="not connected"):
        await client.pair_phone("+1 555 123 0000")
    with pytest.raises(OSError, match="not connected"):
        await client.download(message_ev(Message(conversation="hi")))
    await client.stop()
    await client.stop()
    assert await _all_events(client, within=5) == [c.Ended(None)]
    await client.start()  # after stop: nothing happens
    assert not (tmp_path / "wa.db").exists()


# --- what neonize's events mean ----------------------------------------------------------------

R = P.ConnectFailureReason
AT = 1_767_225_600  # 2026-01-01T00:00Z, in seconds as receipts carry it
_ME = P.Device(JID=j(ME, device=12), PushName="Me", Platform="", BussinessName="", Initialized=True)
_ALICE = f"{ALICE}@s.whatsapp.net"
_AT = datetime(2026, 1, 1, tzinfo=UTC)
_MY_DEVICE = f"{ME}:12@s.whatsapp.net"


def _receipt(kind: int, *message_ids: str) -> Any:
    source = P.MessageSource(Chat=j(ALICE), Sender=j(ALICE), IsFromMe=False, IsGroup=False)
    return P.Receipt(MessageSource=source, MessageIDs=message_ids, Timestamp=AT, Type=kind)


@pytest.mark.parametrize(
    ("message", "me", "expected"),
    [
        (P.LoggedOut(OnConnect=False, Reason=R.LOGGED_OUT), None, c.LoggedOut()),
        (P.LoggedOut(OnConnect=True, Reason=R.MAIN_DEVICE_GONE), None, c.LoggedOut()),
        (P.LoggedOut(OnConnect=True, Reason=R.CLIENT_OUTDATED), None, c.Outdated()),
        (P.LoggedOut(OnConnect=True, Reason=R.TEMP_BANNED), None, c.Banned(0)),
        (P.TemporaryBan(Code=P.TemporaryBan.BLOCKED_BY_USERS, Expire=3600), None, c.Banned(3600)),
        (P.ClientOutdated(), None, c.Outdated()),
        (P.StreamReplaced(), None, c.Replaced()),
        (P.Disconnected(status=True), None, c.Dropped()),
        (P.ConnectFailure(Reason=R.UNKNOWN_LOGOUT, Message=""), None, c.LoggedOut()),
        (P.ConnectFailure(Reason=R.BAD_USER_AGENT, Message=""), None, c.Outdated()),
        (P.ConnectFailure(Reason=R.TEMP_BANNED, Message=""), None, c.Banned(0)),
        (P.ConnectFailure(Reason=R.SERVICE_UNAVAILABLE, Message=""), None, None),
        (
            P.ConnectFailure(Reason=R.GENERIC, Message="bad request"),
            None,
            c.Ended("WhatsApp refused the connection (GENERIC): bad request"),
        ),
        (P.PairStatus(ID=j(ME, device=12), Status=P.PairStatus.SUCCESS), None, c.Paired(_MY_DEVICE)),
        (P.PairStatus(Status=P.PairStatus.ERROR, Error="bad key"), None, c.Ended("pairing failed: bad key")),
        (P.Connected(status=True), _ME, c.Online(_MY_DEVICE, "Me")),
        (P.Connected(status=True), None, c.Online("", "")),
        (_receipt(P.Receipt.READ, "A1", "B2"), None, c.Receipt(_ALICE, ("A1", "B2"), "read", _AT)),
        (_receipt(P.Receipt.DELIVERED, "3EB0A"), None, c.Receipt(_ALICE, ("3EB0A",), "delivered", _AT)),
        (_receipt(P.Receipt.PLAYED, "3EB0A"), None, None),
        (_receipt(P.Receipt.READ_SELF, "3EB0A"), None, None),
        (P.KeepAliveTimeout(ErrorCount=1, LastSuccess=AT), None, None),
    ],
)  # fmt: skip
def test_what_each_event_means(message: Any, me: Any, expected: c.ClientEvent | None) -> None:
    assert client_event(message, me) == expected


def test_a_message_is_handed_on_as_it_is() -> None:
    received = message_ev(Message(conversation="hi"))
    assert client_event(received) == c.Received(received)


@pytest.mark.parametrize(
    "text",
    [
        "15551230000@s.whatsapp.net",
        DEVICE,
        "15551230000.1:7@s.whatsapp.net",
        "120363012345678901@g.us",
        "123456789012345@lid",
        "status@broadcast",
    ],
)
def test_jids_are_read_as_whatsmeow_writes_them(text: str) -> None:
    assert Jid2String(parse_jid(text)) == text


@pytest.mark.parametrize("text", ["15551230000", "a@b@c", "1555:x@s.whatsapp.net", ""])
def test_what_is_not_a_jid_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a WhatsApp JID"):
        parse_jid(text)


def test_a_phone_number_is_its_digits() -> None:
    assert phone_digits("+49 (151) 234-5678") == "491512345678"
    with pytest.raises(ValueError, match="country code"):
        phone_digits("+49 151 CALL ME")


# --- in the product ----------------------------------------------------------------------------


async def test_the_cloud_session_store_is_the_products_database_in_its_own_schema(stack: Stack) -> None:
    """The library writes its tables into schema ``whatsapp`` of the product's PostgreSQL,
    which the gateway's confined role cannot read."""
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        await ensure_core(conn)  # type: ignore[arg-type]  # the confined role
        await ensure_schema(conn)  # type: ignore[arg-type]
    client = NeonizeClient(
        c.ClientConfig(library_dsn(stack.database_url), "conn-pg", None), proxy=_refused_proxy()
    )
    await client.start()
    events = await _all_events(client, within=30)
    assert isinstance(events[-1], c.Ended) and events[-1].error is not None
    await client.stop()
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        found = await (await conn.execute("SELECT to_regclass('whatsapp.whatsmeow_device')")).fetchone()
        elsewhere = await (await conn.execute("SELECT to_regclass('public.whatsmeow_device')")).fetchone()
        assert found is not None and found[0] is not None
        assert elsewhere is not None and elsewhere[0] is None
        await conn.execute("SET ROLE moltbot_gateway")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SELECT count(*) FROM whatsapp.whatsmeow_device")


async def test_with_no_network_the_channel_says_so_within_a_minute_and_stops(api: httpx.AsyncClient) -> None:
    """The real library behind the whole product, on this machine without internet."""
    owner = await _signup(api, "whatsapp-no-network@example.com")
    connected = await api.post("/v1/channels/whatsapp/connect", json={"mode": "cloud"}, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    connection_id = connected.json()["connection_id"]

    async def unreachable() -> dict[str, Any] | None:
        channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
        found = next(ch for ch in channels if ch["connection_id"] == connection_id)
        return found if found["state_code"] == "network_unreachable" else None

    started = time.monotonic()
    channel = await _until(unreachable, "network_unreachable", timeout=60)
    assert time.monotonic() - started < 60
    assert channel["state"] == "degraded" and "does not resolve" in channel["state_message"]
    removed = await api.delete(f"/v1/channels/{connection_id}", headers=_auth(owner))
    assert removed.status_code == 202
