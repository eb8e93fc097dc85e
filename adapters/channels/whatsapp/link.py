"""One WhatsApp connection's link to WhatsApp, wherever it runs: the state machine over a
:class:`~adapters.channels.whatsapp.client.WhatsAppClient`, shared by the cloud session
(``session.py``) and the Personal Bridge (``device.py``), which differ only in where the
findings go (an :class:`Outlet`).

One call of :meth:`WhatsAppLink.link_once` is one client's life, for
:func:`adapters.channels.health.stay_linked`: it starts a client (resuming the paired
device, or pairing anew), shows each pairing code while it is valid, says ``connected``
with the account's name and number, hands every message on, and ends with what happened:

- True: link again at once (a pairing attempt ran out, a pause for a temporary ban ended);
- :class:`~adapters.channels.health.Unreachable` (``network_unreachable``): retried with
  backoff — with no network the dial fails at once and the state says so;
- :class:`~adapters.channels.health.Refused` (``action_required``): the phone removed the
  device (``logged_out``), the library is outdated, the session was opened elsewhere, or
  nobody scanned :data:`PAIRING_ATTEMPTS` attempts' codes (``qr_expired``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from adapters.channels.health import Backoff, Refused, Unreachable
from adapters.channels.whatsapp import CAPABILITIES, normalize
from adapters.channels.whatsapp import client as c
from adapters.channels.whatsapp import states as s
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.connectors import PairingCode

PAIRING_ATTEMPTS = 2  # pairing windows (about 2 x 160 s) shown before the link stops asking
PAIRING_GRACE = 5.0  # seconds after the last code's expiry before the attempt is over
MAX_BAN_PAUSE = 24 * 3600.0
NOT_ONLINE_RETRY = 30.0  # a send waits this long when WhatsApp is not connected
SENT_REMEMBERED = 512  # our own sends, whose echo from WhatsApp is not stored again


class Outlet(Protocol):
    """Where a link's findings go."""

    async def show_state(self, shown: ev.ConnectionStateChangedData) -> None:
        """The connection's state changed."""
        ...

    async def show_code(self, code: PairingCode) -> None:
        """A pairing code to show its owner (kind "none": nothing to show any more)."""
        ...

    async def remember(self, jid: str | None) -> None:
        """The paired device to resume next time (None: forget the session)."""
        ...

    async def take(self, delivery: normalize.Delivery, message: Any | None) -> None:
        """Store a delivery's events (``message``: the client's message they come from, for
        its files; None for receipts)."""
        ...


def _why(error: str) -> str:
    """The library's dial error, as few words as say it."""
    lowered = error.lower()
    if "no such host" in lowered or "name resolution" in lowered:
        return "the name web.whatsapp.com does not resolve: no network or no DNS"
    if "connection refused" in lowered:
        return "the connection was refused"
    if "deadline exceeded" in lowered or "no answer" in lowered or "timeout" in lowered:
        return "WhatsApp did not answer"
    return error[:160]


def _refused(happening: s.Happening) -> Refused:
    shown = s.state_for(happening)
    return Refused(shown.code, shown.message, action=shown.action)


def _number(jid: str) -> str:
    """``15551230000:12@s.whatsapp.net`` → ``15551230000``."""
    return jid.partition("@")[0].split(":", 1)[0]


class WhatsAppLink:
    def __init__(
        self,
        new_client: c.NewClient,
        outlet: Outlet,
        *,
        database: str,
        tenant_id: str,
        connection_id: str,
        jid: str | None,
        backoff: Backoff,
        log: Any,
        phone_number: str | None = None,
        actor: str | None = None,  # who records the messages (None: the connector)
        pairing_window: float = s.PAIRING_WINDOW + PAIRING_GRACE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # the wait a ban asks for
    ) -> None:
        self._new_client = new_client
        self._outlet = outlet
        self._database = database
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self.jid = jid
        self._backoff = backoff
        self._log = log
        self._phone_number = phone_number
        self._actor = actor
        self._pairing_window = pairing_window
        self._sleep = sleep
        self.client: c.WhatsAppClient | None = None
        self.online = False
        self._unscanned = 0  # pairing attempts in a row whose codes nobody used
        self._sent: OrderedDict[str, None] = OrderedDict()

    # --- in ----------------------------------------------------------------------------------

    async def link_once(self) -> bool:
        """One client's life (see the module's docstring for how it ends)."""
        client = self._new_client(c.ClientConfig(self._database, self.connection_id, self.jid))
        attempt = _Attempt()
        self.client = client
        try:
            await client.start()
            async for happening in client.events():
                if isinstance(happening, c.Ended):
                    attempt.ended = True
                    return await self._ended(happening, attempt)
                await self._handle(happening, client, attempt)
        finally:
            self.online = False
            self.client = None
            if attempt.window is not None:
                attempt.window.cancel()
            if attempt.code_shown:
                with contextlib.suppress(Exception):
                    await self._outlet.show_code(PairingCode(connection_id=self.connection_id, kind="none"))
            if not attempt.ended:
                with contextlib.suppress(Exception):
                    await client.stop()
        return True  # the client's events ended without saying why: link again

    async def _handle(self, happening: c.ClientEvent, client: c.WhatsAppClient, attempt: _Attempt) -> None:
        match happening:
            case c.QrCode(code=code):
                await self._pairing(code, client, attempt)
            case c.Paired(jid=jid):
                self.jid = jid
                self._unscanned = 0
                await self._outlet.remember(jid)
                if attempt.window is not None:
                    attempt.window.cancel()
                self._log.info("whatsapp_paired")
            case c.Online(jid=jid, push_name=name):
                if jid and jid != self.jid:
                    self.jid = jid
                    await self._outlet.remember(jid)
                self.online = True
                self._unscanned = 0
                self._backoff.reset()
                if attempt.code_shown:
                    attempt.code_shown = False
                    await self._outlet.show_code(PairingCode(connection_id=self.connection_id, kind="none"))
                await self._outlet.show_state(s.state_for(s.Connected(name, _number(jid or self.jid or ""))))
            case c.Received(message=message):
                await self._received(message)
            case c.LoggedOut():
                self.jid = None
                await self._outlet.remember(None)
                raise _refused(s.LoggedOut())
            case c.Outdated():
                raise _refused(s.ClientOutdated())
            case c.Replaced():
                raise _refused(s.Replaced())
            case c.Banned(seconds=seconds):
                attempt.banned_for = seconds
                await self._outlet.show_state(s.state_for(s.TemporarilyBanned(seconds)))
                await client.stop()
            case c.Dropped():
                self.online = False
                self._log.info("whatsapp_dropped")  # the library reconnects by itself
            case c.Receipt(chat=chat, message_ids=message_ids, status=status, at=at):
                receipts = normalize.receipt(
                    chat, message_ids, status, at, tenant_id=self.tenant_id, connection_id=self.connection_id,
                    actor=self._actor,
                )  # fmt: skip
                await self._outlet.take(receipts, None)

    async def _pairing(self, qr: str, client: c.WhatsAppClient, attempt: _Attempt) -> None:
        """Show the attempt's next code; the first one starts the attempt's window."""
        now = datetime.now(UTC)
        if attempt.window is None:
            attempt.window = asyncio.create_task(self._close_window(client, attempt))
        if self._phone_number is not None:
            if attempt.code_shown:
                return  # the code to type stays valid for the whole window
            try:
                typed = await client.pair_phone(self._phone_number)
            except ValueError as exc:
                raise Refused(
                    "pair_code_failed",
                    f"WhatsApp did not give a code for this number: {exc}",
                    action="reconnect",
                ) from None
            code = PairingCode(
                connection_id=self.connection_id, kind="pair_code", code=typed,
                expires_at=now + timedelta(seconds=s.PAIRING_WINDOW),
            )  # fmt: skip
            shown = s.state_for(s.PairCodeShown())
        else:
            lifetime = s.qr_expires_after(attempt.qr_codes)
            attempt.qr_codes += 1
            code = PairingCode(
                connection_id=self.connection_id,
                kind="qr",
                code=qr,
                expires_at=now + timedelta(seconds=lifetime),
            )
            shown = s.state_for(s.QrShown())
        await self._outlet.show_code(code)
        attempt.code_shown = True
        await self._outlet.show_state(shown)

    async def _close_window(self, client: c.WhatsAppClient, attempt: _Attempt) -> None:
        """WhatsApp says nothing when the last code expires: end the attempt ourselves."""
        await asyncio.sleep(self._pairing_window)
        attempt.expired = True
        self._log.info("whatsapp_pairing_window_over", attempts=self._unscanned + 1)
        await client.stop()

    async def _ended(self, ended: c.Ended, attempt: _Attempt) -> bool:
        if attempt.banned_for is not None:
            await self._sleep(min(float(attempt.banned_for), MAX_BAN_PAUSE))
            return True
        if attempt.expired:
            self._unscanned += 1
            if self._unscanned >= PAIRING_ATTEMPTS:
                self._unscanned = 0
                raise _refused(s.QrExpired())
            return True  # a new attempt, with new codes, at once
        if ended.error is not None:
            shown = s.state_for(s.Unreachable(_why(ended.error)))
            raise Unreachable(ended.error, code=shown.code, message=shown.message)
        return True

    async def _received(self, message: Any) -> None:
        if message.Info.ID in self._sent:
            return  # the echo of a message we sent: stored as sent already
        me = f"{_number(self.jid)}@s.whatsapp.net" if self.jid else None
        try:
            delivery = normalize.delivery(
                message, tenant_id=self.tenant_id, connection_id=self.connection_id, me=me, actor=self._actor
            )
        except Exception as exc:  # one unreadable message must not stop the connection
            self._log.error("whatsapp_message_unreadable", error=repr(exc))
            return
        await self._outlet.take(delivery, message)

    # --- out ---------------------------------------------------------------------------------

    async def send(self, command: SendMessage) -> t.Result:
        """Send a message through the linked device: delivered, or why not."""
        client = self.client
        if client is None or not self.online:
            return t.Result(
                id=command.command_id, outcome="deferred", reason="WhatsApp is not connected right now",
                retry_after=NOT_ONLINE_RETRY,
            )  # fmt: skip
        size = CAPABILITIES.max_text_length
        chunks = [command.text[i : i + size] for i in range(0, len(command.text), size)] or [""]
        try:
            for chunk in chunks:
                sent = await client.send_text(command.to, chunk)
                self._sent[sent.whatsapp_id] = None
                while len(self._sent) > SENT_REMEMBERED:
                    self._sent.popitem(last=False)
        except c.SendFailed as exc:
            return t.Result(
                id=command.command_id, outcome="rejected", code="whatsapp_refused",
                reason=f"WhatsApp did not take the message: {exc}",
            )  # fmt: skip
        return t.Result(
            id=command.command_id,
            outcome="delivered",
            sent_at=sent.at,
            provider_message_id=normalize.provider_message_id(command.to, sent.whatsapp_id),
        )

    async def typing(self, chat: str) -> None:
        """Show "typing…" in the chat while the agent writes (nothing when not connected)."""
        client = self.client
        if client is not None and self.online:
            with contextlib.suppress(Exception):
                await client.send_typing(chat, True)


class _Attempt:
    """What one client's life has seen so far."""

    def __init__(self) -> None:
        self.window: asyncio.Task[None] | None = None
        self.qr_codes = 0
        self.code_shown = False
        self.expired = False
        self.banned_for: int | None = None
        self.ended = False
