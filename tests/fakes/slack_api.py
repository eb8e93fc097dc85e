"""A fake of Slack's Web API and Socket Mode, served on 127.0.0.1.

The real slack_sdk client talks to it over HTTP (``POST /api/<method>``, a bearer token
or a ``token`` parameter, form or JSON bodies as slack_sdk sends them) and over a
WebSocket (Socket Mode), so tests exercise request building, response parsing and
slack_sdk's error classes, not a mock of them. It answers like Slack: HTTP 200 with
``{"ok": true, …}`` or ``{"ok": false, "error": "…"}``, and 429 with ``Retry-After``.

Methods: ``auth.test``, ``oauth.v2.access`` (client id and secret as HTTP Basic or form
fields), ``chat.postMessage`` (checks the channel exists, the bot is in it, it is not
archived; assigns a ``ts``), ``chat.update``, ``reactions.add``, ``apps.connections.open``
(an app-level token → a ``ws://`` URL for one connection).

Socket Mode: the socket says ``hello``, then sends each pushed event as an envelope
``{"envelope_id", "type": "events_api", "payload": <event_callback>, "retry_attempt"}``
and records the envelope ids the client acknowledges (``acks``).

Test controls: :meth:`FakeSlack.add_workspace` (→ bot token, app token, team),
:meth:`~FakeSlack.add_channel`, :meth:`~FakeSlack.archive`,
:meth:`~FakeSlack.remove_bot`, :meth:`~FakeSlack.oauth_app` and
:meth:`~FakeSlack.authorize` (an install's code), :meth:`~FakeSlack.revoke`,
:meth:`~FakeSlack.rate_limit`, :meth:`~FakeSlack.fail`, ``unavailable`` (HTTP 503 for
every call), :meth:`~FakeSlack.push_event` / :meth:`~FakeSlack.redeliver` /
:meth:`~FakeSlack.disconnect` for Socket Mode, builders of Slack events
(:meth:`~FakeSlack.message`, :meth:`~FakeSlack.edit`, :meth:`~FakeSlack.delete`,
:meth:`~FakeSlack.reaction`, :func:`url_verification`), :func:`signed_request` for
the Events API, and what was done: ``sent``, ``updated``, ``reactions``, ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from tests.fakes.serving import serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Json = dict[str, Any]

MAX_TEXT = 40000
_PATH = re.compile(r"^/api/(?P<method>[A-Za-z0-9_.]+)$")
_SOCKET_PATH = "/link/"


# --- workspaces --------------------------------------------------------------------------


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str
    bot_name: str
    app_id: str


class Workspace(NamedTuple):
    bot_token: str
    app_token: str
    team: Team


@dataclass
class _Channel:
    id: str
    name: str
    team_id: str
    is_im: bool
    bot_member: bool = True
    archived: bool = False


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None
    times: int


@dataclass
class _Socket:
    app_token: str
    outbox: asyncio.Queue[Json | None] = field(default_factory=asyncio.Queue)


@dataclass
class _OAuthApp:
    client_id: str
    client_secret: str


@dataclass
class _Code:
    team: Team
    bot_token: str
    client_id: str
    redirect_uri: str | None
    used: bool = False


class ApiError(Exception):
    def __init__(self, error: str, status: int = 200, retry_after: int | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.retry_after = error, status, retry_after


class FakeSlack:
    """Slack's state for any number of workspaces (an app each, or one app in several), and
    the knobs tests turn."""

    def __init__(self) -> None:
        self.base_url = ""  # http://127.0.0.1:<port>
        self.unavailable = False  # every call answers 503
        self.files: dict[str, Json] = {}  # file id -> {"team", "token", "content", "json"}
        self.sent: list[Json] = []  # {"token", "channel", "text", "ts", "thread_ts", "message"}
        self.updated: list[Json] = []  # {"token", "channel", "ts", "text"}
        self.reactions: list[Json] = []  # {"token", "channel", "timestamp", "name"}
        self.requests: list[tuple[str, Json]] = []  # (method, params), in order
        self.acks: list[str] = []  # envelope ids the Socket Mode client acknowledged
        self.envelopes: dict[str, Json] = {}  # every envelope pushed, by id
        self.connections_opened = 0
        self.history: dict[str, list[Json]] = {}  # channel id -> messages posted before, oldest first
        self.emails: dict[tuple[str, str], str] = {}  # (team id, member id) -> their profile's e-mail
        self._bot_tokens: dict[str, Team] = {}
        self._app_tokens: dict[str, Team] = {}
        self._revoked: set[str] = set()
        self._channels: dict[str, _Channel] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._tickets: dict[str, str] = {}  # ticket -> app token
        self._sockets: list[_Socket] = []
        self._undelivered: dict[str, list[Json]] = {}  # app token -> envelopes waiting for a socket
        self._oauth_apps: dict[str, _OAuthApp] = {}
        self._codes: dict[str, _Code] = {}
        self._numbers = itertools.count(1)
        self._last_ts = 0.0

    @property
    def api_base(self) -> str:
        """What slack_sdk's ``base_url`` is set to (Slack's is https://slack.com/api/)."""
        return f"{self.base_url}/api/"

    # --- workspaces, channels, tokens ---------------------------------------------

    def _number(self) -> int:
        return next(self._numbers)

    def add_workspace(
        self, name: str = "Analytical Engines", bot_name: str = "moltbot", *, app_id: str | None = None
    ) -> Workspace:
        """A workspace with the app installed: its bot token, app-level token and team. Each
        workspace has an app of its own, unless ``app_id`` names one installed in several
        (as an "Add to Slack" app is; its events then carry that ``api_app_id``)."""
        n = self._number()
        team = Team(
            id=f"T{n:08d}",
            name=name,
            domain=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            bot_user_id=f"U0BOT{n:05d}",
            bot_id=f"B0BOT{n:05d}",
            bot_name=bot_name,
            app_id=app_id or f"A0APP{n:05d}",
        )
        bot_token = f"xoxb-{n}-{secrets.token_hex(6)}-{secrets.token_urlsafe(18)}"
        app_token = f"xapp-1-{team.app_id}-{n}-{secrets.token_hex(24)}"
        self._bot_tokens[bot_token] = team
        self._app_tokens[app_token] = team
        return Workspace(bot_token, app_token, team)

    def add_channel(
        self, team: Team, name: str = "general", *, im: bool = False, bot_member: bool = True
    ) -> str:
        """A channel (``C…``) or a direct message with the bot (``D…``); returns its id."""
        channel_id = f"{'D' if im else 'C'}{self._number():08d}"
        self._channels[channel_id] = _Channel(channel_id, name, team.id, im, bot_member=bot_member or im)
        return channel_id

    def archive(self, channel: str) -> None:
        self._channels[channel].archived = True

    def remove_bot(self, channel: str) -> None:
        """The app was removed from the channel: posting there answers not_in_channel."""
        self._channels[channel].bot_member = False

    def revoke(self, token: str) -> None:
        """The token is revoked (the app was uninstalled, a token rotated away).

        A bot token: Slack tells the app's open sockets with a ``tokens_revoked`` event.
        An app-level token: its sockets are closed, and apps.connections.open refuses it.
        """
        self._revoked.add(token)
        team = self._bot_tokens.get(token)
        if team is not None:
            for app_token, app_team in self._app_tokens.items():
                if app_team == team and any(s.app_token == app_token for s in self._sockets):
                    event = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [team.bot_user_id]}}
                    self.push_event(self.callback(team, event), app_token=app_token)
        for sock in self._sockets:
            if sock.app_token == token:
                sock.outbox.put_nowait(None)

    def rate_limit(self, method: str, retry_after: int, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer 429 with ``Retry-After``."""
        self.fail(method, "ratelimited", status=429, retry_after=retry_after, times=times)

    def fail(
        self, method: str, error: str, *, status: int = 200, retry_after: int | None = None, times: int = 1
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self._failures.setdefault(method, []).append(_Failure(status, error, retry_after, times))

    # --- OAuth ----------------------------------------------------------------------

    def oauth_app(self, client_id: str = "1234567890.0987654321", client_secret: str = "s3cr3t") -> None:
        """Register the app's OAuth client (what oauth.v2.access checks)."""
        self._oauth_apps[client_id] = _OAuthApp(client_id, client_secret)

    def authorize(self, team: Team, client_id: str, redirect_uri: str | None = None) -> str:
        """A person approved the install in ``team``: the ``code`` Slack redirects with."""
        code = f"{self._number()}.{secrets.token_hex(16)}"
        bot_token = next(token for token, t in self._bot_tokens.items() if t == team)
        self._codes[code] = _Code(team, bot_token, client_id, redirect_uri)
        return code

    # --- Slack events (Events API payloads) ---------------------------------------

    def next_ts(self) -> str:
        """A fresh message ``ts`` ("1700000000.000100"), always later than the last."""
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{int(now)}.{round((now - int(now)) * 1_000_000) % 1_000_000:06d}"

    def callback(self, team: Team, event: Json, *, event_id: str | None = None) -> Json:
        """An ``event_callback`` envelope around ``event``, as the Events API posts it."""
        return {
            "token": "verification-token-unused",
            "team_id": team.id,
            "api_app_id": team.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{self._number():010d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"enterprise_id": None, "team_id": team.id, "user_id": team.bot_user_id, "is_bot": True}
            ],
            "is_ext_shared_channel": False,
        }

    def message(
        self,
        team: Team,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        parent_user_id: str | None = None,
        files: list[Json] | None = None,
        ts: str | None = None,
    ) -> Json:
        """The ``event_callback`` of a person's message in ``channel`` (a thread reply with ``thread_ts``)."""
        ts = ts or self.next_ts()
        event: Json = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "team": team.id,
            "client_msg_id": f"{self._number():08d}-0000-4000-8000-000000000000",
            "channel_type": "im" if channel.startswith("D") else "channel",
        }
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = parent_user_id or user
        if files:
            event["subtype"] = "file_share"
            event["files"] = files
        return self.callback(team, event)

    def upload(self, team: Team, name: str, content: bytes, mimetype: str) -> Json:
        """A file a person shared: what a message's ``files`` carries (download with the bot token)."""
        file_id = f"F{self._number():08d}"
        bot_token = next(token for token, t in self._bot_tokens.items() if t == team)
        json_ = {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "size": len(content),
            "url_private_download": f"{self.base_url}/files-pri/{file_id}/{name}",
        }
        self.files[file_id] = {"team": team.id, "token": bot_token, "content": content, "json": json_}
        return json_

    def edit(self, original: Json, text: str) -> Json:
        """The ``message_changed`` callback of a person editing ``original`` (a :meth:`message`)."""
        before = original["event"]
        edited_ts = self.next_ts()
        message = {k: v for k, v in before.items() if k not in ("channel", "event_ts", "channel_type")}
        message.update({"text": text, "edited": {"user": before["user"], "ts": edited_ts}})
        team = self._team(original["team_id"])
        return self.callback(
            team,
            {
                "type": "message",
                "subtype": "message_changed",
                "hidden": True,
                "channel": before["channel"],
                "channel_type": before["channel_type"],
                "message": message,
                "previous_message": {k: v for k, v in message.items() if k != "edited"}
                | {"text": before["text"]},
                "ts": edited_ts,
                "event_ts": edited_ts,
            },
        )

    def delete(self, original: Json) -> Json:
        """The ``message_deleted`` callback of ``original`` being deleted."""
        before = original["event"]
        deleted_ts = self.next_ts()
        previous = {k: v for k, v in before.items() if k not in ("channel", "event_ts", "channel_type")}
        return self.callback(
            self._team(original["team_id"]),
            {
                "type": "message",
                "subtype": "message_deleted",
                "hidden": True,
                "channel": before["channel"],
                "channel_type": before["channel_type"],
                "ts": deleted_ts,
                "deleted_ts": before["ts"],
                "event_ts": deleted_ts,
                "previous_message": previous,
            },
        )

    def reaction(self, original: Json, name: str, user: str, *, added: bool = True) -> Json:
        """A ``reaction_added`` (or ``_removed``) callback on ``original``."""
        before = original["event"]
        event_ts = self.next_ts()
        return self.callback(
            self._team(original["team_id"]),
            {
                "type": "reaction_added" if added else "reaction_removed",
                "user": user,
                "reaction": name,
                "item_user": before["user"],
                "item": {"type": "message", "channel": before["channel"], "ts": before["ts"]},
                "event_ts": event_ts,
            },
        )

    def _team(self, team_id: str) -> Team:
        return next(t for t in self._bot_tokens.values() if t.id == team_id)

    # --- Socket Mode ----------------------------------------------------------------

    def _app_token_of(self, payload: Json) -> str:
        tokens = [t for t, team in self._app_tokens.items() if team.id == payload.get("team_id")]
        if len(tokens) != 1:
            raise ValueError("name the app token: the fake has several apps (or none) for this team")
        return tokens[0]

    def push_event(self, payload: Json, *, app_token: str | None = None) -> str:
        """Deliver an ``event_callback`` over Socket Mode (queued until a socket is open);
        returns the envelope id."""
        app_token = app_token or self._app_token_of(payload)
        envelope_id = f"{self._number():08d}-e5f6-4a7b-8c9d-{secrets.token_hex(6)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": payload,
        }
        self.envelopes[envelope_id] = envelope
        self._deliver(app_token, envelope)
        return envelope_id

    def redeliver(self, envelope_id: str, reason: str = "timeout") -> None:
        """Send an envelope again, as Slack does when an ack did not arrive in time."""
        envelope = self.envelopes[envelope_id]
        envelope = envelope | {"retry_attempt": envelope["retry_attempt"] + 1, "retry_reason": reason}
        self.envelopes[envelope_id] = envelope
        self._deliver(self._app_token_of(envelope["payload"]), envelope)

    def disconnect(self, app_token: str, reason: str = "refresh_requested") -> None:
        """Slack asks the client to reconnect (``disconnect``), then closes the socket."""
        for sock in self._sockets:
            if sock.app_token == app_token:
                sock.outbox.put_nowait(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
                )
                sock.outbox.put_nowait(None)

    def open_sockets(self, app_token: str | None = None) -> int:
        return sum(1 for s in self._sockets if app_token is None or s.app_token == app_token)

    def _deliver(self, app_token: str, envelope: Json) -> None:
        sockets = [s for s in self._sockets if s.app_token == app_token]
        if sockets:
            sockets[-1].outbox.put_nowait(envelope)
        else:
            self._undelivered.setdefault(app_token, []).append(envelope)

    # --- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        if scope["path"].startswith("/files-pri/"):  # url_private_download: the bot token is needed
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            file = self.files.get(scope["path"].split("/")[2])
            allowed = file is not None and headers.get("authorization") == f"Bearer {file['token']}"
            status, content = (
                (200, file["content"]) if allowed and file else (404 if file is None else 403, b"")
            )
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": content})
            return
        match = _PATH.match(scope["path"])
        if match is None:
            await _json(send, 404, {"ok": False, "error": "unknown_method"})
            return
        method = match["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            params = _params(scope, headers, body)
            self.requests.append((method, params))
            result = self._call(method, headers, params)
        except ApiError as exc:
            extra = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after is not None else []
            await _json(send, exc.status, {"ok": False, "error": exc.error}, extra)
            return
        await _json(send, 200, {"ok": True, **result})

    def _call(self, method: str, headers: dict[str, str], params: Json) -> Json:
        if self.unavailable:
            raise ApiError("service_unavailable", 503)
        self._scripted_failure(method)
        if method == "oauth.v2.access":
            return self._oauth_access(headers, params)
        token = _token(headers, params)
        if method == "apps.connections.open":
            return self._connections_open(token)
        team = self._authorized(token, self._bot_tokens)
        if method == "auth.test":
            return {
                "url": f"https://{team.domain}.slack.com/",
                "team": team.name,
                "user": team.bot_name,
                "team_id": team.id,
                "user_id": team.bot_user_id,
                "bot_id": team.bot_id,
                "is_enterprise_install": False,
            }
        if method == "users.conversations":
            return self._users_conversations(team, params)
        if method == "conversations.history":
            return self._conversations_history(team, params)
        if method == "users.info":
            member = str(params.get("user") or "")
            if not member.startswith("U"):
                raise ApiError("user_not_found")
            profile: Json = {"display_name": member, "real_name": member}
            if (team.id, member) in self.emails:
                profile["email"] = self.emails[(team.id, member)]
            return {"user": {"id": member, "team_id": team.id, "name": member, "profile": profile}}
        if method == "files.info":
            file = self.files.get(str(params.get("file")))
            if file is None or file["team"] != team.id:
                raise ApiError("file_not_found")
            return {"file": file["json"]}
        if method == "chat.postMessage":
            return self._post_message(token, team, params)
        if method == "chat.update":
            channel = self._writable(team, params)
            text = str(params.get("text") or "")
            update = {"token": token, "channel": channel.id, "ts": params.get("ts"), "text": text}
            self.updated.append({**update, "at": time.monotonic()})
            return {"channel": channel.id, "ts": params.get("ts"), "text": text}
        if method == "reactions.add":
            channel = self._channel(team, params)
            self.reactions.append(
                {
                    "token": token,
                    "channel": channel.id,
                    "timestamp": params.get("timestamp"),
                    "name": params.get("name"),
                }
            )
            return {}
        raise ApiError("unknown_method", 404)

    def said_before(self, team: Team, channel: str, user: str, text: str, *, ago: float) -> Json:
        """A message ``ago`` seconds old in ``channel``'s history (``conversations.history``)."""
        stamp = time.time() - ago
        message: Json = {
            "type": "message", "user": user, "text": text, "ts": f"{stamp:.6f}", "team": team.id,
            "client_msg_id": f"{self._number():08d}-0000-4000-8000-000000000000",
        }  # fmt: skip
        self.history.setdefault(channel, []).append(message)
        self.history[channel].sort(key=lambda m: float(m["ts"]))
        return message

    def _users_conversations(self, team: Team, params: Json) -> Json:
        """The bot's conversations, two per page (so a client must follow the cursor)."""
        mine = [
            c for c in self._channels.values() if c.team_id == team.id and c.bot_member and not c.archived
        ]
        start = int(params.get("cursor") or 0)
        page = mine[start : start + 2]
        channels = [
            {"id": c.id, "name": c.name, "is_im": c.is_im, "is_mpim": False, "is_private": False,
             "is_channel": not c.is_im}
            for c in page
        ]  # fmt: skip
        following = str(start + 2) if start + 2 < len(mine) else ""
        return {"channels": channels, "response_metadata": {"next_cursor": following}}

    def _conversations_history(self, team: Team, params: Json) -> Json:
        channel = self._channel(team, params)
        oldest = float(params.get("oldest") or 0)
        limit = int(params.get("limit") or 100)
        found = [m for m in self.history.get(channel.id, []) if float(m["ts"]) > oldest]
        newest_first = list(reversed(found))[:limit]
        return {"messages": newest_first, "has_more": len(found) > limit}

    def _authorized(self, token: str | None, tokens: dict[str, Team]) -> Team:
        if not token:
            raise ApiError("not_authed")
        if token in self._revoked:
            raise ApiError("token_revoked")
        team = tokens.get(token)
        if team is None:
            raise ApiError("invalid_auth")
        return team

    def _scripted_failure(self, method: str) -> None:
        for failure in self._failures.get(method, []):
            if failure.times > 0:
                failure.times -= 1
                raise ApiError(failure.error, failure.status, failure.retry_after)

    def _oauth_access(self, headers: dict[str, str], params: Json) -> Json:
        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        app = self._oauth_apps.get(str(client_id))
        if app is None:
            raise ApiError("invalid_client_id")
        if not hmac.compare_digest(app.client_secret, str(client_secret)):
            raise ApiError("bad_client_secret")
        code = self._codes.get(str(params.get("code")))
        if code is None or code.client_id != app.client_id:
            raise ApiError("invalid_code")
        if code.used:
            raise ApiError("code_already_used")
        if code.redirect_uri is not None and params.get("redirect_uri") != code.redirect_uri:
            raise ApiError("bad_redirect_uri")
        code.used = True
        team = code.team
        return {
            "access_token": code.bot_token,
            "token_type": "bot",
            "scope": "app_mentions:read,channels:history,chat:write,im:history,reactions:read",
            "bot_user_id": team.bot_user_id,
            "app_id": team.app_id,
            "team": {"name": team.name, "id": team.id},
            "enterprise": None,
            "authed_user": {"id": "U0INSTALLER"},
            "is_enterprise_install": False,
        }

    def _connections_open(self, token: str | None) -> Json:
        if token is not None and token.startswith("xoxb-"):
            raise ApiError("not_allowed_token_type")
        self._authorized(token, self._app_tokens)
        assert token is not None
        ticket = secrets.token_hex(16)
        self._tickets[ticket] = token
        self.connections_opened += 1
        ws_base = self.base_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_base}{_SOCKET_PATH}?ticket={ticket}&app_id={self._app_tokens[token].app_id}"}

    def _channel(self, team: Team, params: Json) -> _Channel:
        channel = self._channels.get(str(params.get("channel")))
        if channel is None or channel.team_id != team.id:
            raise ApiError("channel_not_found")
        return channel

    def _writable(self, team: Team, params: Json) -> _Channel:
        channel = self._channel(team, params)
        if channel.archived:
            raise ApiError("is_archived")
        if not channel.bot_member:
            raise ApiError("not_in_channel")
        return channel

    def _post_message(self, token: str | None, team: Team, params: Json) -> Json:
        channel = self._writable(team, params)
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError("no_text")
        if len(text) > MAX_TEXT:
            raise ApiError("msg_too_long")
        ts = self.next_ts()
        message: Json = {
            "type": "message",
            "user": team.bot_user_id,
            "bot_id": team.bot_id,
            "text": text,
            "ts": ts,
            "team": team.id,
        }
        thread_ts = params.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
        self.sent.append(
            {
                "token": token,
                "channel": channel.id,
                "text": text,
                "ts": ts,
                "thread_ts": message.get("thread_ts"),
                "message": message,
                "params": params,
            }
        )
        return {"channel": channel.id, "ts": ts, "message": message}

    async def _socket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        app_token = self._tickets.pop(query.get("ticket", ""), None)  # a ticket is good once
        if scope["path"] != _SOCKET_PATH or app_token is None or app_token in self._revoked:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        sock = _Socket(app_token)
        hello = {
            "type": "hello",
            "num_connections": self.open_sockets(app_token) + 1,
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self._app_tokens[app_token].app_id},
        }
        await send({"type": "websocket.send", "text": json.dumps(hello)})
        self._sockets.append(sock)
        for envelope in self._undelivered.pop(app_token, []):
            sock.outbox.put_nowait(envelope)
        pump = asyncio.create_task(self._pump(sock, send))
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text") or (message.get("bytes") or b"").decode()
                with contextlib.suppress(ValueError, AttributeError):
                    envelope_id = json.loads(text).get("envelope_id")
                    if envelope_id:
                        self.acks.append(envelope_id)
        finally:
            self._sockets.remove(sock)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _pump(self, sock: _Socket, send: Send) -> None:
        while True:
            frame = await sock.outbox.get()
            if frame is None:
                await send({"type": "websocket.close", "code": 1000})
                return
            await send({"type": "websocket.send", "text": json.dumps(frame)})

    def close(self) -> None:
        """Close every socket, as before a restart."""
        for sock in self._sockets:
            sock.outbox.put_nowait(None)


# --- Events API requests -------------------------------------------------------------------


def url_verification(challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P") -> Json:
    """The request Slack sends when an Events API URL is set."""
    return {"token": "verification-token-unused", "challenge": challenge, "type": "url_verification"}


def signed_request(
    signing_secret: str, payload: Json | bytes, *, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """An Events API request as Slack signs it: (headers, body).

    ``v0=hex(HMAC-SHA256(secret, "v0:<timestamp>:<body>"))`` in ``X-Slack-Signature``.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(signing_secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }
    return headers, body


# --- HTTP plumbing ---------------------------------------------------------------------------


def _token(headers: dict[str, str], params: Json) -> str | None:
    auth = headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:].strip()
    token = params.get("token")
    return str(token) if token else None


def _params(scope: dict[str, Any], headers: dict[str, str], body: bytes) -> Json:
    """Query string and body parameters: JSON, or a form as slack_sdk posts it."""
    params: Json = dict(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
    content_type = headers.get("content-type", "").split(";")[0].strip()
    if not body:
        return params
    if content_type == "application/json":
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ApiError("invalid_json")
        return params | parsed
    if content_type == "application/x-www-form-urlencoded":
        return params | dict(parse_qsl(body.decode(), keep_blank_values=True))
    raise ApiError("invalid_form_data")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, body: Json, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@contextlib.asynccontextmanager
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """Serve a :class:`FakeSlack` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeSlack()
    async with serving(fake, "Slack API", ws="auto") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            fake.close()
