"""The Discord connector: a bot (token from the Developer Portal) linked to a tenant's inbox.

- **In:** :class:`DiscordSession` holds one bot's gateway WebSocket (HELLO, IDENTIFY or
  RESUME, heartbeats) and appends what :func:`normalize` makes of each dispatch
  (``message.received``, ``message.edited``, ``message.deleted``, ``reaction.added`` /
  ``reaction.removed``), after ``conversation.created`` for a channel seen for the first
  time. Its sequence number moves past a dispatch only once the dispatch's events are
  stored, so a RESUME after a dropped socket replays what was not stored yet.
- **Out:** :class:`DiscordConnector` executes ``send_message`` commands through hikari's
  REST client, chunked to Discord's 2000 characters, each part with a nonce Discord
  enforces (a retried command does not post twice), mapping refusals onto
  ``SendDeferred`` (rate limits, outages) and ``SendRejected`` (no access, channel gone,
  DMs closed, token revoked).
- Connection health goes on the connection aggregate as ``connection.state_changed``
  (connecting, connected, degraded, action_required), only when it changes.

Ids are derived from Discord's: a channel is ``stable_id("c", "discord:<connection>:<channel
id>")``, a message ``stable_id("m", "discord:<connection>:<channel id>:<message id>")``.
hikari is the REST client (``/users/@me``, ``/gateway/bot``, messages, typing); the
gateway loop is ours, because hikari's gateway lives inside its GatewayBot (cache, event
manager, its own reconnects) and moves its sequence on receipt, not once events are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import hikari
import httpx
import msgspec
import structlog
from hikari.errors import ShardCloseCode
from hikari.impl import HTTPSettings, HTTPTimeoutSettings, RESTClientImpl
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from adapters.channels.health import record_state
from adapters.channels.media import fetch_media
from adapters.media.store import MediaStore
from adapters.nats.errors import ConcurrencyConflict
from adapters.nats.event_store import EventStore
from domain import events as ev
from domain import ids
from domain.agent import chunk_text
from domain.commands import SendMessage
from domain.connectors import Capabilities, Delivered, SendDeferred, SendRejected

log = structlog.get_logger()

KIND = "discord"
CDN = "https://cdn.discordapp.com"
DISCORD_CAPABILITIES = Capabilities(
    max_text_length=2000, edits=True, deletes=True, reactions=True, typing=True, media=True
)
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
MAX_BACKOFF = 30.0
DEFAULT_MAX_RATE_LIMIT = 5.0  # seconds hikari may wait out a rate limit itself; longer ones defer the send
DISCORD_EPOCH_MS = 1_420_070_400_000
_MAX_GATEWAY_FRAME = 32 * 1024 * 1024  # GUILD_CREATE of a large server is big

Credentials = Callable[[str], Awaitable[Mapping[str, Any]]]  # connection id -> {"token": ...}
Json = Mapping[str, Any]

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

_CONVERSATION_TYPES = (0, 19)  # default and reply; joins, pins, boosts... are not conversation


# --- errors ------------------------------------------------------------------------------


class DiscordConnectorError(Exception):
    """Base of the Discord connector's own errors; ``str()`` is written for a person."""


class TokenRejected(DiscordConnectorError):
    """Discord does not accept the bot token (malformed, reset or never issued)."""


class DiscordUnreachable(DiscordConnectorError):
    """Discord could not be asked (network error, outage); try again later."""


# --- identity -----------------------------------------------------------------------------


class BotIdentity(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    display_name: str


def _clean_token(token: str) -> str:
    token = token.strip()
    if token.lower().startswith("bot "):  # pasted with the Authorization scheme
        token = token[4:].strip()
    return token


def _is_token_shaped(token: str) -> bool:
    return bool(token) and not any(char.isspace() for char in token) and token.count(".") == 2


def _rest_app(
    api_base: str | None,
    *,
    max_rate_limit: float = DEFAULT_MAX_RATE_LIMIT,
    max_retries: int = 1,
    timeout: float = 30.0,
) -> hikari.RESTApp:
    return hikari.RESTApp(
        url=api_base,
        max_rate_limit=max_rate_limit,
        max_retries=max_retries,
        http_settings=HTTPSettings(timeouts=HTTPTimeoutSettings(total=timeout)),
    )


async def validate_token(token: str, *, api_base: str | None = None) -> BotIdentity:
    """The bot a token belongs to (``GET /users/@me``); raises TokenRejected or DiscordUnreachable.

    ``api_base`` is the REST base with its version, e.g. ``https://discord.com/api/v10``.
    """
    token = _clean_token(token)
    if not _is_token_shaped(token):
        raise TokenRejected(
            "This is not a Discord bot token: the Developer Portal (Bot → Reset Token) gives tokens"
            " in three parts separated by dots"
        )
    app = _rest_app(api_base, max_retries=0, timeout=15.0)
    await app.start()
    try:
        async with app.acquire(token, hikari.TokenType.BOT) as rest:
            me = await rest.fetch_my_user()
    except hikari.UnauthorizedError:
        raise TokenRejected("Discord does not accept this bot token") from None
    except hikari.HTTPError as exc:
        raise DiscordUnreachable(f"Discord could not check the token just now: {exc}") from None
    finally:
        await app.close()
    return BotIdentity(id=int(me.id), username=me.username, display_name=me.global_name or me.username)


# --- normalization (pure) ------------------------------------------------------------------


def conversation_id(connection_id: str, channel_id: int | str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{channel_id}")


def provider_message_id(channel_id: int | str, message_id: int | str) -> str:
    return f"{channel_id}:{message_id}"


def message_id(connection_id: str, channel_id: int | str, discord_message_id: int | str) -> str:
    return ids.stable_id(
        ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(channel_id, discord_message_id)}"
    )


def actor(connection_id: str) -> str:
    return f"connector:{KIND}:{connection_id}"


def snowflake_time(snowflake: int | str) -> datetime:
    """When Discord made an id (its top 42 bits are milliseconds since 2015)."""
    return datetime.fromtimestamp(((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _derived_event_id(key: str, at: datetime) -> str:
    """An event id derived from what happened, so the same dispatch again is stored once."""
    return ids.ulid(
        at_ms=int(at.timestamp() * 1000), randomness=hashlib.blake2b(key.encode(), digest_size=10).digest()
    )


def _name(user: Json, member: Json | None = None) -> str:
    nick = (member or {}).get("nick")
    return str(nick or user.get("global_name") or user.get("username") or user.get("id"))


_USER_MENTION = re.compile(r"<@!?(\d+)>")


def _readable(content: str, mentions: Sequence[Json]) -> str:
    """``<@123>`` as ``@Ada`` for the people the message mentions (Discord sends their names)."""
    names = {str(user.get("id")): _name(user, user.get("member")) for user in mentions}
    return _USER_MENTION.sub(lambda m: f"@{names[m[1]]}" if m[1] in names else m[0], content)


def _attachment_kind(mime: str | None) -> Literal["image", "video", "audio", "document"]:
    top = (mime or "").split("/", 1)[0]
    if top == "image":
        return "image"
    if top == "video":
        return "video"
    if top == "audio":
        return "audio"
    return "document"


def _attachments(data: Json) -> tuple[ev.Attachment, ...]:
    found: list[ev.Attachment] = []
    for attachment in data.get("attachments") or ():
        mime = attachment.get("content_type")
        found.append(
            ev.Attachment(
                kind=_attachment_kind(mime),
                # Discord's CDN url (signed, refreshable through the attachment id in it).
                provider_file_id=str(attachment.get("url") or attachment["id"]),
                mime=mime,
                size=attachment.get("size"),
                name=attachment.get("filename"),
            )
        )
    for sticker in data.get("sticker_items") or ():
        found.append(
            ev.Attachment(kind="sticker", provider_file_id=str(sticker["id"]), name=sticker.get("name"))
        )
    return tuple(found)


def _replies_to(data: Json, bot_user_id: str) -> bool:
    referenced = data.get("referenced_message") or {}
    return str((referenced.get("author") or {}).get("id")) == bot_user_id


def _mentions_bot(data: Json, bot_user_id: str) -> bool:
    return any(str(user.get("id")) == bot_user_id for user in data.get("mentions") or ())


def conversation_created(
    payload: Json,
    *,
    tenant_id: str,
    connection_id: str,
    title: str | None = None,
    now: datetime | None = None,
) -> ev.ConversationCreated | None:
    """The ``conversation.created`` of the channel a message dispatch comes from (None: not one).

    A guild channel is a ``group`` titled ``title`` (the session knows channel names from
    ``GUILD_CREATE``); a DM is ``direct``, titled with the person's name.
    """
    if payload.get("t") not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        return None
    data = payload.get("d") or {}
    author = data.get("author")
    if "channel_id" not in data or not author:
        return None
    channel_id = str(data["channel_id"])
    in_guild = data.get("guild_id") is not None
    kind: ev.ConversationKind = "group" if in_guild else "direct"
    fallback = f"#{channel_id}" if in_guild else _name(author)
    return ev.new_event(
        ev.ConversationCreated,
        tenant_id=tenant_id,
        aggregate_id=conversation_id(connection_id, channel_id),
        actor=actor(connection_id),
        occurred_at=now,
        data=ev.ConversationCreatedData(
            channel=KIND,
            connection_id=connection_id,
            kind=kind,
            title=title or fallback,
            external_id=channel_id,
        ),
    )


@dataclass(frozen=True)
class _Origin:
    """Where a dispatch comes from: whose inbox, which connection, which bot is ours."""

    tenant_id: str
    connection_id: str
    bot_user_id: str
    now: datetime | None

    def event(
        self, event_cls: type[ev.E], channel_id: str, data: msgspec.Struct, event_id: str | None = None
    ) -> ev.E:
        return ev.new_event(
            event_cls,
            tenant_id=self.tenant_id,
            aggregate_id=conversation_id(self.connection_id, channel_id),
            actor=actor(self.connection_id),
            occurred_at=self.now,
            event_id=event_id,
            data=data,
        )

    def message_id(self, channel_id: str, discord_message_id: int | str) -> str:
        return message_id(self.connection_id, channel_id, discord_message_id)

    def key(self, channel_id: str, discord_message_id: int | str, what: str) -> str:
        return f"{KIND}:{self.connection_id}:{provider_message_id(channel_id, discord_message_id)}:{what}"


def normalize(
    payload: Json, *, tenant_id: str, connection_id: str, bot_user_id: str, now: datetime | None = None
) -> list[ev.Event]:
    """The canonical events of one gateway dispatch (``{"op": 0, "t": ..., "s": ..., "d": ...}``).

    ``MESSAGE_CREATE`` → ``message.received``; ``MESSAGE_UPDATE`` with an edit time →
    ``message.edited``; ``MESSAGE_DELETE`` (and ``_BULK``) → ``message.deleted``;
    ``MESSAGE_REACTION_ADD`` / ``_REMOVE`` → ``reaction.added`` / ``reaction.removed``.
    What our own bot does is not news to us, and other dispatches have no events. The
    conversation's ``conversation.created`` is the caller's (see :func:`conversation_created`).
    """
    name = payload.get("t")
    data = payload.get("d")
    if not isinstance(data, Mapping):
        return []
    origin = _Origin(tenant_id, connection_id, str(bot_user_id), now)
    found: list[ev.Event | None] = []
    if name == "MESSAGE_CREATE":
        found = [_received(data, origin)]
    elif name == "MESSAGE_UPDATE":
        found = [_edited(data, origin)]
    elif name == "MESSAGE_DELETE":
        found = [_deleted(str(data["channel_id"]), data["id"], origin)]
    elif name == "MESSAGE_DELETE_BULK":
        found = [_deleted(str(data["channel_id"]), each, origin) for each in data["ids"]]
    elif name in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
        found = [_reaction(data, origin, added=name == "MESSAGE_REACTION_ADD", seq=payload.get("s"))]
    return [event for event in found if event is not None]


def _received(data: Json, origin: _Origin) -> ev.MessageReceived | None:
    author = data["author"]
    if str(author["id"]) == origin.bot_user_id or data.get("type", 0) not in _CONVERSATION_TYPES:
        return None
    text = _readable(data.get("content") or "", data.get("mentions") or ())
    attachments = _attachments(data)
    if not text and not attachments:
        return None  # an embed-only message, or one whose text the bot may not read
    channel_id = str(data["channel_id"])
    reference = data.get("message_reference") or {}
    is_reply = bool(reference.get("message_id")) and reference.get("type", 0) == 0  # 1 is a forward
    return origin.event(
        ev.MessageReceived,
        channel_id,
        ev.MessageReceivedData(
            message_id=origin.message_id(channel_id, data["id"]),
            connection_id=origin.connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(channel_id, data["id"]),
            sender=ev.Sender(
                id=f"dc:{author['id']}",
                name=_name(author, data.get("member")),
                is_bot=bool(author.get("bot")),
            ),
            text=text,
            sent_at=_timestamp(data["timestamp"]),
            attachments=attachments,
            reply_to_message_id=(
                origin.message_id(str(reference.get("channel_id", channel_id)), reference["message_id"])
                if is_reply
                else None
            ),
            mentions_agent=_mentions_bot(data, origin.bot_user_id) or _replies_to(data, origin.bot_user_id),
        ),
    )


def _edited(data: Json, origin: _Origin) -> ev.MessageEdited | None:
    if not data.get("edited_timestamp") or "content" not in data:
        return None  # an embed unfurled, a pin: Discord's update, not the person's edit
    if str((data.get("author") or {}).get("id")) == origin.bot_user_id:
        return None
    channel_id = str(data["channel_id"])
    edited_at = _timestamp(data["edited_timestamp"])
    return origin.event(
        ev.MessageEdited,
        channel_id,
        ev.MessageEditedData(
            message_id=origin.message_id(channel_id, data["id"]),
            text=_readable(data.get("content") or "", data.get("mentions") or ()),
            edited_at=edited_at,
        ),
        event_id=_derived_event_id(
            origin.key(channel_id, data["id"], f"edited:{edited_at.isoformat()}"), edited_at
        ),
    )


def _deleted(channel_id: str, discord_message_id: int | str, origin: _Origin) -> ev.MessageDeleted:
    return origin.event(
        ev.MessageDeleted,
        channel_id,
        ev.MessageDeletedData(
            message_id=origin.message_id(channel_id, discord_message_id),
            deleted_at=origin.now or datetime.now(UTC),
        ),
        # Discord does not say when; dated by the message, a repeat has the same id.
        event_id=_derived_event_id(
            origin.key(channel_id, discord_message_id, "deleted"), snowflake_time(discord_message_id)
        ),
    )


def _emoji(emoji: Json) -> str:
    if emoji.get("id") is None:
        return str(emoji.get("name") or "")
    return f"<{'a' if emoji.get('animated') else ''}:{emoji.get('name') or '_'}:{emoji['id']}>"


def _reaction(
    data: Json, origin: _Origin, *, added: bool, seq: Any
) -> ev.ReactionAdded | ev.ReactionRemoved | None:
    if str(data["user_id"]) == origin.bot_user_id:
        return None
    channel_id = str(data["channel_id"])
    emoji = _emoji(data.get("emoji") or {})
    reaction = ev.ReactionData(
        message_id=origin.message_id(channel_id, data["message_id"]),
        emoji=emoji,
        sender_id=f"dc:{data['user_id']}",
    )
    # The dispatch's sequence tells a replay after RESUME (same seq) from a new reaction.
    what = f"reaction_{'added' if added else 'removed'}:{data['user_id']}:{emoji}:{seq}"
    event_id = _derived_event_id(
        origin.key(channel_id, data["message_id"], what), snowflake_time(data["message_id"])
    )
    if added:
        return origin.event(ev.ReactionAdded, channel_id, reaction, event_id)
    return origin.event(ev.ReactionRemoved, channel_id, reaction, event_id)


# --- in: one bot's gateway session ---------------------------------------------------------

_UNREACHABLE_MESSAGE = "Discord cannot be reached right now; Moltbot keeps trying."


class _Refused(Exception):
    """Discord closed the gateway for good (token, intents): a person must act."""

    def __init__(self, code: str, message: str, action: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.action = action


class _Unreachable(Exception):
    """The gateway (or ``/gateway/bot``) could not be reached; retry with backoff."""


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


class DiscordSession:
    """Holds one bot's gateway connection, appends its events and reports its health.

    ``run`` returns when Discord refuses the token or the bot's settings (reported as
    ``action_required``); a dropped socket is resumed at once (``RESUME`` with the session
    id and the last stored sequence); failing to reach Discord is reported as ``degraded``
    and retried with exponential backoff; an error of the event store ends ``run`` with it
    (the session manager restarts it, and a new session starts from Discord's present).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        tenant_id: str,
        connection_id: str,
        token: str,
        api_base: str | None = None,
        gateway_url: str | None = None,
        first_backoff: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
        connect_timeout: float = 15.0,
        media: MediaStore | None = None,
        cdn_base: str | None = None,
    ) -> None:
        self._store = store
        self._media = media  # where attachments are kept; None: they stay on Discord's CDN
        self._cdn_base = cdn_base
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self._token = _clean_token(token)
        self._api_base = api_base
        self._configured_gateway = gateway_url
        self._gateway_base = gateway_url  # None: asked of GET /gateway/bot
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._connect_timeout = connect_timeout
        self.state: ev.ConnectionState | None = None  # the last state this session recorded
        self._state_code: str | None = None
        self.session_id: str | None = None
        self.seq: int | None = None  # the last dispatch handled: all before it are stored
        self.bot_user_id: str | None = None
        self.bot_username: str | None = None
        self._resume_url: str | None = None
        self._awaiting_ack = False
        self._known_conversations: set[str] = set()
        self._guild_names: dict[str, str] = {}
        self._channel_titles: dict[str, str] = {}
        self._log = log.bind(tenant_id=tenant_id, connection_id=connection_id)

    async def run(self) -> None:
        if not _is_token_shaped(self._token):
            await self._report(
                "action_required", "token_invalid", "This is not a Discord bot token", action="reconnect"
            )
            return
        await self._report("connecting", "connecting", "Connecting to Discord…")
        app = _rest_app(self._api_base, max_retries=0, timeout=self._connect_timeout)
        await app.start()
        try:
            async with app.acquire(self._token, hikari.TokenType.BOT) as rest:
                await self._stay_connected(rest)
        finally:
            await app.close()

    async def _stay_connected(self, rest: RESTClientImpl) -> None:
        backoff = self._first_backoff
        while True:
            try:
                reconnect_at_once = await self._connect(rest)
            except _Refused as refused:
                await self._report("action_required", refused.code, refused.message, action=refused.action)
                self._log.warning("discord_gateway_refused", code=refused.code)
                return
            except _Unreachable as exc:
                await self._report("degraded", "discord_unreachable", _UNREACHABLE_MESSAGE)
                self._log.warning("discord_gateway_unreachable", error=str(exc), retry_in=backoff)
                self._gateway_base = self._configured_gateway  # ask /gateway/bot again
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if reconnect_at_once:
                backoff = self._first_backoff
                continue
            await asyncio.sleep(backoff)  # closed before it was ready: do not hammer
            backoff = min(backoff * 2, self._max_backoff)

    async def _address(self, rest: RESTClientImpl) -> str:
        if self.session_id is not None and self._resume_url:
            return _gateway_address(self._resume_url)
        if self._gateway_base is None:
            try:
                info = await rest.fetch_gateway_bot_info()
            except hikari.UnauthorizedError:
                raise _Refused(*_TOKEN_REVOKED) from None
            except hikari.HTTPError as exc:
                raise _Unreachable(f"GET /gateway/bot failed: {exc}") from None
            self._gateway_base = info.url
        return _gateway_address(self._gateway_base)

    async def _connect(self, rest: RESTClientImpl) -> bool:
        """One gateway connection, until it ends; True when it is worth reconnecting at once."""
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
            raise _Unreachable(f"cannot open the gateway: {exc!r}") from None
        async with socket:
            try:
                hello = json.loads(await asyncio.wait_for(socket.recv(), self._connect_timeout))
            except ConnectionClosed as closed:
                self._closed(closed)  # a refusal (e.g. 4012) ends the session
                raise _Unreachable(f"the gateway closed before HELLO: {closed!r}") from None
            except (TimeoutError, ValueError) as exc:
                raise _Unreachable(f"no HELLO from the gateway: {exc!r}") from None
            if hello.get("op") != HELLO:
                raise _Unreachable(f"the gateway began with opcode {hello.get('op')}, not HELLO")
            interval = float(hello["d"]["heartbeat_interval"]) / 1000
            self._awaiting_ack = False
            await self._handshake(socket)
            # Not a TaskGroup: it would wrap the receive loop's _Refused in an ExceptionGroup.
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
                await asyncio.sleep(random.uniform(1, 5) * self._first_backoff)
                return True

    def _closed(self, closed: ConnectionClosed) -> None:
        code = closed.rcvd.code if closed.rcvd is not None else None
        reason = closed.rcvd.reason if closed.rcvd is not None else ""
        self._log.info("discord_gateway_closed", code=code, reason=reason, seq=self.seq)
        if code in _REFUSALS:
            raise _Refused(*_REFUSALS[code])
        if code in _NEW_SESSION_CODES:
            self._forget_session()

    def _forget_session(self) -> None:
        self.session_id, self.seq, self._resume_url = None, None, None

    async def _dispatch(self, message: Json) -> None:
        name = message.get("t")
        data = message.get("d") or {}
        if name == "READY":
            self.session_id = str(data["session_id"])
            self._resume_url = data.get("resume_gateway_url")
            self.bot_user_id = str(data["user"]["id"])
            self.bot_username = str(data["user"].get("username") or self.bot_user_id)
            await self._report("connected", "ok", f"Connected to Discord as {self.bot_username}")
        elif name == "RESUMED":
            self._log.info("discord_resumed", session_id=self.session_id, seq=self.seq)
            await self._report("connected", "ok", f"Connected to Discord as {self.bot_username}")
        elif name in ("GUILD_CREATE", "GUILD_UPDATE", "CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE"):
            self._remember_names(name, data)
        else:
            await self._store_dispatch(message)
        if isinstance(message.get("s"), int):
            self.seq = message["s"]  # only now: a RESUME replays from here

    def _remember_names(self, name: str, data: Json) -> None:
        if name.startswith("GUILD_"):
            guild_id = str(data.get("id"))
            self._guild_names[guild_id] = str(data.get("name") or guild_id)
            for channel in [*(data.get("channels") or ()), *(data.get("threads") or ())]:
                self._remember_names("CHANNEL_CREATE", {"guild_id": guild_id, **channel})
            return
        if data.get("name") and data.get("id"):
            guild = self._guild_names.get(str(data.get("guild_id")))
            title = f"#{data['name']}"
            self._channel_titles[str(data["id"])] = f"{title} ({guild})" if guild else title

    async def _store_dispatch(self, message: Json) -> None:
        try:
            events = normalize(
                message,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                bot_user_id=self.bot_user_id or "",
            )
            created = conversation_created(
                message,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                title=self._channel_titles.get(str((message.get("d") or {}).get("channel_id"))),
            )
        except Exception as exc:  # one unreadable dispatch must not stop the connection for good
            self._log.error(
                "discord_dispatch_unreadable", event=message.get("t"), seq=message.get("s"), error=repr(exc)
            )
            return
        if not events:
            return
        if created is not None and created.aggregate_id not in self._known_conversations:
            with contextlib.suppress(ConcurrencyConflict):  # the channel is known already
                await self._store.append(created, expected_seq=0)
            self._known_conversations.add(created.aggregate_id)
        for event in events:
            appended = await self._store.append(event)
            self._log.info(
                "discord_dispatch_stored",
                gateway_seq=message.get("s"),
                event_type=event.type,
                seq=appended.seq,
                duplicate=appended.duplicate,
            )
            if self._media is not None and isinstance(event, ev.MessageReceived) and event.data.attachments:
                await fetch_media(
                    self._store, self._media, event, self._download, actor=actor(self.connection_id)
                )

    async def _download(self, attachment: ev.Attachment) -> bytes:
        """An attachment from Discord's CDN (its signed URL is the provider file id)."""
        url = attachment.provider_file_id
        if not url.startswith(CDN):
            raise DiscordUnreachable(f"not a downloadable attachment: {attachment.kind}")
        if self._cdn_base is not None:
            url = self._cdn_base.rstrip("/") + url[len(CDN) :]
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(url)
        if response.status_code != 200:
            raise DiscordUnreachable(f"Discord's CDN answered {response.status_code} for an attachment")
        return response.content

    async def _report(
        self, state: ev.ConnectionState, code: str, message: str, *, action: str | None = None
    ) -> None:
        """Record the connection's state when it changed (from the log's last one)."""
        if (state, code) == (self.state, self._state_code):
            return
        await record_state(
            self._store, tenant_id=self.tenant_id, connection_id=self.connection_id,
            actor=actor(self.connection_id), state=state, code=code, message=message, action=action,
        )  # fmt: skip
        self.state, self._state_code = state, code
        self._log.info("discord_connection_state", state=state, code=code)


async def _send(socket: ClientConnection, payload: Json) -> None:
    """Send a gateway payload; a closed socket is noticed (and handled) by the receive loop."""
    with contextlib.suppress(ConnectionClosed):
        await socket.send(json.dumps(payload))


# --- out: executing commands --------------------------------------------------------------


def _nonce(message_id_: str, part: int) -> str:
    """Discord's idempotency key (25 characters at most) for one part of one message."""
    return hashlib.blake2b(f"{message_id_}:{part}".encode(), digest_size=12).hexdigest()


def _rejected_for_forbidden(exc: hikari.ForbiddenError) -> SendRejected:
    if exc.code == 50007:
        return SendRejected(
            "dm_closed",
            "This person does not accept direct messages from the bot, so Discord does not deliver.",
        )
    if exc.code == 50001:
        return SendRejected(
            "no_access",
            "The bot cannot see this channel any more (removed from the server, or the channel is private).",
        )
    if exc.code == 50013:
        return SendRejected(
            "missing_permissions",
            "The bot may not write in this channel; give it the Send Messages permission there.",
        )
    return SendRejected("forbidden", f"Discord does not let the bot write here ({exc.message}).")


class DiscordConnector:
    """Sends with one hikari REST client per connection (sharing one HTTP pool and rate-limit
    buckets); tokens come from ``credentials``."""

    kind = KIND
    capabilities = DISCORD_CAPABILITIES

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_base: str | None = None,
        max_rate_limit: float = DEFAULT_MAX_RATE_LIMIT,
        max_retries: int = 1,
        request_timeout: float = 30.0,
    ) -> None:
        self._credentials = credentials
        self._app = _rest_app(
            api_base, max_rate_limit=max_rate_limit, max_retries=max_retries, timeout=request_timeout
        )
        self._started = False
        self._clients: dict[str, RESTClientImpl] = {}
        self._lock = asyncio.Lock()

    async def client(self, connection_id: str) -> RESTClientImpl:
        """The connection's REST client, built from its credentials on first use."""
        client = self._clients.get(connection_id)
        if client is not None:
            return client
        async with self._lock:
            if not self._started:
                await self._app.start()
                self._started = True
            if connection_id not in self._clients:
                credentials = await self._credentials(connection_id)
                token = credentials.get("token")
                token = _clean_token(token) if isinstance(token, str) else ""
                if not _is_token_shaped(token):
                    raise TokenRejected("This Discord connection has no bot token; connect the bot again.")
                client = self._app.acquire(token, hikari.TokenType.BOT)
                client.start()
                self._clients[connection_id] = client
            return self._clients[connection_id]

    def forget(self, connection_id: str) -> None:
        """Drop a cached client (its token was reset or revoked): the next use reads it anew."""
        self._clients.pop(connection_id, None)  # it owns no connections: the app's pool does

    async def send(self, command: SendMessage) -> Delivered:
        try:
            channel = int(command.to)
        except ValueError:
            raise SendRejected(
                "bad_channel", "This conversation has no Discord channel to send to."
            ) from None
        parts = chunk_text(command.text, DISCORD_CAPABILITIES.max_text_length)
        if not parts:
            raise SendRejected("empty", "There is nothing to send: the message is empty.")
        try:
            client = await self.client(command.connection_id)
        except TokenRejected as exc:
            raise SendRejected("token_invalid", str(exc)) from None
        first: hikari.Message | None = None
        for part, text in enumerate(parts):
            # A retried command posts no part twice: Discord returns the message of a known nonce.
            sent = await self._create(client, command, channel, text, _nonce(command.message_id, part))
            first = first or sent
        assert first is not None
        return Delivered(
            provider_message_id=provider_message_id(channel, int(first.id)),
            sent_at=first.timestamp.astimezone(UTC),
        )

    async def _create(
        self, client: RESTClientImpl, command: SendMessage, channel: int, text: str, nonce: str
    ) -> hikari.Message:
        try:
            return await client.create_message(
                channel, text, nonce=nonce, user_mentions=True, role_mentions=False, mentions_everyone=False
            )
        except hikari.RateLimitTooLongError as exc:
            raise SendDeferred(
                f"Discord asked us to wait {exc.retry_after:.1f} s", retry_after=float(exc.retry_after)
            ) from None
        except hikari.UnauthorizedError:
            self.forget(command.connection_id)
            raise SendRejected(
                "token_revoked", "Discord no longer accepts this bot token; reconnect the bot to send."
            ) from None
        except hikari.ForbiddenError as exc:
            raise _rejected_for_forbidden(exc) from None
        except hikari.NotFoundError:
            raise SendRejected(
                "channel_not_found",
                "Discord cannot find this channel any more (deleted, or the bot left the server).",
            ) from None
        except hikari.BadRequestError as exc:
            raise SendRejected("bad_request", f"Discord refused the message: {exc.message}") from None
        except hikari.ClientHTTPResponseError as exc:
            raise SendRejected(
                "refused", f"Discord refused the message ({exc.status}): {exc.message}"
            ) from None
        except hikari.HTTPError as exc:  # 5xx after hikari's retries, network errors
            raise SendDeferred(f"Discord cannot be reached: {exc}") from None

    async def typing(self, connection_id: str, channel_id: str | int) -> bool:
        """Show "typing…" in a channel for ~10 seconds; best effort (False when refused)."""
        try:
            client = await self.client(connection_id)
            await client.trigger_typing(int(channel_id))
        except (DiscordConnectorError, hikari.HTTPError, ValueError) as exc:
            log.debug("discord_typing_failed", connection_id=connection_id, error=str(exc))
            return False
        return True

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(hikari.ComponentStateConflictError):
                await client.close()
        if self._started:
            self._started = False
            await self._app.close()
