"""A fake of Discord (REST API v10 and the gateway), served on 127.0.0.1.

hikari's REST client talks to it over HTTP (``Authorization: Bot <token>``, JSON bodies,
Discord's error bodies ``{"message", "code"}`` and rate-limit headers), and the
connector's gateway client over a WebSocket speaking Discord's opcodes, so tests
exercise request building, response parsing, hikari's error classes and rate-limit
buckets, and the gateway protocol, not a mock of them.

REST (under ``/api/v10``): ``GET /users/@me``, ``GET /oauth2/applications/@me`` (the
bot's application and its ``owner``), ``GET /gateway`` and ``/gateway/bot``
(the gateway's URL), ``PATCH /channels/{id}/messages/{id}`` (the bot's own messages:
``edited``), ``POST /channels/{id}/messages`` (assigns a snowflake, honours
``nonce`` + ``enforce_nonce`` as Discord does: a known nonce returns the message it made;
the bot's own message is dispatched back as ``MESSAGE_CREATE``, as Discord does) and
``POST /channels/{id}/typing``.

Gateway (``ws://…/?v=10&encoding=json``; no compression): HELLO (10) with
``heartbeat_interval``, HEARTBEAT (1) answered with ACK (11), IDENTIFY (2) answered with
READY and one GUILD_CREATE per guild, RESUME (6) answered with the dispatches after the
given ``seq`` and RESUMED (or INVALID_SESSION (9) when the session is unknown),
RECONNECT (7) and INVALID_SESSION on request, and Discord's close codes (4001, 4003,
4004 authentication failed, 4005, 4007 invalid seq, 4012 invalid version, 4014 disallowed
intents). A session keeps every dispatch, so events pushed while no socket is open are
delivered by the client's RESUME.

Test controls: :meth:`FakeDiscord.add_bot` (→ token), :meth:`~FakeDiscord.add_guild`,
:meth:`~FakeDiscord.dm_channel`, :meth:`~FakeDiscord.push_message`,
:meth:`~FakeDiscord.push_edit`, :meth:`~FakeDiscord.push_delete`,
:meth:`~FakeDiscord.push_reaction`, :meth:`~FakeDiscord.dispatch` (any event, or the same
one again), :meth:`~FakeDiscord.revoke` (REST 401 and gateway close 4004),
:meth:`~FakeDiscord.rate_limit` (429 with ``retry_after``), :meth:`~FakeDiscord.fail`,
:meth:`~FakeDiscord.forbid` (403 for a channel), :meth:`~FakeDiscord.drop_connection`,
:meth:`~FakeDiscord.request_reconnect`, :meth:`~FakeDiscord.invalidate_session`,
``gateway_down`` (refuse WebSocket handshakes), ``ack_heartbeats``,
``heartbeat_interval_ms``; and what happened: ``sent``, ``typing``, ``identifies``,
``resumes``, ``heartbeats``, ``connections``, ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.serving import serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Json = dict[str, Any]

API = "/api/v10"
MAX_TEXT = 2000
DISCORD_EPOCH_MS = 1_420_070_400_000
MESSAGE_CONTENT_INTENT = 1 << 15

# Routes, as tests name them for rate_limit() and fail().
GET_ME = "GET /users/@me"
GET_GATEWAY_BOT = "GET /gateway/bot"
CREATE_MESSAGE = "POST /channels/{channel_id}/messages"
EDIT_MESSAGE = "PATCH /channels/{channel_id}/messages/{message_id}"
GET_APPLICATION = "GET /oauth2/applications/@me"
TRIGGER_TYPING = "POST /channels/{channel_id}/typing"
GET_MY_GUILDS = "GET /users/@me/guilds"
OAUTH_TOKEN = "POST /oauth2/token"
GET_GUILD_CHANNELS = "GET /guilds/{guild_id}/channels"
GET_MESSAGES = "GET /channels/{channel_id}/messages"
_ROUTES = (
    (re.compile(r"^/users/@me$"), "GET", GET_ME),
    (re.compile(r"^/users/@me/guilds$"), "GET", GET_MY_GUILDS),
    (re.compile(r"^/oauth2/token$"), "POST", OAUTH_TOKEN),
    (re.compile(r"^/guilds/(?P<guild_id>\d+)/channels$"), "GET", GET_GUILD_CHANNELS),
    (re.compile(r"^/channels/(?P<channel_id>\d+)/messages$"), "GET", GET_MESSAGES),
    (re.compile(r"^/oauth2/applications/@me$"), "GET", GET_APPLICATION),
    (re.compile(r"^/gateway/bot$"), "GET", GET_GATEWAY_BOT),
    (re.compile(r"^/gateway$"), "GET", "GET /gateway"),
    (re.compile(r"^/channels/(?P<channel_id>\d+)/messages$"), "POST", CREATE_MESSAGE),
    (re.compile(r"^/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)$"), "PATCH", EDIT_MESSAGE),
    (re.compile(r"^/channels/(?P<channel_id>\d+)/typing$"), "POST", TRIGGER_TYPING),
)


# --- building Discord objects -------------------------------------------------------------


def user(user_id: int, username: str, global_name: str | None = None, *, bot: bool = False) -> Json:
    """A Discord ``User`` (new-style usernames: discriminator ``"0"``)."""
    person: Json = {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "public_flags": 0,
    }
    if bot:
        person["bot"] = True
    return person


ADA = user(80351110224678912, "ada", "Ada Lovelace")
CHARLES = user(80351110224678913, "cbabbage", "Charles Babbage")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class _Snowflakes:
    """Discord ids: milliseconds since 2015 in the top bits, so ids sort by time."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> str:
        value = max((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22, self._last + 1)
        self._last = value
        return str(value)


def _token_for(bot_id: str) -> str:
    """A token shaped like Discord's: base64(bot id) . timestamp . HMAC."""
    head = base64.b64encode(bot_id.encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(28)}"


# --- state -------------------------------------------------------------------------------


@dataclass
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class _Socket:
    """One gateway WebSocket: frames queue here and a writer sends them in order."""

    path: str
    outbox: asyncio.Queue[Json | _Close] = field(default_factory=asyncio.Queue)
    session: _Session | None = None
    closing: bool = False

    def put(self, payload: Json) -> None:
        if not self.closing:
            self.outbox.put_nowait(payload)

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.outbox.put_nowait(_Close(code, reason))


@dataclass(eq=False)
class _Session:
    session_id: str
    token: str
    intents: int
    seq: int = 0
    dispatched: list[Json] = field(default_factory=list)  # every dispatch, for RESUME
    socket: _Socket | None = None


@dataclass
class _Bot:
    token: str
    user: Json
    application_id: str
    message_content_allowed: bool = True
    owner: Json | None = None  # the application's owner (a person); None: the Developer Portal's default
    session: _Session | None = None  # the latest identified one
    pending: list[tuple[str, Json]] = field(default_factory=list)  # pushed before any session


@dataclass
class _Channel:
    id: str
    type: int  # 0 guild text, 1 DM
    name: str | None = None
    guild_id: str | None = None
    recipient: Json | None = None

    def json(self) -> Json:
        channel: Json = {"id": self.id, "type": self.type}
        if self.guild_id is not None:
            channel |= {
                "guild_id": self.guild_id,
                "name": self.name,
                "position": 0,
                "permission_overwrites": [],
            }
        if self.recipient is not None:
            channel["recipients"] = [self.recipient]
        return channel


@dataclass
class _Failure:
    status: int
    message: str
    code: int
    times: int
    retry_after: float | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: int = 0, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"message": message, "code": code, **extra}
        self.headers: list[tuple[bytes, bytes]] = []


class FakeDiscord:
    """Discord's state for any number of bots, and the knobs tests turn."""

    def __init__(self) -> None:
        self.api_base = ""  # http://127.0.0.1:<port>/api/v10, hikari's rest_url
        self.gateway_url = ""  # ws://127.0.0.1:<port>, what /gateway/bot answers
        self.resume_gateway_url = ""  # ws://127.0.0.1:<port>/resume, what READY names
        self.heartbeat_interval_ms = 41_250
        self.ack_heartbeats = True
        self.gateway_down = False  # refuse WebSocket handshakes (HTTP 403)
        self.valid_tokens: dict[str, Json] = {}  # token -> the bot's User
        self.sent: list[Json] = []  # {"token", "channel_id", "content", "message_id", "nonce", "message"}
        self.edited: list[Json] = []  # {"token", "channel_id", "message_id", "content", "at" (monotonic)}
        self.typing: list[Json] = []  # {"token", "channel_id"}
        self.files: dict[str, bytes] = {}  # CDN path -> attachment bytes
        self.identifies: list[Json] = []
        self.resumes: list[Json] = []  # the RESUME payloads, with the "path" they came on
        self.heartbeats: list[int | None] = []
        self.connections: list[str] = []  # the path of every accepted gateway socket
        self.requests: list[tuple[str, str]] = []  # (method, path under /api/v10)
        self._bots: dict[str, _Bot] = {}
        self._sessions: dict[str, _Session] = {}
        self._sockets: set[_Socket] = set()
        self._channels: dict[str, _Channel] = {}
        self._guilds: dict[str, Json] = {}
        self._forbidden: dict[str, tuple[int, str]] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._nonces: dict[tuple[str, str], Json] = {}
        self._ids = _Snowflakes()
        self.history: dict[str, list[Json]] = {}  # channel id -> messages said before (GET …/messages)
        self._oauth_clients: dict[str, tuple[str, str]] = {}  # client id -> (secret, bot token)
        self._codes: dict[str, tuple[str, str, str]] = {}  # code -> (client id, guild id, redirect uri)
        self._session_numbers = itertools.count(1)

    # --- bots, guilds, channels ------------------------------------------------------

    def add_bot(
        self,
        username: str = "moltbot",
        global_name: str | None = "Moltbot",
        *,
        message_content: bool = True,
        owner: Json | None = None,
    ) -> str:
        """Register a bot; returns its token. ``message_content=False``: its Message Content
        intent is off in the Developer Portal (IDENTIFY asking for it is closed with 4014).
        ``owner``: the person whose application it is (``GET /oauth2/applications/@me``)."""
        bot_id = self._ids()
        bot_user = user(int(bot_id), username, global_name, bot=True)
        token = _token_for(bot_id)
        self.valid_tokens[token] = bot_user
        owner = owner or user(int(self._ids()), f"{username}-owner", None)
        self._bots[token] = _Bot(
            token, bot_user, self._ids(), message_content_allowed=message_content, owner=owner
        )
        return token

    def bot_user(self, token: str | None = None) -> Json:
        return self._bot(token).user

    def last_seq(self, token: str | None = None) -> int:
        """The sequence of the last dispatch to the bot's current session (0: none yet)."""
        session = self._bot(token).session
        return session.seq if session is not None else 0

    def _bot(self, token: str | None) -> _Bot:
        if token is None:
            if len(self._bots) != 1:
                raise ValueError("name the bot's token: the fake has several (or none)")
            return next(iter(self._bots.values()))
        return self._bots[token]

    def add_guild(self, name: str = "Analytical Engine Club", channels: Sequence[str] = ("general",)) -> Json:
        """A server the bots are in, with text channels; returns its ``GUILD_CREATE`` shape."""
        guild_id = self._ids()
        listed = []
        for channel_name in channels:
            channel = _Channel(self._ids(), 0, channel_name, guild_id)
            self._channels[channel.id] = channel
            listed.append(channel.json())
        guild = {"id": guild_id, "name": name, "channels": listed, "threads": [], "unavailable": False}
        self._guilds[guild_id] = guild
        return guild

    def said_before(self, channel_id: str, author: Json, content: str, *, ago: float) -> Json:
        """A message ``ago`` seconds old in ``channel_id``'s history (``GET …/messages``)."""
        at = datetime.now(UTC) - timedelta(seconds=ago)
        message = self.message(channel_id, author, content)
        snowflake = ((int(at.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | (int(message["id"]) & 0x3FFFFF)
        message |= {"id": str(snowflake), "timestamp": _iso(at)}
        self.history.setdefault(str(channel_id), []).append(message)
        return message

    def _last_message_id(self, channel_id: str) -> str | None:
        ids = [int(m["id"]) for m in self.history.get(channel_id, [])]
        return str(max(ids)) if ids else None

    def add_application(self, token: str) -> tuple[str, str]:
        """The OAuth2 client of the bot ``token``'s application: (client id, client secret)."""
        bot = self._bots[token]
        secret = secrets.token_urlsafe(24)
        self._oauth_clients[bot.application_id] = (secret, token)
        return bot.application_id, secret

    def authorize(self, client_id: str, guild_id: str, redirect_uri: str) -> str:
        """A person with Manage Server added the application's bot to ``guild_id`` on Discord's
        consent page: the code Discord sends the browser back with."""
        code = secrets.token_urlsafe(16)
        self._codes[code] = (client_id, guild_id, redirect_uri)
        return code

    def _exchange_code(self, authorization: str, form: dict[str, str]) -> Json:
        try:
            client_id, _, secret = (
                base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
            )
        except ValueError:
            raise ApiError(401, "invalid_client", error="invalid_client") from None
        known = self._oauth_clients.get(client_id)
        if known is None or not secrets.compare_digest(known[0], secret):
            raise ApiError(401, "invalid_client", error="invalid_client")
        granted = self._codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or granted is None or granted[0] != client_id:
            raise ApiError(400, "invalid_grant", error="invalid_grant")
        if granted[2] != form.get("redirect_uri"):
            raise ApiError(400, "invalid_grant", error="invalid_grant")
        guild = self._guilds[granted[1]]
        return {
            "access_token": secrets.token_urlsafe(20), "token_type": "Bearer", "expires_in": 604800,
            "refresh_token": secrets.token_urlsafe(20), "scope": "bot",
            "guild": {"id": guild["id"], "name": guild["name"], "icon": None, "owner_id": "1"},
        }  # fmt: skip

    def dm_channel(self, person: Json) -> str:
        """The id of a person's DM channel with the bot (made on first use)."""
        for channel in self._channels.values():
            if channel.recipient is not None and channel.recipient["id"] == person["id"]:
                return channel.id
        channel = _Channel(self._ids(), 1, recipient=person)
        self._channels[channel.id] = channel
        return channel.id

    def forbid(self, channel_id: str, code: int = 50013, message: str = "Missing Permissions") -> None:
        """Sending to this channel answers 403 (50013 missing permissions, 50001 missing access,
        50007 the person's DMs are closed)."""
        self._forbidden[str(channel_id)] = (code, message)

    def revoke(self, token: str) -> None:
        """The token was reset: REST answers 401, and the gateway closes with 4004."""
        self.valid_tokens.pop(token, None)
        for sock in list(self._sockets):
            if sock.session is not None and sock.session.token == token:
                sock.close(4004, "Authentication failed.")

    def rate_limit(self, route: str, retry_after: float, times: int = 1) -> None:
        """The next ``times`` calls of ``route`` (e.g. ``CREATE_MESSAGE``) answer 429."""
        failure = _Failure(429, "You are being rate limited.", 0, times, retry_after)
        self._failures.setdefault(route, []).append(failure)

    def fail(self, route: str, status: int, message: str, *, code: int = 0, times: int = 1) -> None:
        """The next ``times`` calls of ``route`` answer this error."""
        self._failures.setdefault(route, []).append(_Failure(status, message, code, times))

    # --- gateway controls --------------------------------------------------------------

    def drop_connection(self, code: int = 1001, reason: str = "Going away") -> None:
        """Close every open gateway socket (sessions stay resumable)."""
        for sock in list(self._sockets):
            sock.close(code, reason)

    def request_reconnect(self) -> None:
        """Send RECONNECT (7) on every open socket: clients should resume elsewhere."""
        for sock in list(self._sockets):
            sock.put({"op": 7, "d": None})

    def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION (9); unless ``resumable``, the session is forgotten."""
        for sock in list(self._sockets):
            if sock.session is not None and not resumable:
                self._sessions.pop(sock.session.session_id, None)
                bot = self._bots.get(sock.session.token)
                if bot is not None and bot.session is sock.session:
                    bot.session = None
                sock.session = None
            sock.put({"op": 9, "d": resumable})

    def dispatch(self, event: str, data: Json, *, token: str | None = None) -> None:
        """Dispatch an event to the bot's session (queued until one exists)."""
        bot = self._bot(token)
        if bot.session is None:
            bot.pending.append((event, data))
            return
        self._dispatch(bot.session, event, data)

    def _dispatch(self, session: _Session, event: str, data: Json) -> None:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.dispatched.append(payload)
        if session.socket is not None:
            session.socket.put(payload)

    # --- messages ----------------------------------------------------------------------

    def message(
        self,
        channel_id: str,
        author: Json,
        content: str = "",
        *,
        mentions: Sequence[Json] = (),
        attachments: Sequence[Json] = (),
        reply_to: Json | None = None,
    ) -> Json:
        """A ``Message`` as the gateway sends it (not dispatched: see :meth:`push_message`).

        ``attachments`` are ``{"filename", "content_type", "size"}``; ``reply_to`` is a message
        pushed before (or one from ``sent``).
        """
        channel = self._channels[str(channel_id)]
        message_id = self._ids()
        message: Json = {
            "id": message_id,
            "channel_id": channel.id,
            "author": author,
            "content": content,
            "timestamp": _iso(datetime.now(UTC)),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [dict(person) for person in mentions],
            "mention_roles": [],
            "attachments": [self._attachment(channel.id, each) for each in attachments],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if channel.guild_id is not None:
            message["guild_id"] = channel.guild_id
            message["member"] = {"nick": None, "roles": [], "joined_at": message["timestamp"], "deaf": False}
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                **({"guild_id": channel.guild_id} if channel.guild_id else {}),
            }
            message["referenced_message"] = {k: v for k, v in reply_to.items() if k != "referenced_message"}
        return message

    def _attachment(self, channel_id: str, spec: Json) -> Json:
        attachment_id = self._ids()
        path = f"/attachments/{channel_id}/{attachment_id}/{spec['filename']}"
        self.files[path] = spec.get("content", b"\x89PNG\r\n\x1a\n" + bytes(spec.get("size", 1024) - 8))
        url = f"https://cdn.discordapp.com{path}"
        return {
            "id": attachment_id,
            "filename": spec["filename"],
            "size": spec.get("size", 1024),
            "url": f"{url}?ex=67000000&is=66000000&hm=00",
            "proxy_url": f"{url.replace('cdn.discordapp.com', 'media.discordapp.net')}?ex=67000000",
            "content_type": spec.get("content_type"),
        }

    def push_message(
        self,
        channel_id: str,
        author: Json,
        content: str = "",
        *,
        mentions: Sequence[Json] = (),
        attachments: Sequence[Json] = (),
        reply_to: Json | None = None,
        token: str | None = None,
    ) -> Json:
        """Build a message (see :meth:`message`) and dispatch it as ``MESSAGE_CREATE``."""
        message = self.message(
            channel_id, author, content, mentions=mentions, attachments=attachments, reply_to=reply_to
        )
        self.dispatch("MESSAGE_CREATE", message, token=token)
        return message

    def push_edit(self, message: Json, content: str, *, token: str | None = None) -> Json:
        """The author edited ``message``: dispatch ``MESSAGE_UPDATE`` (the full message)."""
        sent_at = datetime.fromisoformat(message["timestamp"])
        edited_at = max(datetime.now(UTC), sent_at + timedelta(milliseconds=1))
        edited = {**message, "content": content, "edited_timestamp": _iso(edited_at)}
        self.dispatch("MESSAGE_UPDATE", edited, token=token)
        return edited

    def push_delete(self, message: Json, *, token: str | None = None) -> Json:
        """``message`` was deleted: dispatch ``MESSAGE_DELETE``."""
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        self.dispatch("MESSAGE_DELETE", data, token=token)
        return data

    def push_reaction(
        self, message: Json, person: Json, emoji: str, *, remove: bool = False, token: str | None = None
    ) -> Json:
        """``person`` reacted to ``message`` with a unicode ``emoji`` (or took it back)."""
        data: Json = {
            "user_id": person["id"],
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        if not remove:
            data["message_author_id"] = message["author"]["id"]
        self.dispatch("MESSAGE_REACTION_REMOVE" if remove else "MESSAGE_REACTION_ADD", data, token=token)
        return data

    # --- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._gateway(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    # REST

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path.startswith("/attachments/"):  # the CDN (cdn.discordapp.com)
            content = self.files.get(path)
            status = 200 if content is not None else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": content or b""})
            return
        try:
            if not path.startswith(f"{API}/"):
                raise ApiError(404, "404: Not Found")
            route_path = path[len(API) :]
            self.requests.append((method, route_path))
            query = dict(parse_qsl(scope.get("query_string", b"").decode()))
            status, result = self._call(method, route_path, headers.get("authorization", ""), body, query)
        except ApiError as exc:
            await _json(send, exc.status, exc.body, exc.headers)
            return
        if status == 204:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await _json(send, status, result)

    def _call(
        self, method: str, path: str, authorization: str, body: bytes, query: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        match, route = None, ""
        for pattern, route_method, name in _ROUTES:
            match = pattern.match(path)
            if match and method == route_method:
                route = name
                break
        if match is None or not route:
            raise ApiError(404, "404: Not Found")
        if route == "GET /gateway":
            return 200, {"url": self.gateway_url}
        if route == OAUTH_TOKEN:
            return 200, self._exchange_code(authorization, dict(parse_qsl(body.decode())))
        token = authorization.removeprefix("Bot ").strip()
        if not authorization.startswith("Bot ") or token not in self.valid_tokens:
            raise ApiError(401, "401: Unauthorized")
        self._scripted_failure(route)
        bot = self._bots[token]
        if route == GET_ME:
            return 200, {**bot.user, "mfa_enabled": False, "flags": 0, "verified": True, "locale": "en-US"}
        if route == GET_APPLICATION:
            return 200, {
                "id": bot.application_id, "name": bot.user["username"], "description": "", "icon": None,
                "bot_public": False, "bot_require_code_grant": False, "owner": bot.owner,
                "verify_key": "00" * 32, "flags": 0, "team": None, "approximate_guild_count": 1,
                "approximate_user_install_count": 0,
            }  # fmt: skip
        if route == GET_MY_GUILDS:
            return 200, [{"id": g["id"], "name": g["name"], "icon": None, "owner": False, "permissions": "0",
                          "features": []} for g in self._guilds.values()]  # fmt: skip
        if route == GET_GUILD_CHANNELS:
            guild_id = match["guild_id"]
            if guild_id not in self._guilds:
                raise ApiError(404, "Unknown Guild", 10004)
            return 200, [
                {**c.json(), "last_message_id": self._last_message_id(c.id)}
                for c in self._channels.values() if c.guild_id == guild_id
            ]  # fmt: skip
        if route == GET_MESSAGES:
            channel = self._channel(match["channel_id"])
            if channel.id in self._forbidden:
                raise ApiError(403, "Missing Access", 50001)
            limit = int((query or {}).get("limit") or 50)
            newest_first = sorted(self.history.get(channel.id, []), key=lambda m: int(m["id"]), reverse=True)
            return 200, newest_first[:limit]
        if route == GET_GATEWAY_BOT:
            limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
            return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}
        channel = self._channel(match["channel_id"])
        if route == TRIGGER_TYPING:
            self.typing.append({"token": token, "channel_id": channel.id})
            return 204, None
        if route == EDIT_MESSAGE:
            return 200, self._edit_message(bot, channel, match["message_id"], _json_body(body))
        return 200, self._create_message(bot, channel, _json_body(body))

    def _edit_message(self, bot: _Bot, channel: _Channel, message_id: str, params: Json) -> Json:
        """Only the bot's own messages; the content replaced, ``edited_timestamp`` set."""
        sent = next(
            (s for s in self.sent if s["message_id"] == message_id and s["channel_id"] == channel.id), None
        )
        if sent is None or sent["token"] != bot.token:
            raise ApiError(404, "Unknown Message", 10008)
        content = str(params.get("content") or "")
        if not content.strip() or len(content) > MAX_TEXT:
            raise ApiError(400, "Invalid Form Body", 50035)
        sent["message"] = {**sent["message"], "content": content, "edited_timestamp": _iso(datetime.now(UTC))}
        edit = {"token": bot.token, "channel_id": channel.id, "message_id": message_id, "content": content}
        self.edited.append({**edit, "at": time.monotonic()})
        return dict(sent["message"])

    def _scripted_failure(self, route: str) -> None:
        for failure in self._failures.get(route, []):
            if failure.times <= 0:
                continue
            failure.times -= 1
            if failure.retry_after is None:
                raise ApiError(failure.status, failure.message, failure.code)
            error = ApiError(429, failure.message, retry_after=failure.retry_after, **{"global": False})
            reset_after = f"{failure.retry_after:.3f}"
            error.headers = [
                (b"retry-after", str(math.ceil(failure.retry_after)).encode()),
                (b"x-ratelimit-limit", b"1"),  # one call per window: hikari waits all of it
                (b"x-ratelimit-remaining", b"0"),
                (b"x-ratelimit-reset", f"{time.time() + failure.retry_after:.3f}".encode()),
                (b"x-ratelimit-reset-after", reset_after.encode()),
                (b"x-ratelimit-bucket", f"fake-{abs(hash(route)) % 10**8}".encode()),
                (b"x-ratelimit-scope", b"user"),
            ]
            raise error

    def _channel(self, channel_id: str) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ApiError(404, "Unknown Channel", 10003)
        return channel

    def _create_message(self, bot: _Bot, channel: _Channel, params: Json) -> Json:
        if channel.id in self._forbidden:
            code, message = self._forbidden[channel.id]
            raise ApiError(403, message, code)
        content = str(params.get("content") or "")
        nonce = params.get("nonce")
        if params.get("enforce_nonce") and nonce and (bot.token, str(nonce)) in self._nonces:
            return self._nonces[(bot.token, str(nonce))]  # Discord: the message this nonce made
        if not content.strip():
            raise ApiError(400, "Cannot send an empty message", 50006)
        if len(content) > MAX_TEXT:
            raise ApiError(
                400,
                "Invalid Form Body",
                50035,
                errors={"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Too long."}]}},
            )
        message = self.message(channel.id, bot.user, content)
        message.pop("member", None)
        message.pop("guild_id", None)
        if nonce:
            message["nonce"] = nonce
            self._nonces[(bot.token, str(nonce))] = message
        self.sent.append(
            {
                "token": bot.token,
                "channel_id": channel.id,
                "content": content,
                "message_id": message["id"],
                "nonce": nonce,
                "allowed_mentions": params.get("allowed_mentions"),
                "message": message,
            }
        )
        echo = {**message, **({"guild_id": channel.guild_id} if channel.guild_id else {})}
        if bot.session is not None:
            self._dispatch(bot.session, "MESSAGE_CREATE", echo)  # Discord tells the bot of its own
        return message

    # gateway

    async def _gateway(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        if self.gateway_down:
            await send({"type": "websocket.close", "code": 1013})  # before accept: HTTP 403
            return
        await send({"type": "websocket.accept"})
        sock = _Socket(scope["path"])
        self.connections.append(scope["path"])
        self._sockets.add(sock)
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        if query.get("v") != "10" or query.get("encoding") != "json":
            sock.close(4012, "Invalid API version")
        else:
            sock.put({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        writer = asyncio.create_task(self._write(sock, send))
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text") or (message.get("bytes") or b"").decode()
                try:
                    payload = json.loads(raw)
                except ValueError:
                    sock.close(4002, "Error while decoding payload.")
                    continue
                self._on_client_payload(sock, payload)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._sockets.discard(sock)
            if sock.session is not None and sock.session.socket is sock:
                sock.session.socket = None

    async def _write(self, sock: _Socket, send: Send) -> None:
        while True:
            item = await sock.outbox.get()
            try:
                if isinstance(item, _Close):
                    await send({"type": "websocket.close", "code": item.code, "reason": item.reason})
                    return
                await send({"type": "websocket.send", "text": json.dumps(item)})
            except Exception:  # the client went away first
                return

    def _on_client_payload(self, sock: _Socket, payload: Json) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats.append(data)
            if self.ack_heartbeats:
                sock.put({"op": 11})
        elif op == 2:
            self._identify(sock, data or {})
        elif op == 6:
            self._resume(sock, data or {})
        elif sock.session is None:
            sock.close(4003, "Not authenticated.")
        else:
            sock.close(4001, "Unknown opcode.")

    def _identify(self, sock: _Socket, data: Json) -> None:
        self.identifies.append(data)
        token = str(data.get("token"))
        if sock.session is not None:
            sock.close(4005, "Already authenticated.")
            return
        if token not in self.valid_tokens:
            sock.close(4004, "Authentication failed.")
            return
        bot = self._bots[token]
        intents = int(data.get("intents") or 0)
        if intents & MESSAGE_CONTENT_INTENT and not bot.message_content_allowed:
            sock.close(4014, "Disallowed intent(s).")
            return
        session = _Session(f"fake{next(self._session_numbers):04d}{secrets.token_hex(12)}", token, intents)
        self._sessions[session.session_id] = session
        bot.session, sock.session, session.socket = session, session, sock
        ready = {
            "v": 10,
            "user": bot.user,
            "guilds": [{"id": guild_id, "unavailable": True} for guild_id in self._guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": bot.application_id, "flags": 0},
            "shard": [0, 1],
        }
        self._dispatch(session, "READY", ready)
        for guild in self._guilds.values():
            self._dispatch(session, "GUILD_CREATE", guild)
        pending, bot.pending = bot.pending, []
        for event, payload in pending:
            self._dispatch(session, event, payload)

    def _resume(self, sock: _Socket, data: Json) -> None:
        self.resumes.append({"path": sock.path, **data})
        token = str(data.get("token"))
        if token not in self.valid_tokens:
            sock.close(4004, "Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or session.token != token:
            sock.put({"op": 9, "d": False})
            return
        seq = int(data.get("seq") or 0)
        if seq > session.seq:
            sock.close(4007, "Invalid seq.")
            return
        if session.socket is not None and session.socket is not sock:
            session.socket.close(4000, "Session resumed elsewhere.")
        sock.session, session.socket = session, sock
        for payload in session.dispatched:
            if payload["s"] > seq:
                sock.put(payload)
        self._dispatch(session, "RESUMED", {})

    def close(self) -> None:
        """Close every gateway socket, as before a restart."""
        self.drop_connection(1001, "Server shutting down")


def _json_body(body: bytes) -> Json:
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        raise ApiError(400, "400: Bad Request", 50109) from None  # "The request body contains invalid JSON."
    if not isinstance(parsed, dict):
        raise ApiError(400, "Invalid Form Body", 50035)
    return parsed


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, body: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    all_headers = [(b"content-type", b"application/json"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@contextlib.asynccontextmanager
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """Serve a :class:`FakeDiscord` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeDiscord()
    async with serving(fake, "Discord", ws_ping_interval=None) as port:
        fake.api_base = f"http://127.0.0.1:{port}{API}"
        fake.gateway_url = f"ws://127.0.0.1:{port}"
        fake.resume_gateway_url = f"ws://127.0.0.1:{port}/resume"
        try:
            yield fake
        finally:
            fake.close()
            await asyncio.sleep(0.05)  # let the writers send their close frames
