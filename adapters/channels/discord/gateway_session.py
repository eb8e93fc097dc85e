"""One Discord bot's gateway session, hand-written over ``websockets``: HELLO, IDENTIFY or
RESUME, heartbeats, dispatches appended as canonical events. Its sequence moves past a
dispatch only once the dispatch's events are stored, so a RESUME after a dropped socket
replays what was not stored yet (hikari's GatewayBot moves it on receipt, and cannot be
pointed at another gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import random
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

import hikari
import httpx
import structlog
from hikari.errors import ShardCloseCode
from hikari.impl import RESTClientImpl
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from adapters.channels.backfill import backfill_once
from adapters.channels.discord import KIND
from adapters.channels.discord.client import clean_token, is_token_shaped, rest_app
from adapters.channels.discord.history import HistoryRefused, discord_history
from adapters.channels.discord.normalize import Json, actor
from adapters.channels.discord.session import DispatchInbox, download_attachment
from adapters.channels.health import Refused, ReportingSession, Unreachable
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev

if TYPE_CHECKING:
    from adapters.channels.registry import SessionEnv

log = structlog.get_logger()

GATEWAY_VERSION = 10
# Guild and DM messages with their text, reactions, and guilds (for channel names).
INTENTS = (
    hikari.Intents.GUILDS
    | hikari.Intents.GUILD_MESSAGES
    | hikari.Intents.GUILD_MESSAGE_REACTIONS
    | hikari.Intents.DM_MESSAGES
    | hikari.Intents.DM_MESSAGE_REACTIONS
    | hikari.Intents.MESSAGE_CONTENT
)
_MAX_GATEWAY_FRAME = 32 * 1024 * 1024  # GUILD_CREATE of a large server is big

# Gateway opcodes.
DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
RESUME = 6
RECONNECT = 7
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11
_RESUMABLE_CLOSE = 4000  # any code but 1000/1001 keeps the session resumable


# --- in: one bot's gateway session ---------------------------------------------------------

_UNREACHABLE_MESSAGE = "Discord cannot be reached right now; Moltbot keeps trying."


_TOKEN_REVOKED = ("token_revoked", "Discord no longer accepts this bot token", "reconnect")
# Close codes after which reconnecting cannot help (Discord: "do not reconnect").
_REFUSALS: dict[int, tuple[str, str, str | None]] = {
    ShardCloseCode.AUTHENTICATION_FAILED: _TOKEN_REVOKED,
    ShardCloseCode.DISALLOWED_INTENT: (
        "intents_disallowed",
        "Discord does not let this bot read message text: turn on Message Content Intent"
        " (Developer Portal → Bot → Privileged Gateway Intents), then reconnect",
        "reconnect",
    ),
    ShardCloseCode.INVALID_INTENT: (
        "intents_invalid",
        "Discord refused the gateway intents Moltbot asked for",
        None,
    ),
    ShardCloseCode.SHARDING_REQUIRED: (
        "sharding_required",
        "This bot is in too many servers for one gateway connection; Moltbot cannot serve it yet",
        None,
    ),
    ShardCloseCode.INVALID_SHARD: (
        "invalid_shard",
        "Discord refused the gateway shard Moltbot asked for",
        None,
    ),
    ShardCloseCode.INVALID_VERSION: (
        "gateway_version",
        "Discord no longer serves this gateway version",
        None,
    ),
}
_NEW_SESSION_CODES = (ShardCloseCode.INVALID_SEQ, ShardCloseCode.SESSION_TIMEOUT)


def _gateway_address(base: str) -> str:
    """``base`` with the version and encoding we speak (no compression)."""
    parts = urlsplit(base)
    query = urlencode({"v": GATEWAY_VERSION, "encoding": "json"})
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


class DiscordSession(ReportingSession):
    """Holds one bot's gateway connection, appends its events and reports its health.

    ``run`` returns when Discord refuses the token or the bot's settings (reported as
    ``action_required``); a dropped socket is resumed at once (``RESUME`` with the session
    id and the last stored sequence); failing to reach Discord is reported as ``degraded``
    and retried with exponential backoff; an error of the event store ends ``run`` with it
    (the session manager restarts it, and a new session starts from Discord's present).
    """

    def __init__(self, env: SessionEnv, *, connect_timeout: float = 15.0, first_backoff: float = 1.0) -> None:
        super().__init__(
            env, kind=KIND, log=log, stored_as="discord_dispatch_stored", first_backoff=first_backoff
        )
        self._token = clean_token(env.secret["token"])
        self._api_base = env.endpoints.discord_api_base
        self._cdn_base = env.endpoints.discord_cdn_base
        self._configured_gateway = env.endpoints.discord_gateway_url
        self._gateway_base = self._configured_gateway  # None: asked of GET /gateway/bot
        self._connect_timeout = connect_timeout
        self.session_id: str | None = None
        self.seq: int | None = None  # the last dispatch handled: all before it are stored
        self.bot_user_id: str | None = None
        self.bot_username: str | None = None
        self.owner_user_id: str | None = None  # who owns the bot's application (None: not known)
        self._resume_url: str | None = None
        self._awaiting_ack = False
        self._inbox = DispatchInbox(
            self._intake, tenant_id=self.tenant_id, connection_id=self.connection_id, log=self._log
        )
        self._store = env.store
        # Added to a server with "Add to server": the deployment's bot, shared by every inbox
        # that installed it; this connection is that one server's (None: a pasted bot of its own).
        self._guild_id = env.secret.get("guild_id") or None
        self._backfilling: asyncio.Task[object] | None = None  # the history, once per connection

    async def run(self) -> None:
        if not is_token_shaped(self._token):
            await self._health.report(
                "action_required", "token_invalid", "This is not a Discord bot token", action="reconnect"
            )
            return
        await self._health.report("connecting", "connecting", "Connecting to Discord…")
        app = rest_app(self._api_base, max_retries=0, timeout=self._connect_timeout)
        await app.start()
        try:
            async with app.acquire(self._token, hikari.TokenType.BOT) as rest:
                if self._guild_id is None:  # a shared bot's application owner is the deployment's
                    await self._learn_owner(rest)
                await self._stay_linked(lambda: self._connect(rest), unreachable=_UNREACHABLE_MESSAGE)
        finally:
            if self._backfilling is not None:
                self._backfilling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._backfilling
            await app.close()

    def _backfill(self) -> None:
        """Bring the recent history in, once per connection, beside the live dispatches."""
        if self._backfilling is not None or self.bot_user_id is None:
            return
        history = discord_history(
            self._token, self._api_base, tenant_id=self.tenant_id, connection_id=self.connection_id,
            bot_user_id=self.bot_user_id, owner_user_id=self.owner_user_id, log=self._log,
            guild_id=self._guild_id,
        )  # fmt: skip
        self._backfilling = asyncio.create_task(
            backfill_once(
                self._store, self._intake, tenant_id=self.tenant_id, connection_id=self.connection_id,
                actor=actor(self.connection_id), history=history,
                errors=(HistoryRefused, httpx.HTTPError, ValueError), log=self._log,
            )
        )  # fmt: skip

    async def _learn_owner(self, rest: RESTClientImpl) -> None:
        """The application's owner (a team's owner for a team app): their messages are the
        owner answering themselves. Best effort: unknown, every message is someone else's."""
        try:
            application = await rest.fetch_application()
        except Exception as exc:  # an outage, or an answer hikari cannot read: not worth a session
            self._log.info("discord_owner_unknown", error=repr(exc))
            return
        owner = application.team.owner_id if application.team is not None else application.owner.id
        self.owner_user_id = str(owner)

    async def _address(self, rest: RESTClientImpl) -> str:
        if self.session_id is not None and self._resume_url:
            return _gateway_address(self._resume_url)
        if self._gateway_base is None:
            try:
                info = await rest.fetch_gateway_bot_info()
            except hikari.UnauthorizedError:
                raise Refused(*_TOKEN_REVOKED) from None
            except hikari.HTTPError as exc:
                raise Unreachable(f"GET /gateway/bot failed: {exc}") from None
            self._gateway_base = info.url
        return _gateway_address(self._gateway_base)

    async def _connect(self, rest: RESTClientImpl) -> bool:
        """One gateway connection, until it ends; True when it is worth reconnecting at once."""
        try:
            return await self._connect_once(rest)
        except Unreachable:
            self._gateway_base = self._configured_gateway  # ask /gateway/bot again
            raise

    async def _connect_once(self, rest: RESTClientImpl) -> bool:
        address = await self._address(rest)
        try:
            socket = await ws_connect(
                address,
                open_timeout=self._connect_timeout,
                ping_interval=None,  # the gateway's heartbeats keep it alive
                close_timeout=2,
                max_size=_MAX_GATEWAY_FRAME,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise Unreachable(f"cannot open the gateway: {exc!r}") from None
        async with socket:
            try:
                hello = json.loads(await asyncio.wait_for(socket.recv(), self._connect_timeout))
            except ConnectionClosed as closed:
                self._closed(closed)  # a refusal (e.g. 4012) ends the session
                raise Unreachable(f"the gateway closed before HELLO: {closed!r}") from None
            except (TimeoutError, ValueError) as exc:
                raise Unreachable(f"no HELLO from the gateway: {exc!r}") from None
            if hello.get("op") != HELLO:
                raise Unreachable(f"the gateway began with opcode {hello.get('op')}, not HELLO")
            interval = float(hello["d"]["heartbeat_interval"]) / 1000
            self._awaiting_ack = False
            await self._handshake(socket)
            # Not a TaskGroup: it would wrap the receive loop's Refused in an ExceptionGroup.
            beating = asyncio.create_task(self._heartbeat(socket, interval))
            try:
                return await self._receive(socket)
            finally:
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating

    async def _handshake(self, socket: ClientConnection) -> None:
        if self.session_id is not None and self.seq is not None:
            self._log.info("discord_resuming", session_id=self.session_id, seq=self.seq)
            resume = {"token": self._token, "session_id": self.session_id, "seq": self.seq}
            await _send(socket, {"op": RESUME, "d": resume})
            return
        identify = {
            "token": self._token,
            "intents": int(INTENTS),
            "properties": {"os": platform.system().lower(), "browser": "moltbot", "device": "moltbot"},
        }
        await _send(socket, {"op": IDENTIFY, "d": identify})

    async def _heartbeat(self, socket: ClientConnection, interval: float) -> None:
        await asyncio.sleep(interval * random.random())  # Discord asks for a jittered first beat
        while True:
            if self._awaiting_ack:
                # No ACK since the last beat: a zombie connection. Closing it makes the receive
                # loop end, and the session resumes on a new one.
                self._log.warning("discord_heartbeat_unacknowledged")
                await socket.close(_RESUMABLE_CLOSE, "heartbeat not acknowledged")
                return
            self._awaiting_ack = True
            await _send(socket, {"op": HEARTBEAT, "d": self.seq})
            await asyncio.sleep(interval)

    async def _receive(self, socket: ClientConnection) -> bool:
        ready = False
        while True:
            raise_if_cancelled()  # storing the last dispatch (a publish) can swallow it
            try:
                frame = await socket.recv()
            except ConnectionClosed as closed:
                self._closed(closed)
                return ready
            message = json.loads(frame)
            op = message.get("op")
            if op == DISPATCH:
                await self._dispatch(message)
                ready = ready or message.get("t") in ("READY", "RESUMED")
            elif op == HEARTBEAT_ACK:
                self._awaiting_ack = False
            elif op == HEARTBEAT:  # the gateway asks for one now
                await _send(socket, {"op": HEARTBEAT, "d": self.seq})
            elif op == RECONNECT:
                self._log.info("discord_reconnect_requested")
                await socket.close(_RESUMABLE_CLOSE, "reconnecting")
                return True
            elif op == INVALID_SESSION:
                resumable = bool(message.get("d"))
                self._log.info("discord_session_invalidated", resumable=resumable)
                if not resumable:
                    self._forget_session()
                await socket.close(_RESUMABLE_CLOSE, "session invalidated")
                # Discord asks for a random 1-5 s wait before identifying again.
                await asyncio.sleep(random.uniform(1, 5) * self._backoff.first)
                return True

    def _closed(self, closed: ConnectionClosed) -> None:
        code = closed.rcvd.code if closed.rcvd is not None else None
        reason = closed.rcvd.reason if closed.rcvd is not None else ""
        self._log.info("discord_gateway_closed", code=code, reason=reason, seq=self.seq)
        if code in _REFUSALS:
            raise Refused(*_REFUSALS[code])
        if code in _NEW_SESSION_CODES:
            self._forget_session()

    def _forget_session(self) -> None:
        self.session_id, self.seq, self._resume_url = None, None, None

    async def _download(self, attachment: ev.Attachment) -> bytes:
        return await download_attachment(attachment, self._cdn_base)

    async def _dispatch(self, message: Json) -> None:
        name = message.get("t")
        data = message.get("d") or {}
        if name == "READY":
            self.session_id = str(data["session_id"])
            self._resume_url = data.get("resume_gateway_url")
            self.bot_user_id = str(data["user"]["id"])
            self.bot_username = str(data["user"].get("username") or self.bot_user_id)
            await self._health.report("connected", "ok", f"Connected to Discord as {self.bot_username}")
            self._backfill()
        elif name == "RESUMED":
            self._log.info("discord_resumed", session_id=self.session_id, seq=self.seq)
            await self._health.report("connected", "ok", f"Connected to Discord as {self.bot_username}")
        elif not self._ours(name, data):
            pass  # another server's (or a DM to the shared bot): another inbox's, or no one's
        elif name in ("GUILD_CREATE", "GUILD_UPDATE", "CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE"):
            self._inbox.remember_names(name, data)
        else:
            await self._inbox.store(message, self.bot_user_id or "", self.owner_user_id)
        if isinstance(message.get("s"), int):
            self.seq = message["s"]  # only now: a RESUME replays from here

    def _ours(self, name: str | None, data: Json) -> bool:
        """Whether a dispatch is this connection's: all of them for a bot of its own; for the
        shared bot, only its server's (a GUILD_* names the server by ``id``)."""
        if self._guild_id is None:
            return True
        guild = data.get("id") if name in ("GUILD_CREATE", "GUILD_UPDATE") else data.get("guild_id")
        return str(guild) == self._guild_id


async def _send(socket: ClientConnection, payload: Json) -> None:
    """Send a gateway payload; a closed socket is noticed (and handled) by the receive loop."""
    with contextlib.suppress(ConnectionClosed):
        await socket.send(json.dumps(payload))
