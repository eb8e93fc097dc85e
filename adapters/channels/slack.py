"""The Slack connector: a Slack app installed in a workspace, linked to a tenant's inbox.

- **Connect:** :func:`install_url` and :func:`exchange_code` are the OAuth v2 install
  (``oauth.v2.access`` gives the workspace's bot token); :func:`validate_token` checks a
  bot token (``auth.test``) and names the workspace and bot.
- **In, Events API:** :class:`SlackEvents` is the webhook's logic: :func:`verify_request`
  (signature and a 5-minute freshness window; the caller answers 401 and stores nothing
  on :class:`BadSignature`), then ``url_verification`` → the challenge, or an
  ``event_callback`` for the connection's own workspace (``team_id``, and app when known;
  else :class:`WrongWorkspace`) → a :class:`Delivery` of canonical events to append.
- **In, Socket Mode:** :class:`SlackSocketSession` holds slack_sdk's Socket Mode client
  (``apps.connections.open`` → a WebSocket) for one connection, appends what arrives and
  acks each envelope only once its events are stored, so a crash repeats envelopes that
  dedupe stores once; it reports ``connection.state_changed``.
- **Out:** :class:`SlackConnector` executes ``send_message`` with ``chat.postMessage``,
  mapping Slack's answers onto ``SendDeferred`` (rate limits, outages) and
  ``SendRejected`` (channel gone, app not in the channel, archived, token revoked).

Ids are derived from Slack's: a message's provider id is ``<channel>:<ts>`` and its id
``stable_id("m", "slack:<connection>:<channel>:<ts>")``; a channel (or direct message) is
the conversation ``stable_id("c", "slack:<connection>:<channel>")`` with external id
``<channel>``, and a thread its own conversation of kind ``thread``,
``stable_id("c", "slack:<connection>:<channel>:<thread ts>")``, external id
``<channel>:<thread ts>`` (so a reply sent there goes back into the thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import httpx
import msgspec
import structlog
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.socket_mode.websockets import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from websockets.exceptions import WebSocketException

from adapters.channels.health import record_state
from adapters.channels.media import fetch_media
from adapters.media.store import MediaStore
from adapters.nats.errors import ConcurrencyConflict
from adapters.nats.event_store import Appended, EventStore
from domain import events as ev
from domain import ids
from domain.commands import SendMessage
from domain.connectors import Capabilities, Delivered, SendDeferred, SendRejected

log = structlog.get_logger()

KIND = "slack"
SLACK_CAPABILITIES = Capabilities(
    max_text_length=40000, edits=True, deletes=True, reactions=True, typing=False, media=False, threads=True
)
API_BASE = "https://slack.com/api/"
AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
MAX_SIGNATURE_AGE = 5 * 60  # seconds: Slack's replay window for signed requests
MAX_BACKOFF = 30.0
# The bot scopes an install asks for: read messages where the app is, write, see reactions.
BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "reactions:read",
)

Credentials = Callable[[str], Awaitable[Mapping[str, Any]]]  # connection id -> {"token", "signing_secret"?}

# Slack's answers that mean the token is no good any more (revoked, app uninstalled, ...).
_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "app_uninstalled"}
)
# Slack's answers worth retrying.
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Message subtypes that are conversation (others: joins, topic changes, ... are not).
_CARRIED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})


# --- errors ------------------------------------------------------------------------------


class SlackConnectorError(Exception):
    """Base of the Slack connector's own errors; ``str()`` is written for a person."""


class TokenRejected(SlackConnectorError):
    """Slack does not accept the token (malformed, revoked, app uninstalled)."""


class InstallRejected(SlackConnectorError):
    """Slack refused the OAuth code exchange (a used or expired code, a wrong secret)."""


class SlackUnreachable(SlackConnectorError):
    """Slack could not be asked (network error, outage); try again later."""


class BadSignature(SlackConnectorError):
    """An Events API request is not signed by Slack with our signing secret, or is stale."""


class BadRequest(SlackConnectorError):
    """A correctly signed Events API request whose body is not a JSON object (answer 400)."""


class WrongWorkspace(SlackConnectorError):
    """A correctly signed Events API request for another workspace (or app) than the
    connection it reached: an app installed in many workspaces signs them all alike."""


# --- identity and installation -----------------------------------------------------------


class WorkspaceIdentity(msgspec.Struct, frozen=True, kw_only=True):
    team_id: str
    team_name: str
    bot_user_id: str
    bot_name: str
    bot_id: str | None = None
    url: str | None = None


class SlackInstall(msgspec.Struct, frozen=True, kw_only=True):
    """What an OAuth install gives: the workspace and its bot token (a secret: vault it)."""

    team_id: str
    team_name: str
    bot_user_id: str
    bot_token: str
    app_id: str | None = None
    scopes: tuple[str, ...] = ()


def _api_url(api_base: str | None) -> str:
    base = api_base or API_BASE
    return base if base.endswith("/") else base + "/"


def _web_client(
    token: str | None,
    api_base: str | None,
    *,
    timeout: int = 15,
    session: aiohttp.ClientSession | None = None,
    retries: bool = True,
) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=_api_url(api_base),
        timeout=timeout,
        session=session,
        # None: slack_sdk's default (a dropped connection is tried once more). Sends go
        # without: the runtime retries them, with the consumer's backoff.
        retry_handlers=None if retries else [],
    )


def _error_of(exc: SlackApiError) -> str:
    data = exc.response.data if isinstance(exc.response, AsyncSlackResponse) else None
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else f"http_{exc.response.status_code}"


def _is_transient(exc: SlackApiError) -> bool:
    return (
        exc.response.status_code >= 500
        or exc.response.status_code == 429
        or _error_of(exc) in _TRANSIENT_ERRORS
    )


def _retry_after(exc: SlackApiError) -> float | None:
    value = exc.response.headers.get("Retry-After") if exc.response.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_LINK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, WebSocketException)
_SEND_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, SlackClientError)


async def download_file(bot_token: str, file_id: str, *, api_base: str | None = None) -> bytes:
    """A shared file's bytes: ``files.info`` for its private URL, then a GET with the bot token."""
    client = _web_client(bot_token, api_base)
    try:
        info = await client.files_info(file=file_id)
    except SlackApiError as exc:
        raise SlackUnreachable(f"Slack would not describe the file: {exc.response.get('error')}") from None
    file = info.get("file") or {}
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise SlackUnreachable("Slack gave no download address for the file")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url, headers={"Authorization": f"Bearer {bot_token}"})
    if response.status_code != 200:
        raise SlackUnreachable(f"Slack answered {response.status_code} for a file download")
    return response.content


async def validate_token(token: str, *, api_base: str | None = None) -> WorkspaceIdentity:
    """The workspace and bot a bot token belongs to (``auth.test``).

    Raises TokenRejected (not a bot token, or Slack refuses it) or SlackUnreachable.
    """
    token = token.strip()
    if not token.startswith("xoxb-"):
        raise TokenRejected("This is not a Slack bot token: installing the app gives one starting with xoxb-")
    client = _web_client(token, api_base)
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        if _error_of(exc) in _TOKEN_ERRORS:
            raise TokenRejected("Slack does not accept this bot token") from None
        raise SlackUnreachable(f"Slack could not check the token just now ({_error_of(exc)})") from None
    except _NETWORK_ERRORS as exc:
        raise SlackUnreachable(f"Slack could not check the token just now: {exc!r}") from None
    return WorkspaceIdentity(
        team_id=str(answer["team_id"]),
        team_name=str(answer.get("team") or answer["team_id"]),
        bot_user_id=str(answer["user_id"]),
        bot_name=str(answer.get("user") or answer["user_id"]),
        bot_id=answer.get("bot_id"),
        url=answer.get("url"),
    )


def install_url(
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: Sequence[str],
    *,
    authorize_url: str = AUTHORIZE_URL,
) -> str:
    """Where to send a person to install the app in their workspace (OAuth v2).

    ``state`` comes back on the redirect: bind it to the person's session to refuse
    forged callbacks. (slack_sdk's AuthorizeUrlGenerator does not escape its values.)
    """
    query = urlencode(
        {"client_id": client_id, "scope": ",".join(scopes), "redirect_uri": redirect_uri, "state": state}
    )
    return f"{authorize_url}?{query}"


_INSTALL_REASONS = {
    "invalid_code": "This Slack authorization has expired or was already used; start the install again.",
    "code_already_used": "This Slack authorization was already used; start the install again.",
    "bad_redirect_uri": "The redirect address does not match the one the install started with.",
    "invalid_client_id": "Slack does not know this app (client id); check the app's settings.",
    "bad_client_secret": "Slack does not accept the app's client secret; check the app's settings.",
}


async def exchange_code(
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    *,
    api_base: str | None = None,
) -> SlackInstall:
    """Finish an install (``oauth.v2.access``): the workspace and its bot token."""
    client = _web_client(None, api_base)
    try:
        answer = await client.oauth_v2_access(
            client_id=client_id, client_secret=client_secret, code=code, redirect_uri=redirect_uri
        )
    except SlackApiError as exc:
        error = _error_of(exc)
        if _is_transient(exc):
            raise SlackUnreachable(f"Slack could not finish the install just now ({error})") from None
        reason = _INSTALL_REASONS.get(error, f"Slack refused the install ({error}).")
        raise InstallRejected(reason) from None
    except _NETWORK_ERRORS as exc:
        raise SlackUnreachable(f"Slack could not finish the install just now: {exc!r}") from None
    team = answer.get("team") or {}
    token = answer.get("access_token")
    if answer.get("token_type") != "bot" or not token:
        raise InstallRejected("Slack gave no bot token: the install must ask for bot scopes.")
    if not team.get("id"):  # events are routed by workspace: an org-wide install names none
        raise InstallRejected("Slack named no workspace: install the app in one workspace, not org-wide.")
    return SlackInstall(
        team_id=str(team.get("id")),
        team_name=str(team.get("name") or team.get("id")),
        bot_user_id=str(answer.get("bot_user_id")),
        bot_token=str(token),
        app_id=answer.get("app_id"),
        scopes=tuple(s for s in str(answer.get("scope") or "").split(",") if s),
    )


# --- Events API requests --------------------------------------------------------------------


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verify_request(signing_secret: str, headers: Mapping[str, str], body: bytes, *, now: datetime) -> None:
    """Refuse a request Slack did not sign with ``signing_secret`` within 5 minutes of ``now``.

    Raises BadSignature (answer 401, store nothing); returns None when it is Slack's.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp")
    signature = lowered.get("x-slack-signature")
    if not timestamp or not signature:
        raise BadSignature("The request carries no Slack signature.")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadSignature("The request's Slack timestamp is not a number.") from None
    if abs(now.timestamp() - sent_at) > MAX_SIGNATURE_AGE:
        raise BadSignature("The request's Slack signature is stale: signed more than 5 minutes from now.")
    verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now.timestamp()))
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise BadSignature("The request's Slack signature does not match.")


# --- normalization (pure) ------------------------------------------------------------------


def channel_conversation_id(connection_id: str, channel: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{channel}")


def thread_conversation_id(connection_id: str, channel: str, thread_ts: str) -> str:
    return ids.stable_id(ids.CONVERSATION, f"{KIND}:{connection_id}:{channel}:{thread_ts}")


def provider_message_id(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def message_id(connection_id: str, channel: str, ts: str) -> str:
    return ids.stable_id(ids.MESSAGE, f"{KIND}:{connection_id}:{provider_message_id(channel, ts)}")


def actor(connection_id: str) -> str:
    return f"connector:{KIND}:{connection_id}"


def slack_time(ts: str) -> datetime:
    """A Slack ``ts`` ("1700000000.000100") as a UTC datetime, to the microsecond."""
    seconds, _, fraction = str(ts).partition(".")
    micros = int((fraction + "000000")[:6]) if fraction else 0
    return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=micros)


def _event_id(key: str, at: datetime) -> str:
    """An event id derived from what happened, so a redelivered event is stored once."""
    digest = hashlib.blake2b(key.encode(), digest_size=10).digest()
    return ids.ulid(at_ms=int(at.timestamp() * 1000), randomness=digest)


def _inner(event_callback: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = event_callback.get("event") if event_callback.get("type") == "event_callback" else None
    return inner if isinstance(inner, Mapping) else {}


class _Place(msgspec.Struct, frozen=True):
    """Where a message lives: a channel (or DM), or a thread of one."""

    conversation_id: str
    kind: ev.ConversationKind
    external_id: str
    channel: str
    thread_ts: str | None


def _place(connection_id: str, channel: str, channel_type: str | None, message: Mapping[str, Any]) -> _Place:
    thread_ts = message.get("thread_ts")
    ts = message.get("ts")
    if isinstance(thread_ts, str) and thread_ts and thread_ts != ts:
        return _Place(
            thread_conversation_id(connection_id, channel, thread_ts),
            "thread",
            f"{channel}:{thread_ts}",
            channel,
            thread_ts,
        )
    is_direct = channel_type == "im" or (channel_type is None and channel.startswith("D"))
    kind: ev.ConversationKind = "direct" if is_direct else "group"
    return _Place(channel_conversation_id(connection_id, channel), kind, channel, channel, None)


def _is_ours(message: Mapping[str, Any], bot_user_id: str) -> bool:
    return message.get("user") == bot_user_id or message.get("subtype") == "bot_message"


def _sender(message: Mapping[str, Any]) -> ev.Sender:
    user = str(message.get("user") or message.get("bot_id") or "unknown")
    profile = message.get("user_profile")
    name = user
    if isinstance(profile, Mapping):
        name = str(profile.get("display_name") or profile.get("real_name") or profile.get("name") or user)
    return ev.Sender(id=f"{KIND}:{user}", name=name, is_bot="bot_id" in message)


def _file_kind(mime: str | None) -> Literal["image", "video", "audio", "document"]:
    major = (mime or "").split("/", 1)[0]
    if major == "image":
        return "image"
    if major == "video":
        return "video"
    return "audio" if major == "audio" else "document"


def _attachments(message: Mapping[str, Any]) -> tuple[ev.Attachment, ...]:
    found: list[ev.Attachment] = []
    for file in message.get("files") or ():
        if not isinstance(file, Mapping) or not file.get("id"):
            continue
        mime = file.get("mimetype")
        found.append(
            ev.Attachment(
                kind=_file_kind(mime),
                provider_file_id=str(file["id"]),
                mime=mime,
                size=file.get("size"),
                name=file.get("name"),
            )
        )
    return tuple(found)


def _mentions(text: str, bot_user_id: str) -> bool:
    # Slack writes a mention as <@U123> or <@U123|name>.
    return re.search(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", text) is not None


# Common reaction names as the emoji people see; others keep Slack's :name:.
_EMOJI = {
    "+1": "👍", "thumbsup": "👍", "-1": "👎", "thumbsdown": "👎", "heart": "❤️", "joy": "😂",
    "smile": "😄", "tada": "🎉", "eyes": "👀", "white_check_mark": "✅", "heavy_check_mark": "✔️",
    "pray": "🙏", "fire": "🔥", "rocket": "🚀", "100": "💯", "ok_hand": "👌", "raised_hands": "🙌",
    "wave": "👋", "thinking_face": "🤔", "cry": "😢",
}  # fmt: skip


def emoji(reaction: str) -> str:
    """A Slack reaction name ("thumbsup", "thumbsup::skin-tone-2") as the emoji it shows."""
    base = reaction.split("::", 1)[0]
    return _EMOJI.get(base, f":{reaction}:")


def normalize(
    event_callback: Mapping[str, Any],
    *,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    now: datetime | None = None,
) -> list[ev.Event]:
    """The canonical events of one Events API ``event_callback`` (none for what we do not carry).

    ``message`` (and ``app_mention``, the same message: one dedupe key) → ``message.received``;
    subtype ``message_changed`` → ``message.edited``; ``message_deleted`` →
    ``message.deleted``; ``reaction_added`` / ``reaction_removed`` → ``reaction.*`` (on the
    channel's conversation: Slack does not say which thread the message is in). Messages
    of bots (``bot_message``) and of our own bot are skipped. The conversation's
    ``conversation.created`` is the caller's (see :func:`conversation_created`).
    """
    event = _inner(event_callback)
    kind = event.get("type")
    channel = event.get("channel")
    if kind in ("message", "app_mention") and isinstance(channel, str):
        subtype = event.get("subtype")
        if subtype == "message_changed":
            return _edited(event, channel, tenant_id, connection_id, bot_user_id, now)
        if subtype == "message_deleted":
            return _deleted(event, channel, tenant_id, connection_id, bot_user_id, now)
        received = _received(event, channel, tenant_id, connection_id, bot_user_id, now)
        return [received] if received is not None else []
    if kind in ("reaction_added", "reaction_removed"):
        return _reaction(event, tenant_id, connection_id, now)
    return []


def _received(
    event: Mapping[str, Any],
    channel: str,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    now: datetime | None,
) -> ev.MessageReceived | None:
    ts = event.get("ts")
    if (
        event.get("subtype") not in _CARRIED_SUBTYPES
        or not isinstance(ts, str)
        or _is_ours(event, bot_user_id)
    ):
        return None
    text = str(event.get("text") or "")
    attachments = _attachments(event)
    if not text and not attachments:
        return None
    place = _place(connection_id, channel, event.get("channel_type"), event)
    # In a thread the bot started, every reply is addressed to it.
    in_our_thread = place.thread_ts is not None and event.get("parent_user_id") == bot_user_id
    return ev.new_event(
        ev.MessageReceived,
        tenant_id=tenant_id,
        aggregate_id=place.conversation_id,
        actor=actor(connection_id),
        occurred_at=now,
        data=ev.MessageReceivedData(
            message_id=message_id(connection_id, channel, ts),
            connection_id=connection_id,
            channel=KIND,
            provider_message_id=provider_message_id(channel, ts),
            sender=_sender(event),
            text=text,
            sent_at=slack_time(ts),
            attachments=attachments,
            mentions_agent=event.get("type") == "app_mention"
            or _mentions(text, bot_user_id)
            or in_our_thread,
        ),
    )


def _edited(
    event: Mapping[str, Any],
    channel: str,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    now: datetime | None,
) -> list[ev.Event]:
    message = event.get("message")
    if not isinstance(message, Mapping) or _is_ours(message, bot_user_id):
        return []
    edited = message.get("edited")
    ts = message.get("ts")
    # message_changed also reports unfurls and thread reply counts: only "edited" is an edit.
    if not isinstance(edited, Mapping) or not isinstance(ts, str):
        return []
    edited_at = slack_time(str(edited.get("ts") or event.get("event_ts") or ts))
    place = _place(connection_id, channel, event.get("channel_type"), message)
    provider_id = provider_message_id(channel, ts)
    return [
        ev.new_event(
            ev.MessageEdited,
            tenant_id=tenant_id,
            aggregate_id=place.conversation_id,
            actor=actor(connection_id),
            occurred_at=now,
            event_id=_event_id(
                f"{KIND}:{connection_id}:{provider_id}:edited:{edited_at.isoformat()}", edited_at
            ),
            data=ev.MessageEditedData(
                message_id=message_id(connection_id, channel, ts),
                text=str(message.get("text") or ""),
                edited_at=edited_at,
            ),
        )
    ]


def _deleted(
    event: Mapping[str, Any],
    channel: str,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    now: datetime | None,
) -> list[ev.Event]:
    previous = event.get("previous_message")
    previous = previous if isinstance(previous, Mapping) else {}
    ts = event.get("deleted_ts") or previous.get("ts")
    if not isinstance(ts, str) or _is_ours(previous, bot_user_id):
        return []
    deleted_at = slack_time(str(event.get("event_ts") or event.get("ts") or ts))
    place = _place(connection_id, channel, event.get("channel_type"), {"ts": ts, **previous})
    provider_id = provider_message_id(channel, ts)
    return [
        ev.new_event(
            ev.MessageDeleted,
            tenant_id=tenant_id,
            aggregate_id=place.conversation_id,
            actor=actor(connection_id),
            occurred_at=now,
            event_id=_event_id(f"{KIND}:{connection_id}:{provider_id}:deleted", deleted_at),
            data=ev.MessageDeletedData(
                message_id=message_id(connection_id, channel, ts), deleted_at=deleted_at
            ),
        )
    ]


def _reaction(
    event: Mapping[str, Any], tenant_id: str, connection_id: str, now: datetime | None
) -> list[ev.Event]:
    item = event.get("item")
    if not isinstance(item, Mapping) or item.get("type") != "message":
        return []  # reactions to files and file comments are not conversation
    channel, ts, user, name = item.get("channel"), item.get("ts"), event.get("user"), event.get("reaction")
    if not all(isinstance(value, str) and value for value in (channel, ts, user, name)):
        return []
    assert isinstance(channel, str) and isinstance(ts, str)
    at = slack_time(str(event.get("event_ts") or ts))
    kind = event["type"]
    cls: type[ev.ReactionAdded | ev.ReactionRemoved] = (
        ev.ReactionAdded if kind == "reaction_added" else ev.ReactionRemoved
    )
    provider_id = provider_message_id(channel, ts)
    key = f"{KIND}:{connection_id}:{provider_id}:{kind}:{user}:{name}:{event.get('event_ts')}"
    return [
        ev.new_event(
            cls,
            tenant_id=tenant_id,
            aggregate_id=channel_conversation_id(connection_id, channel),
            actor=actor(connection_id),
            occurred_at=now,
            event_id=_event_id(key, at),
            data=ev.ReactionData(
                message_id=message_id(connection_id, channel, ts),
                emoji=emoji(str(name)),
                sender_id=f"{KIND}:{user}",
            ),
        )
    ]


def conversation_created(
    event_callback: Mapping[str, Any],
    *,
    tenant_id: str,
    connection_id: str,
    title: str | None = None,
    now: datetime | None = None,
) -> ev.ConversationCreated | None:
    """The ``conversation.created`` of the channel, DM or thread a message is in (None: no message).

    Slack's events do not carry channel names; ``title`` overrides the default.
    """
    event = _inner(event_callback)
    channel = event.get("channel")
    if event.get("type") not in ("message", "app_mention") or not isinstance(channel, str):
        return None
    message = event
    if event.get("subtype") == "message_changed" and isinstance(event.get("message"), Mapping):
        message = event["message"]
    place = _place(connection_id, channel, event.get("channel_type"), message)
    if title is None:
        if place.kind == "thread":
            title = f"Thread in {channel}"
        elif place.kind == "direct":
            title = f"Slack direct message with {message.get('user') or channel}"
        else:
            title = f"Slack channel {channel}"
    return ev.new_event(
        ev.ConversationCreated,
        tenant_id=tenant_id,
        aggregate_id=place.conversation_id,
        actor=actor(connection_id),
        occurred_at=now,
        data=ev.ConversationCreatedData(
            channel=KIND,
            connection_id=connection_id,
            kind=place.kind,
            title=title,
            external_id=place.external_id,
        ),
    )


class Delivery(msgspec.Struct, frozen=True):
    """What one Slack event becomes: the conversation to create if new, then the events."""

    created: ev.ConversationCreated | None
    events: tuple[ev.Event, ...]


def delivery(
    event_callback: Mapping[str, Any],
    *,
    tenant_id: str,
    connection_id: str,
    bot_user_id: str,
    now: datetime | None = None,
) -> Delivery:
    events = normalize(
        event_callback, tenant_id=tenant_id, connection_id=connection_id, bot_user_id=bot_user_id, now=now
    )
    created = None
    if any(isinstance(event, ev.MessageReceived) for event in events):
        created = conversation_created(
            event_callback, tenant_id=tenant_id, connection_id=connection_id, now=now
        )
    return Delivery(created, tuple(events))


async def append_delivery(
    store: EventStore, delivered: Delivery, known_conversations: set[str] | None = None
) -> list[Appended]:
    """Append a delivery: ``conversation.created`` with expected sequence 0 (an existing one is
    left alone), then its events (their dedupe keys store a redelivery once)."""
    created = delivered.created
    if created is not None and (
        known_conversations is None or created.aggregate_id not in known_conversations
    ):
        with contextlib.suppress(ConcurrencyConflict):  # the conversation is known already
            await store.append(created, expected_seq=0)
        if known_conversations is not None:
            known_conversations.add(created.aggregate_id)
    return [await store.append(event) for event in delivered.events]


# --- in: the Events API webhook ------------------------------------------------------------


class EventsApiAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the webhook does with a verified request: answer ``challenge`` (url_verification),
    or append ``delivery`` (event_callback). ``team_id`` names the workspace."""

    challenge: str | None = None
    team_id: str | None = None
    delivery: Delivery | None = None


def check_workspace(payload: Mapping[str, Any], *, team_id: str, app_id: str | None = None) -> None:
    """Refuse (WrongWorkspace) a delivery that is not for this workspace, or not from this
    app when the connection knows its app; ``url_verification`` names neither."""
    if payload.get("type") == "url_verification":
        return
    if payload.get("team_id") != team_id:
        raise WrongWorkspace("This Slack delivery is for another workspace than this connection's.")
    if app_id is not None and payload.get("api_app_id") != app_id:
        raise WrongWorkspace("This Slack delivery is from another app than this connection's.")


class SlackEvents:
    """The Events API endpoint's logic for one Slack app (its signing secret).

    ``verify`` checks and decodes a request (raising BadSignature, or BadRequest for a
    signed body that is not JSON), so a gateway serving many workspaces can find the
    connection by ``payload["api_app_id"]`` and ``payload["team_id"]`` before ``answer``,
    which refuses a delivery for another workspace than the connection's (WrongWorkspace).
    """

    def __init__(self, signing_secret: str) -> None:
        self._signing_secret = signing_secret

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: datetime) -> dict[str, Any]:
        verify_request(self._signing_secret, headers, body, now=now)
        try:
            payload = json.loads(body)
        except ValueError:
            raise BadRequest("The request's body is not JSON.") from None
        if not isinstance(payload, dict):
            raise BadRequest("The request's body is not a JSON object.")
        return payload

    def answer(
        self,
        payload: Mapping[str, Any],
        *,
        tenant_id: str,
        connection_id: str,
        bot_user_id: str,
        team_id: str,
        app_id: str | None = None,
        now: datetime | None = None,
    ) -> EventsApiAnswer:
        if payload.get("type") == "url_verification":
            return EventsApiAnswer(challenge=str(payload.get("challenge") or ""))
        check_workspace(payload, team_id=team_id, app_id=app_id)
        if payload.get("type") != "event_callback":
            return EventsApiAnswer(team_id=team_id)
        return EventsApiAnswer(
            team_id=team_id,
            delivery=delivery(
                payload, tenant_id=tenant_id, connection_id=connection_id, bot_user_id=bot_user_id, now=now
            ),
        )

    def handle(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: datetime,
        tenant_id: str,
        connection_id: str,
        bot_user_id: str,
        team_id: str,
        app_id: str | None = None,
    ) -> EventsApiAnswer:
        """Verify, then answer: the whole webhook for a request whose connection is known."""
        payload = self.verify(headers, body, now=now)
        return self.answer(
            payload, tenant_id=tenant_id, connection_id=connection_id, bot_user_id=bot_user_id,
            team_id=team_id, app_id=app_id,
        )  # fmt: skip


# --- in: one connection's Socket Mode session -------------------------------------------------

_UNREACHABLE_MESSAGE = "Slack cannot be reached right now; Moltbot keeps trying."
_BOT_REFUSED_MESSAGE = "Slack no longer accepts this app's bot token"
_APP_LEVEL_REFUSED_MESSAGE = "Slack no longer accepts this app's Socket Mode (app-level) token"
_sdk_logger = logging.getLogger("moltbot.slack.socket_mode")  # the SDK's chatter, not our events


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Unreachable(Exception):
    pass


def _names_our_bot_revoked(event: Mapping[str, Any], bot_user_id: str) -> bool:
    """``app_uninstalled``, or ``tokens_revoked`` naming our bot (not a person's token)."""
    if event.get("type") == "app_uninstalled":
        return True
    tokens = event.get("tokens")
    return (
        event.get("type") == "tokens_revoked"
        and isinstance(tokens, Mapping)
        and bot_user_id in (tokens.get("bot") or ())
    )


class SlackSocketSession:
    """Receives one workspace's events over Socket Mode into the log, and reports health.

    ``run`` returns when Slack refuses a token (reported as ``action_required``); network
    trouble is reported as ``degraded`` and retried with exponential backoff; an error of
    the event store ends ``run`` with it (the session manager restarts it, and Slack
    redelivers the envelopes not yet acknowledged). Slack's own refresh ("disconnect")
    is followed by slack_sdk's client; a lost link is opened again here.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        tenant_id: str,
        connection_id: str,
        app_token: str,
        bot_token: str,
        api_base: str | None = None,
        media: MediaStore | None = None,
        ping_interval: float = 10.0,
        check_every: float = 0.5,
        hello_timeout: float = 10.0,
        first_backoff: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self._store = store
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self._app_token = app_token
        self._bot_token = bot_token
        self._api_base = api_base
        self._media = media  # where shared files are kept; None: they stay at Slack
        self._ping_interval = ping_interval
        self._check_every = check_every
        self._hello_timeout = hello_timeout
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self.state: ev.ConnectionState | None = None  # the last state this session recorded
        self._state_code: str | None = None
        self.identity: WorkspaceIdentity | None = None
        self.acked: list[str] = []  # envelope ids acknowledged, in order (all stored before)
        self._known_conversations: set[str] = set()
        self._inbox: asyncio.Queue[SocketModeRequest] = asyncio.Queue()
        self._hello = asyncio.Event()
        self._recheck = asyncio.Event()  # Slack said tokens were revoked: ask again
        self._log = log.bind(tenant_id=tenant_id, connection_id=connection_id)

    async def run(self) -> None:
        await self._report("connecting", "connecting", "Connecting to Slack…")
        web = _web_client(self._bot_token, self._api_base)
        backoff = self._first_backoff
        while True:
            try:
                await self._link(web)
            except _Refused as refused:
                await self._report("action_required", refused.code, refused.message, action="reconnect")
                self._log.warning("slack_token_refused", code=refused.code)
                return
            except _Unreachable as exc:
                await self._report("degraded", "slack_unreachable", _UNREACHABLE_MESSAGE)
                self._log.warning("slack_link_failed", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._first_backoff

    async def _identify(self, web: AsyncWebClient) -> WorkspaceIdentity:
        try:
            answer = await web.auth_test()
        except SlackApiError as exc:
            if _error_of(exc) in _TOKEN_ERRORS:
                raise _Refused("token_revoked", _BOT_REFUSED_MESSAGE) from None
            raise _Unreachable(f"auth.test: {_error_of(exc)}") from None
        except _NETWORK_ERRORS as exc:
            raise _Unreachable(f"auth.test: {exc!r}") from None
        return WorkspaceIdentity(
            team_id=str(answer["team_id"]),
            team_name=str(answer.get("team") or answer["team_id"]),
            bot_user_id=str(answer["user_id"]),
            bot_name=str(answer.get("user") or answer["user_id"]),
            bot_id=answer.get("bot_id"),
            url=answer.get("url"),
        )

    async def _link(self, web: AsyncWebClient) -> None:
        """One link: check the bot token, open a socket, store what arrives until it is lost."""
        self.identity = identity = await self._identify(web)
        self._hello.clear()
        self._recheck.clear()
        client = SocketModeClient(
            self._app_token,
            logger=_sdk_logger,
            web_client=web,
            auto_reconnect_enabled=False,  # a lost link comes back here, through auth.test
            ping_interval=self._ping_interval,
        )
        client.message_listeners.append(self._on_message)
        client.socket_mode_request_listeners.append(self._on_request)
        try:
            try:
                client.wss_uri = await client.issue_new_wss_url()
                await client.connect()
            except SlackApiError as exc:
                if _error_of(exc) in _TOKEN_ERRORS:
                    raise _Refused("app_token_revoked", _APP_LEVEL_REFUSED_MESSAGE) from None
                raise _Unreachable(f"apps.connections.open: {_error_of(exc)}") from None
            except _LINK_ERRORS as exc:
                raise _Unreachable(f"socket mode: {exc!r}") from None
            try:
                async with asyncio.timeout(self._hello_timeout):
                    await self._hello.wait()
            except TimeoutError:
                raise _Unreachable("Slack did not say hello on the socket") from None
            await self._report(
                "connected",
                "ok",
                f"Connected to Slack workspace {identity.team_name} as @{identity.bot_name}",
            )
            await self._receive(client, identity)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _receive(self, client: SocketModeClient, identity: WorkspaceIdentity) -> None:
        link_down_checks = 0
        while True:
            try:
                async with asyncio.timeout(self._check_every):
                    request = await self._inbox.get()
            except TimeoutError:
                if self._recheck.is_set():
                    self._log.info("slack_token_recheck")
                    return
                # slack_sdk follows Slack's "disconnect" (refresh) itself, holding this lock;
                # the link is lost when it is down on two checks without a refresh under way.
                refreshing = client.connect_operation_lock.locked()
                down = not refreshing and not await client.is_connected()
                link_down_checks = link_down_checks + 1 if down else 0
                if link_down_checks >= 2:
                    self._log.info("slack_link_lost")
                    return
                continue
            await self._store_request(request, identity)
            try:
                await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            except (WebSocketException, OSError):
                return  # not acknowledged: Slack delivers it again, and dedupe stores it once
            self.acked.append(request.envelope_id)

    async def _store_request(self, request: SocketModeRequest, identity: WorkspaceIdentity) -> None:
        """Store an envelope's events (an error of the store ends the session: no ack)."""
        if request.type != "events_api":
            return  # slash commands and interactivity are not carried: acknowledge them
        payload = request.payload
        inner = _inner(payload)
        if _names_our_bot_revoked(inner, identity.bot_user_id):
            self._recheck.set()  # the next auth.test says whether our token is still good
            return
        try:
            delivered = delivery(
                payload,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                bot_user_id=identity.bot_user_id,
            )
        except Exception as exc:  # one unreadable event must not stop the connection for good
            self._log.error("slack_event_unreadable", envelope_id=request.envelope_id, error=repr(exc))
            return
        for appended, event in zip(
            await append_delivery(self._store, delivered, self._known_conversations),
            delivered.events,
            strict=True,
        ):
            self._log.info(
                "slack_event_stored",
                envelope_id=request.envelope_id,
                retry_attempt=request.retry_attempt,
                event_type=event.type,
                seq=appended.seq,
                duplicate=appended.duplicate,
            )
        if self._media is not None:
            await fetch_delivery_media(
                self._store,
                self._media,
                delivered,
                self._bot_token,
                self.connection_id,
                api_base=self._api_base,
            )

    # slack_sdk runs each listener in a task of its own, in arrival order; they only queue
    # (no await before put_nowait), so the log keeps Slack's order.
    async def _on_message(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        if message.get("type") == "hello":
            self._hello.set()

    async def _on_request(self, client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        self._inbox.put_nowait(request)

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
        self._log.info("slack_connection_state", state=state, code=code)


# --- out: executing commands --------------------------------------------------------------


def destination(to: str) -> tuple[str, str | None]:
    """A conversation's external id as (channel, thread ts): "C1" or "C1:1700000000.000100"."""
    channel, _, thread_ts = to.partition(":")
    return channel, thread_ts or None


_REJECTIONS = {
    "channel_not_found": "Slack cannot find this channel any more (deleted, or the app cannot see it).",
    "not_in_channel": "The Moltbot app is not a member of this channel: invite it (/invite) to reply here.",
    "is_archived": "This channel is archived, so nobody can write in it.",
    "msg_too_long": "The message is too long for Slack.",
    "no_text": "Slack does not send an empty message.",
    "restricted_action": "This workspace does not let the app write in this channel.",
    "cannot_reply_to_message": "Slack does not allow replies in this thread.",
}


def _rejected_or_deferred(exc: SlackApiError) -> SendRejected | SendDeferred:
    error = _error_of(exc)
    if exc.response.status_code == 429 or error == "ratelimited":
        retry_after = _retry_after(exc)
        wait = f"{retry_after:g} s" if retry_after is not None else "a moment"
        return SendDeferred(f"Slack asked us to wait {wait}", retry_after=retry_after)
    if _is_transient(exc):
        return SendDeferred(f"Slack could not take the message just now ({error})")
    if error in _TOKEN_ERRORS:
        return SendRejected(
            "token_revoked", "Slack no longer accepts this app's token; reconnect Slack to send."
        )
    reason = _REJECTIONS.get(error)
    if reason is not None:
        return SendRejected(error, reason)
    return SendRejected("bad_request", f"Slack refused the message ({error}).")


class SlackConnector:
    """Sends with one slack_sdk client per connection; tokens come from ``credentials``."""

    kind = KIND
    capabilities = SLACK_CAPABILITIES

    def __init__(
        self, credentials: Credentials, *, api_base: str | None = None, request_timeout: int = 30
    ) -> None:
        self._credentials = credentials
        self._api_base = api_base
        self._timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None  # one for every connection's client
        self._clients: dict[str, AsyncWebClient] = {}
        self._lock = asyncio.Lock()

    async def client(self, connection_id: str) -> AsyncWebClient:
        """The connection's Web API client, built from its credentials on first use."""
        client = self._clients.get(connection_id)
        if client is not None:
            return client
        async with self._lock:
            if connection_id not in self._clients:
                credentials = await self._credentials(connection_id)
                token = credentials.get("token")
                if not isinstance(token, str) or not token:
                    raise TokenRejected("This Slack connection has no bot token; connect Slack again.")
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
                self._clients[connection_id] = _web_client(
                    token, self._api_base, timeout=self._timeout, session=self._session, retries=False
                )
            return self._clients[connection_id]

    def forget(self, connection_id: str) -> None:
        """Drop a cached client (its token was rotated or revoked): the next use reads it anew."""
        self._clients.pop(connection_id, None)

    async def send(self, command: SendMessage) -> Delivered:
        try:
            client = await self.client(command.connection_id)
        except TokenRejected as exc:
            raise SendRejected("token_invalid", str(exc)) from None
        channel, thread_ts = destination(command.to)
        try:
            answer = await client.chat_postMessage(channel=channel, text=command.text, thread_ts=thread_ts)
        except SlackApiError as exc:
            failure = _rejected_or_deferred(exc)
            if isinstance(failure, SendRejected) and failure.code == "token_revoked":
                self.forget(command.connection_id)
            raise failure from None
        except _SEND_ERRORS as exc:
            raise SendDeferred(f"Slack cannot be reached: {exc!r}") from None
        ts = str(answer["ts"])
        return Delivered(
            provider_message_id=provider_message_id(str(answer.get("channel") or channel), ts),
            sent_at=slack_time(ts),
        )

    async def aclose(self) -> None:
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def fetch_delivery_media(
    store: EventStore,
    media: MediaStore,
    delivered: Delivery,
    bot_token: str,
    connection_id: str,
    *,
    api_base: str | None = None,
) -> None:
    """Bring the files shared in a delivery into our storage (``media.available`` each)."""

    async def download(attachment: ev.Attachment) -> bytes:
        return await download_file(bot_token, attachment.provider_file_id, api_base=api_base)

    for event in delivered.events:
        if isinstance(event, ev.MessageReceived) and event.data.attachments:
            await fetch_media(store, media, event, download, actor=actor(connection_id))
