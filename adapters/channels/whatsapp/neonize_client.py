"""The real :class:`~adapters.channels.whatsapp.client.WhatsAppClient`: neonize's
``NewAClient`` (whatsmeow in a Go library, called through ctypes).

Imported only by the session factory (``registry._neonize``): importing neonize loads its
native library and runs ``logging.basicConfig`` on the root logger, which is undone here.

neonize traps this module handles (docs/connectors.md, "WhatsApp"):

- Resuming a device the store does not hold crashes the whole process (a nil pointer in
  whatsmeow's ``NewClient``): the store is asked first, and a missing device is
  :class:`LoggedOut` (the library forgot the session).
- Events are dispatched to ``neonize.aioze.events.event_global_loop``, which the library sets
  once per process: it is pointed at the running loop before every connect.
- Every live client holds a worker of the loop's default executor for its whole life (as
  does every other library call while it runs): the loop gets a default executor of
  :data:`EXECUTOR_WORKERS` threads once.
- A black-holed dial gives no event and no error for about a minute, and ``stop()`` blocks
  until that dial's deadline: a connect timeout ends the client and stops the library in
  the background; :meth:`NeonizeClient.stop` waits for that at most ``stop_wait`` seconds.
- The library's key of a client (``uuid``) is this object's own (the connection id and a
  random suffix): with the connection id alone, a late stop of a previous client (a dial's
  deadline, or neonize's finalizer when the old object is collected) stops its successor.
- ``send_message(str)`` turns ``@digits`` into mentions and looks up mentioned groups over
  the network: text goes as a plain ``conversation`` message instead.
- ``client.get_me()`` on a client the Go side no longer holds crashes the process: only the
  ``client.me`` the library sets before any other event is read.
- Every connect opens the store anew and never closes it (one SQLite file handle, or a
  PostgreSQL pool, per client for the life of the process; asking for the stored devices,
  as resuming does, costs one more): not avoidable from Python, so retries must back off.
- Stopping while QR codes are shown may leave the library's connect thread blocked (its QR
  channel is not closed on a requested disconnect) [from the Go source, not reproducible
  without WhatsApp]: ``stop()`` returns regardless and logs ``whatsapp_thread_pinned``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import structlog

from adapters.channels.whatsapp.client import (
    Banned,
    ClientConfig,
    ClientEvent,
    Dropped,
    Ended,
    LoggedOut,
    Online,
    Outdated,
    Paired,
    QrCode,
    Receipt,
    Received,
    Replaced,
    SendFailed,
    SentMessage,
)
from adapters.channels.whatsapp.normalize import jid, moment

_root = logging.getLogger()
_root_handlers, _root_level = list(_root.handlers), _root.level
import neonize.aioze.events as neonize_events  # type: ignore[import-untyped]  # noqa: E402
from neonize._binder import (  # type: ignore[import-untyped]  # noqa: E402
    ProxySettings,
    func_callback_bytes2,
    gocode,
)
from neonize.aioze.client import NewAClient  # type: ignore[import-untyped]  # noqa: E402
from neonize.aioze.events import (  # type: ignore[import-untyped]  # noqa: E402
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.exc import NeonizeError  # type: ignore[import-untyped]  # noqa: E402
from neonize.proto.Neonize_pb2 import ConnectFailureReason  # type: ignore[import-untyped]  # noqa: E402
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import (  # type: ignore[import-untyped]  # noqa: E402
    DeviceProps,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message  # type: ignore[import-untyped]  # noqa: E402
from neonize.utils.enum import (  # type: ignore[import-untyped]  # noqa: E402
    ChatPresence,
    ChatPresenceMedia,
    ClientName,
    ClientType,
)
from neonize.utils.jid import Jid2String, build_jid  # type: ignore[import-untyped]  # noqa: E402
from neonize.utils.log import log as neonize_log  # type: ignore[import-untyped]  # noqa: E402
from neonize.utils.log import log_whatsmeow  # type: ignore[import-untyped]  # noqa: E402

_root.handlers[:], _root.level = _root_handlers, _root_level
# neonize hands this logger's level to the Go side; unset there means DEBUG, which logs each
# QR code (a secret) and sends every protocol frame's log line through the FFI.
if neonize_log.level == logging.NOTSET:
    neonize_log.setLevel(logging.INFO)

log = structlog.get_logger()

DEFAULT_CONNECT_TIMEOUT = 45.0  # seconds for a first sign of WhatsApp (a QR, online, a refusal)
DEFAULT_STOP_WAIT = 5.0  # seconds stop() waits for the library before returning anyway
EXECUTOR_WORKERS = 64  # the loop's default executor: one per live client, plus the calls in flight
WHATSAPP_HOST = "web.whatsapp.com"  # looked up first: a library client that cannot dial still leaks its store
DNS_TIMEOUT = 10.0
DEVICE_NAME = "Moltbot"  # the device's name in the phone's list of linked devices

_roomy_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_JID = re.compile(r"(?P<user>[^@.:]*)(?:\.(?P<agent>\d+))?(?::(?P<device>\d+))?@(?P<server>[^@]+)")
_PHONE_PUNCTUATION = str.maketrans("", "", "+ -().")
_RECEIPTS: dict[int, Literal["delivered", "read"]] = {
    ReceiptEv.DELIVERED: "delivered",
    ReceiptEv.READ: "read",
}
_LOGGED_OUT_REASONS = frozenset(
    (
        ConnectFailureReason.LOGGED_OUT,
        ConnectFailureReason.MAIN_DEVICE_GONE,
        ConnectFailureReason.UNKNOWN_LOGOUT,
    )
)
_OUTDATED_REASONS = frozenset((ConnectFailureReason.CLIENT_OUTDATED, ConnectFailureReason.BAD_USER_AGENT))
_RETRIED_REASONS = frozenset(
    (ConnectFailureReason.INTERNAL_SERVER_ERROR, ConnectFailureReason.SERVICE_UNAVAILABLE)
)


def make_room(loop: asyncio.AbstractEventLoop) -> None:
    """Give ``loop`` a default executor with room for many clients (once per loop)."""
    if loop not in _roomy_loops:
        loop.set_default_executor(ThreadPoolExecutor(EXECUTOR_WORKERS, thread_name_prefix="default-io"))
        _roomy_loops.add(loop)


def parse_jid(text: str) -> Any:
    """neonize's ``JID`` of ``user@server``, ``user:device@server`` or ``user.agent:device@server``
    (as whatsmeow's ``ParseJID`` reads them; neonize has no parser of its own)."""
    match = _JID.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a WhatsApp JID: {text!r}")
    parsed = build_jid(match["user"], match["server"])
    parsed.RawAgent = int(match["agent"] or 0)
    parsed.Device = int(match["device"] or 0)
    return parsed


def phone_digits(phone_number: str) -> str:
    """``+49 151-234 5678`` → ``491512345678`` (what WhatsApp's pairing takes)."""
    digits = phone_number.translate(_PHONE_PUNCTUATION)
    if not digits.isdigit():
        raise ValueError("a phone number is digits with the country code, e.g. +49 151 2345678")
    return digits


def client_event(message: Any, me: Any = None) -> ClientEvent | None:
    """What one of neonize's events means for the session (None: nothing); ``me`` is the
    ``Device`` the library reports (``client.me``). An :class:`Ended` means the client is
    over although nobody stopped it: the caller ends it."""
    if isinstance(message, MessageEv):
        return Received(message)
    if isinstance(message, ReceiptEv):
        status = _RECEIPTS.get(message.Type)
        if status is None:
            return None  # played, read by our own other device, retries, server errors
        chat = jid(message.MessageSource.Chat)
        return Receipt(
            chat, tuple(str(i) for i in message.MessageIDs), status, moment(int(message.Timestamp))
        )
    if isinstance(message, ConnectedEv):
        has_jid = me is not None and me.HasField("JID") and me.JID.User
        return Online(str(Jid2String(me.JID)) if has_jid else "", str(me.PushName) if me is not None else "")
    if isinstance(message, PairStatusEv):
        if message.Status == PairStatusEv.SUCCESS:
            return Paired(str(Jid2String(message.ID)))
        return Ended(f"pairing failed: {message.Error}")
    if isinstance(message, DisconnectedEv):
        return Dropped()
    if isinstance(message, StreamReplacedEv):
        return Replaced()
    if isinstance(message, ClientOutdatedEv):
        return Outdated()
    if isinstance(message, TemporaryBanEv):
        return Banned(int(message.Expire))
    if isinstance(message, LoggedOutEv | ConnectFailureEv):
        reason = int(message.Reason)
        if reason in _OUTDATED_REASONS:
            return Outdated()
        if reason == ConnectFailureReason.TEMP_BANNED:
            return Banned(0)  # no wait given with this reason
        if isinstance(message, LoggedOutEv) or reason in _LOGGED_OUT_REASONS:
            return LoggedOut()
        if reason in _RETRIED_REASONS:
            return None  # whatsmeow reconnects by itself
        # whatsmeow disconnected for good and the connect call keeps waiting: end it
        detail = f": {message.Message}" if message.Message else ""
        return Ended(f"WhatsApp refused the connection ({ConnectFailureReason.Name(reason)}){detail}")
    return None


def _stored_devices(database: str) -> set[str]:
    """The JIDs of the devices in the library's store (blocking: run it in a thread).
    neonize's own ``get_all_devices_from_db`` fails on a push name with a comma."""
    answer = bytes(gocode.GetAllDevices(database.encode(), func_callback_bytes2(log_whatsmeow))).decode()
    if answer.startswith("error: "):
        raise OSError(answer.removeprefix("error: "))
    return {row.split(",", 1)[0] for row in answer.split("|\u0001|") if row}


class NeonizeClient:
    """One linked device's connection to WhatsApp through neonize (see the module docstring).

    ``proxy`` (``http://host:port`` or ``socks5://host:port``) routes WhatsApp's traffic.
    Events go to one reader of :meth:`events`, which ends after :class:`Ended` (once)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        stop_wait: float = DEFAULT_STOP_WAIT,
        proxy: str | None = None,
    ) -> None:
        self._config = config
        self._connect_timeout = connect_timeout
        self._stop_wait = stop_wait
        self._proxy = proxy
        self._key = f"{config.connection_id}/{secrets.token_hex(4)}"  # the library's key of this client
        self._log = log.bind(connection_id=config.connection_id)
        self._queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._started = False
        self._stop_asked = False
        self._ended = False
        self._client: Any = None
        self._connecting: asyncio.Task[None] | None = None  # neonize's connect task
        self._stopping: asyncio.Task[None] | None = None
        self._silence: asyncio.TimerHandle | None = None

    async def events(self) -> AsyncIterator[ClientEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, Ended):
                return

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("a NeonizeClient starts once")
        self._started = True
        if self._ended:
            return  # stopped before it started
        loop = asyncio.get_running_loop()
        make_room(loop)
        device = None
        if self._config.jid:
            try:
                device = parse_jid(self._config.jid)
                stored = await asyncio.to_thread(_stored_devices, self._config.database)
            except ValueError:
                stored = set()  # a session nobody can resume: pair anew
            except (OSError, NeonizeError) as exc:
                self._finish(f"cannot read the session store: {exc}")
                return
            if device is None or Jid2String(device) not in stored:
                self._log.warning("whatsapp_session_not_stored")  # resuming it would crash the process
                self._emit(LoggedOut())
                return
        if self._ended:
            return  # stopped while the store was read
        if self._proxy is None and not await _resolves(loop, WHATSAPP_HOST):
            # Each library client keeps a connection to its session store open for good, so
            # without a network (no DNS) the library is not started at all.
            self._finish(f"failed to dial whatsapp web websocket: lookup {WHATSAPP_HOST}: no such host")
            return
        client = NewAClient(
            self._config.database,
            props=DeviceProps(os=DEVICE_NAME, platformType=DeviceProps.CHROME),
            uuid=self._key,  # passed with ``jid``, neonize would key the client by the phone number
            new_device=device is None,
        )
        client.jid = device
        client.event.qr(self._on_qr)
        for kind in (
            MessageEv, ReceiptEv, ConnectedEv, PairStatusEv, DisconnectedEv, StreamReplacedEv,
            ClientOutdatedEv, TemporaryBanEv, LoggedOutEv, ConnectFailureEv,
        ):  # fmt: skip
            client.event(kind)(self._on_event)
        self._client = client
        neonize_events.event_global_loop = loop  # the library keeps the first loop it saw
        proxy = ProxySettings(proxy_address=self._proxy) if self._proxy else None
        self._log.info("whatsapp_connecting", resume=device is not None, proxy=proxy is not None)
        self._connecting = await client.connect(proxy)
        self._connecting.add_done_callback(self._connect_ended)
        self._silence = loop.call_later(self._connect_timeout, self._no_answer)

    async def pair_phone(self, phone_number: str) -> str:
        if self._client is None:
            raise ValueError("the client is not connected")
        try:
            code = await self._client.PairPhone(
                phone_digits(phone_number), True, ClientName.LINUX, ClientType.CHROME
            )  # shown on the phone as "Chrome (Linux)"
        except NeonizeError as exc:
            raise ValueError(str(exc)) from None
        return str(code)

    async def send_text(self, chat: str, text: str) -> SentMessage:
        if self._client is None:
            raise SendFailed("the client is not connected")
        try:
            sent = await self._client.send_message(parse_jid(chat), Message(conversation=text))
        except (NeonizeError, ValueError) as exc:
            raise SendFailed(str(exc)) from None
        return SentMessage(str(sent.ID), moment(int(sent.Timestamp)))

    async def send_typing(self, chat: str, typing: bool) -> None:
        if self._client is None:
            raise SendFailed("the client is not connected")
        state = ChatPresence.CHAT_PRESENCE_COMPOSING if typing else ChatPresence.CHAT_PRESENCE_PAUSED
        try:
            await self._client.send_chat_presence(
                parse_jid(chat), state, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
            )
        except (NeonizeError, ValueError) as exc:
            raise SendFailed(str(exc)) from None

    async def download(self, message: Any) -> bytes:
        """The file of a received ``MessageEv``; :class:`OSError` when WhatsApp has none for it."""
        if self._client is None:
            raise OSError("the client is not connected")
        try:
            return bytes(await self._client.download_any(message.Message))
        except NeonizeError as exc:
            raise OSError(f"WhatsApp download failed: {exc}") from None

    async def stop(self) -> None:
        self._stop_asked = True
        if self._connecting is not None:
            stopping = self._stop_library()
            done, _ = await asyncio.wait({stopping}, timeout=self._stop_wait)
            if not done:
                self._log.warning("whatsapp_stop_pending", waited=self._stop_wait)
        self._finish(None)

    # --- the library's side --------------------------------------------------------------------

    async def _on_qr(self, _client: Any, code: bytes) -> None:
        self._emit(QrCode(code.decode()))

    async def _on_event(self, _client: Any, message: Any) -> None:
        try:
            event = client_event(message, self._client.me)
        except Exception as exc:  # an event we cannot read must not go unnoticed (the library drops it)
            self._log.error("whatsapp_event_unreadable", kind=type(message).__name__, error=repr(exc))
            return
        if isinstance(event, Ended):
            self._log.warning("whatsapp_client_ended", error=event.error)
            self._give_up(event.error)
        elif event is not None:
            self._emit(event)

    def _emit(self, event: ClientEvent) -> None:
        if self._ended:
            return
        if not isinstance(event, Dropped) and self._silence is not None:
            self._silence.cancel()  # WhatsApp answered
        self._queue.put_nowait(event)

    def _finish(self, error: str | None) -> None:
        """``Ended`` (once)."""
        if self._ended:
            return
        self._ended = True
        if self._silence is not None:
            self._silence.cancel()
        self._queue.put_nowait(Ended(error))

    def _give_up(self, error: str | None) -> None:
        """End the client although nobody asked, and stop the library off the critical path."""
        self._finish(error)
        self._stop_library()

    def _no_answer(self) -> None:
        if not self._ended:
            self._log.warning("whatsapp_no_answer", seconds=self._connect_timeout)
            self._give_up(f"no answer from WhatsApp within {self._connect_timeout:g} s")

    def _connect_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._finish(None)  # neonize stops the Go side itself when cancelled
            return
        error = task.exception()
        if error is None or self._stop_asked:
            self._finish(None)  # the library was stopped (how the dial ended then does not matter)
            return
        self._log.info("whatsapp_dial_failed", error=str(error))
        self._give_up(str(error) or type(error).__name__)  # stopping frees the library's state

    def _stop_library(self) -> asyncio.Task[None]:
        """The one task that stops the library (its ``stop()`` can block up to a dial deadline)."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop_now())
        return self._stopping

    async def _stop_now(self) -> None:
        try:
            await self._client.stop()
        except Exception as exc:  # stopping is best effort: the client is over either way
            self._log.warning("whatsapp_stop_failed", error=repr(exc))
        asyncio.get_running_loop().call_later(self._stop_wait, self._check_released)

    def _check_released(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            # the library's connect call still holds its worker thread (see the module docstring)
            self._log.warning("whatsapp_thread_pinned")


def new_client(config: ClientConfig) -> NeonizeClient:
    """The :data:`~adapters.channels.whatsapp.client.NewClient` of the real library."""
    return NeonizeClient(config)


async def _resolves(loop: asyncio.AbstractEventLoop, host: str) -> bool:
    """Whether ``host`` has an address (within :data:`DNS_TIMEOUT`)."""
    try:
        async with asyncio.timeout(DNS_TIMEOUT):
            await loop.getaddrinfo(host, 443)
    except (OSError, TimeoutError):
        return False
    return True
