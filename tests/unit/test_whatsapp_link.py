"""The WhatsApp link's state machine, driven through the client port by the fake phone:
what each happening becomes (codes shown, states reported, the device remembered or
forgotten, messages handed on) and how each client's life ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from adapters.channels.health import Backoff, Refused, Unreachable
from adapters.channels.whatsapp import client as c
from adapters.channels.whatsapp import normalize
from adapters.channels.whatsapp.link import PAIRING_ATTEMPTS, WhatsAppLink
from domain import events as ev
from domain.commands import SendMessage
from domain.connectors import PairingCode
from tests.fakes.whatsapp_client import FakeWhatsApp
from tests.fakes.whatsapp_messages import ALICE, Message, message_ev


class Outlet:
    def __init__(self) -> None:
        self.states: list[ev.ConnectionStateChangedData] = []
        self.codes: list[PairingCode] = []
        self.remembered: list[str | None] = []
        self.taken: list[normalize.Delivery] = []

    async def show_state(self, shown: ev.ConnectionStateChangedData) -> None:
        self.states.append(shown)

    async def show_code(self, code: PairingCode) -> None:
        self.codes.append(code)

    async def remember(self, jid: str | None) -> None:
        self.remembered.append(jid)

    async def take(self, delivery: normalize.Delivery, message: Any) -> None:
        self.taken.append(delivery)


def _link(phone: FakeWhatsApp, outlet: Outlet, **options: Any) -> WhatsAppLink:
    return WhatsAppLink(
        phone.new_client, outlet, database="/tmp/unused.db", tenant_id="t_wa", connection_id="cn_wa",
        jid=options.pop("jid", None), backoff=Backoff(0.01, 0.1), log=structlog.get_logger(), **options,
    )  # fmt: skip


async def _until(check: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def _online(phone: FakeWhatsApp, outlet: Outlet, link: WhatsAppLink) -> asyncio.Task[bool]:
    running = asyncio.create_task(link.link_once())
    await _until(lambda: outlet.codes)
    phone.scan()
    await _until(lambda: link.online)
    return running


async def test_a_new_link_shows_each_qr_code_then_connects_as_the_account() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    link = _link(phone, outlet)
    running = asyncio.create_task(link.link_once())
    await _until(lambda: outlet.codes)
    second = phone.rotate_qr()
    await _until(lambda: len(outlet.codes) == 2)
    first_code, second_code = outlet.codes
    assert (first_code.kind, second_code.code) == ("qr", second)
    assert first_code.expires_at is not None and second_code.expires_at is not None
    lifetime = (first_code.expires_at - datetime.now(UTC)).total_seconds()
    assert 55 < lifetime <= 60  # the first code lasts 60 s, the next ones 20 s
    assert 15 < (second_code.expires_at - datetime.now(UTC)).total_seconds() <= 20
    assert [(s.state, s.code, s.action) for s in outlet.states] == [
        ("connecting", "qr_required", "scan_qr")
    ] * 2

    jid = phone.scan()
    await _until(lambda: link.online)
    assert outlet.remembered == [jid]
    assert outlet.codes[-1].kind == "none"  # the code is taken off the page
    assert (outlet.states[-1].state, outlet.states[-1].message) == (
        "connected",
        "Connected as Ada (+15551230000).",
    )
    await phone.current.stop()
    assert await running is True  # stopped without an error: link again at once


async def test_a_paired_device_is_resumed_without_a_code() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    phone.paired.add("15551230000:11@s.whatsapp.net")
    link = _link(phone, outlet, jid="15551230000:11@s.whatsapp.net")
    running = asyncio.create_task(link.link_once())
    await _until(lambda: link.online)
    assert outlet.codes == [] and outlet.remembered == []
    assert phone.clients[0].config.jid == "15551230000:11@s.whatsapp.net"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert phone.clients[0].stopped  # a cancelled link stops its client


async def test_codes_nobody_scans_end_the_link_as_qr_expired_after_the_last_attempt() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    link = _link(phone, outlet, pairing_window=0.05)
    for _ in range(PAIRING_ATTEMPTS - 1):
        assert await link.link_once() is True  # a new attempt with new codes at once
    with pytest.raises(Refused) as refused:
        await link.link_once()
    assert (refused.value.code, refused.value.action) == ("qr_expired", "scan_again")
    assert len(phone.clients) == PAIRING_ATTEMPTS and all(client.stopped for client in phone.clients)
    assert outlet.codes[-1].kind == "none"


async def test_with_a_phone_number_the_page_shows_a_code_to_type_instead() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    link = _link(phone, outlet, phone_number="4915123456789")
    running = asyncio.create_task(link.link_once())
    await _until(lambda: outlet.codes)
    phone.rotate_qr()  # WhatsApp rotates its QR codes; the code to type stays the same
    await asyncio.sleep(0.05)
    assert [(code.kind, code.code) for code in outlet.codes] == [("pair_code", "ABCD-EFGH")]
    assert phone.phone_codes == ["4915123456789"]
    assert (outlet.states[-1].code, outlet.states[-1].action) == ("pair_code_required", "enter_code")
    phone.scan()
    await _until(lambda: link.online)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_without_a_network_the_link_says_so_at_once() -> None:
    phone, outlet = FakeWhatsApp(network=False), Outlet()
    with pytest.raises(Unreachable) as unreachable:
        await asyncio.wait_for(_link(phone, outlet).link_once(), 1)
    assert unreachable.value.code == "network_unreachable"
    assert unreachable.value.message is not None and "does not resolve" in unreachable.value.message


async def test_a_phone_side_logout_forgets_the_session_and_asks_to_scan_again() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    link = _link(phone, outlet)
    running = await _online(phone, outlet, link)
    phone.log_out()
    with pytest.raises(Refused) as refused:
        await running
    assert (refused.value.code, refused.value.action) == ("logged_out", "scan_again")
    assert outlet.remembered[-1] is None and link.jid is None
    assert phone.clients[0].stopped


@pytest.mark.parametrize(
    ("happening", "code", "action"),
    [(c.Outdated(), "outdated_client", "contact_operator"), (c.Replaced(), "session_replaced", "reconnect")],
)
async def test_what_a_person_must_settle_ends_the_link(
    happening: c.ClientEvent, code: str, action: str
) -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    link = _link(phone, outlet)
    running = await _online(phone, outlet, link)
    phone.happen(happening)
    with pytest.raises(Refused) as refused:
        await running
    assert (refused.value.code, refused.value.action) == (code, action)


async def test_a_temporary_ban_is_reported_and_waited_out() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    link = _link(phone, outlet, sleep=sleep)
    running = await _online(phone, outlet, link)
    phone.happen(c.Banned(3600))
    assert await running is True
    assert (outlet.states[-1].state, outlet.states[-1].code) == ("degraded", "temporarily_banned")
    assert 3600.0 in waits


def _command(text: str) -> SendMessage:
    return SendMessage(
        command_id="send:t_wa:m_1", tenant_id="t_wa", conversation_id="c_1", connection_id="cn_wa",
        channel="whatsapp", message_id="m_1", to=f"{ALICE}@s.whatsapp.net", text=text,
        sender=ev.Sender(id="agent:a_1", name="Assistant"), requested_at=datetime.now(UTC),
        causation_id="e_1",
    )  # fmt: skip


async def test_sends_go_through_the_linked_device_and_their_echo_is_not_stored_again() -> None:
    phone, outlet = FakeWhatsApp(), Outlet()
    link = _link(phone, outlet)
    offline = await link.send(_command("hello"))
    assert (offline.outcome, offline.retry_after) == ("deferred", 30.0)
    running = await _online(phone, outlet, link)

    result = await link.send(_command("x" * 5000))  # WhatsApp's limit here is 4096 a message
    assert [len(sent.text) for sent in phone.sent] == [4096, 904]
    assert (result.outcome, result.provider_message_id) == (
        "delivered",
        f"{ALICE}@s.whatsapp.net:{phone.sent[-1].whatsapp_id}",
    )
    await link.typing(f"{ALICE}@s.whatsapp.net")
    assert phone.typing == [f"{ALICE}@s.whatsapp.net"]

    echo = message_ev(Message(conversation="x" * 904), wa_id=phone.sent[-1].whatsapp_id, from_me=True)
    typed_on_phone = message_ev(Message(conversation="on my way"), wa_id="3EB0PHONE", from_me=True)
    phone.write(echo)
    phone.write(typed_on_phone)
    await _until(lambda: outlet.taken)
    await asyncio.sleep(0.05)
    assert len(outlet.taken) == 1
    (sent,) = outlet.taken[0].events
    assert isinstance(sent, ev.MessageSent) and sent.data.origin == "device"
    assert sent.data.text == "on my way"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
