"""A fake of the Telegram Bot API, served on 127.0.0.1.

The real aiogram client talks to it over HTTP (``/bot<token>/<method>``, form or JSON
bodies as aiogram sends them), so tests exercise request building, response parsing and
aiogram's error classes, not a mock of them. It answers like Telegram:
``{"ok": true, "result": …}`` or ``{"ok": false, "error_code": …, "description": …,
"parameters": {"retry_after": n}}``.

Methods: ``getMe``, ``getUpdates`` (long poll: waits up to ``timeout`` seconds for
updates; an ``offset`` confirms, and forgets, every update below it; a negative one
keeps only the last ``-offset``), ``sendMessage`` (assigns the chat's next message id,
returns the Message), ``editMessageText`` (the bot's own messages; the same text again is
"message is not modified"), ``sendChatAction``, ``getFile`` (and ``/file/bot<token>/<path>``).

Test controls: :meth:`FakeTelegram.add_bot`, :meth:`~FakeTelegram.push_update` and the
builders around it (:meth:`~FakeTelegram.push_message` for text, mentions, replies,
photos with captions, documents; :meth:`~FakeTelegram.push_edit`),
:meth:`~FakeTelegram.revoke` (401 from then on), :meth:`~FakeTelegram.rate_limit` (429 with
``retry_after``), :meth:`~FakeTelegram.block` (403, the person blocked the bot),
:meth:`~FakeTelegram.fail` (any scripted error), ``unavailable`` (502 for every call), and
what was sent: ``sent``, ``edited``, ``chat_actions``, ``requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.serving import serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Json = dict[str, Any]

MAX_TEXT = 4096
MAX_POLL_TIMEOUT = 50.0
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
_FILE_PATH = re.compile(r"^/file/bot(?P<token>[^/]+)/(?P<path>.+)$")
_MENTION = re.compile(r"(?<![\w@])@\w{3,}")


# --- building Telegram objects ------------------------------------------------------------


def user(user_id: int, first_name: str, last_name: str | None = None, *, username: str | None = None) -> Json:
    """A person's Telegram ``User``."""
    person: Json = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
    if last_name:
        person["last_name"] = last_name
    if username:
        person["username"] = username
    return person


def private_chat(person: Json) -> Json:
    """The ``Chat`` of a person's private conversation with the bot (its id is theirs)."""
    chat = {"id": person["id"], "type": "private", "first_name": person["first_name"]}
    for key in ("last_name", "username"):
        if key in person:
            chat[key] = person[key]
    return chat


def group_chat(chat_id: int = -1001234567890, title: str = "Analytical Engine Club") -> Json:
    """A supergroup's ``Chat`` (negative ids, as Telegram gives them)."""
    return {"id": chat_id, "type": "supergroup" if chat_id < -1_000_000_000_000 else "group", "title": title}


ADA = user(5551234, "Ada", "Lovelace", username="ada")
CHARLES = user(5559876, "Charles", "Babbage", username="cbabbage")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _mention_entities(text: str) -> list[Json]:
    """``mention`` entities as Telegram computes them (offsets in UTF-16 code units)."""
    return [
        {"type": "mention", "offset": _utf16_length(text[: m.start()]), "length": _utf16_length(m.group())}
        for m in _MENTION.finditer(text)
    ]


# --- state -------------------------------------------------------------------------------


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None
    times: int
    chat_id: int | None = None  # only calls naming this chat


@dataclass
class _Bot:
    token: str
    user: Json
    updates: deque[Json] = field(default_factory=deque)
    next_update_id: int = 100_000_001
    chats: dict[int, Json] = field(default_factory=dict)
    message_ids: dict[int, itertools.count[int]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def next_message_id(self, chat_id: int) -> int:
        return next(self.message_ids.setdefault(chat_id, itertools.count(1)))

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    size: int
    path: str
    content: bytes


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


class FakeTelegram:
    """The Bot API's state for any number of bots, and the knobs tests turn."""

    def __init__(self) -> None:
        self.base_url = ""
        self.valid_tokens: dict[str, Json] = {}  # token -> the bot's User
        self.revoked: set[str] = set()
        self.unavailable = False  # every call answers 502 Bad Gateway
        self.sent: list[Json] = []  # {"token", "chat_id", "text", "message_id", "message", "params"}
        self.edited: list[Json] = []  # {"token", "chat_id", "message_id", "text", "at" (monotonic)}
        self.chat_actions: list[Json] = []
        self.webhooks: dict[str, Json] = {}  # token -> {"url", "secret_token"} (setWebhook)
        self.requests: list[tuple[str, str, Json]] = []  # (token, method, params), in order
        self._bots: dict[str, _Bot] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._blocked: dict[int, str] = {}
        self._files: dict[str, _File] = {}
        self._file_ids = itertools.count(1)
        self._closing = False

    # --- bots ---------------------------------------------------------------------

    def add_bot(
        self, username: str = "moltbot_test_bot", first_name: str = "Moltbot", *, bot_id: int | None = None
    ) -> str:
        """Register a bot; returns its token (``<bot id>:<secret>``, as @BotFather makes them)."""
        bot_id = bot_id or 7_000_000_000 + len(self._bots) + 1
        token = f"{bot_id}:AAF{username.replace('_', '')[:12]}{'x' * 20}"
        bot_user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.valid_tokens[token] = bot_user
        self._bots[token] = _Bot(token, bot_user)
        return token

    def revoke(self, token: str) -> None:
        """@BotFather revoked the token: every later call with it answers 401."""
        self.revoked.add(token)
        self.valid_tokens.pop(token, None)
        if token in self._bots:
            self._bots[token].wake()

    def rate_limit(self, method: str, retry_after: int, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer 429 with ``retry_after``."""
        self.fail(
            method, 429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after, times=times
        )

    def fail(
        self,
        method: str,
        status: int,
        description: str,
        *,
        retry_after: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (naming ``chat_id``, if given) answer this error."""
        failure = _Failure(status, description, retry_after, times, chat_id)
        self._failures.setdefault(method.lower(), []).append(failure)

    def block(self, chat_id: int) -> None:
        """The person in this private chat blocked the bot: sending there answers 403."""
        self._blocked[chat_id] = "Forbidden: bot was blocked by the user"

    def kick(self, chat_id: int) -> None:
        """The bot was removed from this group: sending there answers 403."""
        self._blocked[chat_id] = "Forbidden: bot was kicked from the supergroup chat"

    def _bot(self, token: str | None) -> _Bot:
        if token is None:
            if len(self._bots) != 1:
                raise ValueError("name the bot's token: the fake has several (or none)")
            return next(iter(self._bots.values()))
        return self._bots[token]

    def add_chat(self, chat: Json, *, token: str | None = None) -> None:
        """Make a chat known to the bot (as if someone had written to it)."""
        self._bot(token).chats[chat["id"]] = chat

    # --- updates ------------------------------------------------------------------

    def push_update(self, update: Json, *, token: str | None = None) -> Json:
        """Queue an update for ``getUpdates``; an ``update_id`` is assigned unless it has one
        (give the same one again to replay a delivery, as Telegram does when not confirmed)."""
        bot = self._bot(token)
        if "update_id" not in update:
            update = {"update_id": bot.next_update_id, **update}
        bot.next_update_id = max(bot.next_update_id, update["update_id"] + 1)
        for key in ("message", "edited_message"):
            if key in update:
                bot.chats[update[key]["chat"]["id"]] = update[key]["chat"]
        bot.updates.append(update)
        bot.wake()
        return update

    def message(
        self,
        chat: Json,
        sender: Json,
        text: str | None = None,
        *,
        caption: str | None = None,
        photo: bool = False,
        document: Json | None = None,
        reply_to: Json | None = None,
        token: str | None = None,
    ) -> Json:
        """A ``Message`` a person sends in ``chat`` (not queued: see :meth:`push_message`).

        ``document`` is ``{"file_name", "mime_type", "content"?}``; ``reply_to`` is the
        Message replied to (one pushed before, or one from ``sent``).
        """
        bot = self._bot(token)
        message: Json = {
            "message_id": bot.next_message_id(chat["id"]),
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
        }
        if text is not None:
            message["text"] = text
            if entities := _mention_entities(text):
                message["entities"] = entities
        if caption is not None:
            message["caption"] = caption
            if entities := _mention_entities(caption):
                message["caption_entities"] = entities
        if photo:
            message["photo"] = [self._photo_size(width, height) for width, height in _PHOTO_SIZES]
        if document is not None:
            content = document.get("content", b"%PDF-1.4 fake")
            file = self._register_file(content, f"documents/{document['file_name']}")
            message["document"] = {
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_name": document["file_name"],
                "mime_type": document["mime_type"],
                "file_size": file.size,
            }
        if reply_to is not None:
            message["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
        return message

    def push_message(self, chat: Json, sender: Json, text: str | None = None, **options: Any) -> Json:
        """Build a message (see :meth:`message`) and queue it as an update; returns the update."""
        token = options.get("token")
        return self.push_update({"message": self.message(chat, sender, text, **options)}, token=token)

    def push_edit(self, message: Json, text: str, *, token: str | None = None) -> Json:
        """The person edited ``message`` (a Message pushed before): queue ``edited_message``."""
        edited = {**message, "edit_date": max(int(time.time()), message["date"] + 1)}
        edited.pop("reply_to_message", None)
        key = "text" if "text" in message else "caption"
        edited[key] = text
        return self.push_update({"edited_message": edited}, token=token)

    def _photo_size(self, width: int, height: int) -> Json:
        file = self._register_file(b"\xff\xd8\xff" + bytes(width // 10), f"photos/file_{width}.jpg")
        return {
            "file_id": file.file_id,
            "file_unique_id": file.file_unique_id,
            "width": width,
            "height": height,
            "file_size": file.size,
        }

    def _register_file(self, content: bytes, path: str) -> _File:
        n = next(self._file_ids)
        file = _File(f"BQACAgIAAxkBAAI{n:08d}", f"AgAD{n:06d}", len(content), path, content)
        self._files[file.file_id] = file
        return file

    # --- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        file_match = _FILE_PATH.match(scope["path"])
        if scope["method"] == "GET" and file_match:
            await self._download(send, file_match["token"], file_match["path"])
            return
        match = _PATH.match(scope["path"])
        if match is None:
            await _json(send, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        token, method = match["token"], match["method"]
        try:
            params = _params(scope, body)
            self.requests.append((token, method, params))
            result = await self._call(token, method.lower(), params)
        except ApiError as exc:
            answer: Json = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.retry_after is not None:
                answer["parameters"] = {"retry_after": exc.retry_after}
            await _json(send, exc.status, answer)
            return
        await _json(send, 200, {"ok": True, "result": result})

    async def _call(self, token: str, method: str, params: Json) -> Any:
        if self.unavailable:
            raise ApiError(502, "Bad Gateway")
        if token not in self.valid_tokens:
            raise ApiError(401, "Unauthorized")
        self._scripted_failure(method, params)
        bot = self._bots[token]
        if method == "getme":
            return bot.user
        if method == "getupdates":
            return await self._get_updates(bot, params)
        if method == "sendmessage":
            return self._send_message(bot, params)
        if method == "editmessagetext":
            return self._edit_message(bot, params)
        if method == "sendchataction":
            chat = self._chat(bot, params)
            self.chat_actions.append({"token": token, "chat_id": chat["id"], "action": params.get("action")})
            return True
        if method == "setwebhook":  # where Telegram would POST updates, and the secret header
            self.webhooks[token] = {"url": params.get("url"), "secret_token": params.get("secret_token")}
            return True
        if method == "deletewebhook":
            self.webhooks.pop(token, None)
            return True
        if method == "getfile":
            file = self._files.get(str(params.get("file_id")))
            if file is None:
                raise ApiError(400, "Bad Request: invalid file_id")
            return {
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_size": file.size,
                "file_path": file.path,
            }
        raise ApiError(404, "Not Found")

    def _scripted_failure(self, method: str, params: Json) -> None:
        for failure in self._failures.get(method, []):
            if failure.times <= 0:
                continue
            if failure.chat_id is not None and _int(params.get("chat_id")) != failure.chat_id:
                continue
            failure.times -= 1
            raise ApiError(failure.status, failure.description, failure.retry_after)

    async def _get_updates(self, bot: _Bot, params: Json) -> list[Json]:
        offset = _int(params.get("offset"))
        limit = min(max(_int(params.get("limit")) or 100, 1), 100)
        timeout = min(float(params.get("timeout") or 0), MAX_POLL_TIMEOUT)
        if offset is not None and offset < 0:
            while len(bot.updates) > -offset:
                bot.updates.popleft()
        elif offset:
            while bot.updates and bot.updates[0]["update_id"] < offset:
                bot.updates.popleft()  # confirmed: Telegram forgets it
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if bot.token not in self.valid_tokens:
                raise ApiError(401, "Unauthorized")
            ready = [u for u in bot.updates if offset is None or offset < 0 or u["update_id"] >= offset]
            remaining = deadline - asyncio.get_running_loop().time()
            if ready or remaining <= 0 or self._closing:
                return ready[:limit]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bot.changed.wait(), remaining)

    def _chat(self, bot: _Bot, params: Json) -> Json:
        chat_id = _int(params.get("chat_id"))
        chat = bot.chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _send_message(self, bot: _Bot, params: Json) -> Json:
        chat = self._chat(bot, params)
        if chat["id"] in self._blocked:
            raise ApiError(403, self._blocked[chat["id"]])
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        message: Json = {
            "message_id": bot.next_message_id(chat["id"]),
            "from": bot.user,
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        reply_to = _reply_target(params)
        if reply_to is not None:
            message["reply_to_message"] = {"message_id": reply_to, "chat": chat, "date": message["date"]}
        self.sent.append(
            {
                "token": bot.token,
                "chat_id": chat["id"],
                "text": text,
                "message_id": message["message_id"],
                "reply_to_message_id": reply_to,
                "message": message,
                "params": params,
            }
        )
        return message

    def _edit_message(self, bot: _Bot, params: Json) -> Json:
        """The bot's own message's text replaced; the same text again is Telegram's
        "message is not modified" error."""
        chat = self._chat(bot, params)
        message_id = _int(params.get("message_id"))
        sent = next(
            (
                s
                for s in self.sent
                if s["chat_id"] == chat["id"] and s["message_id"] == message_id and s["token"] == bot.token
            ),
            None,
        )
        if sent is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        if text == sent["message"]["text"]:
            raise ApiError(
                400, "Bad Request: message is not modified: specified new message content and reply markup"
                " are exactly the same as a current content and reply markup of the message",
            )  # fmt: skip
        sent["message"] = {**sent["message"], "text": text, "edit_date": int(time.time())}
        self.edited.append(
            {
                "token": bot.token,
                "chat_id": chat["id"],
                "message_id": message_id,
                "text": text,
                "at": time.monotonic(),
            }
        )
        return dict(sent["message"])

    async def _download(self, send: Send, token: str, path: str) -> None:
        file = next((f for f in self._files.values() if f.path == path), None)
        if token not in self.valid_tokens or file is None:
            await _json(send, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        headers = [(b"content-type", b"application/octet-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": file.content})

    def close(self) -> None:
        """End pending long polls (their answer: no updates), as before a restart."""
        self._closing = True
        for bot in self._bots.values():
            bot.wake()


_PHOTO_SIZES = ((90, 67), (320, 240), (1280, 960))


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reply_target(params: Json) -> int | None:
    reply = params.get("reply_parameters")
    if isinstance(reply, str):
        reply = json.loads(reply)
    if isinstance(reply, dict):
        return _int(reply.get("message_id"))
    return _int(params.get("reply_to_message_id"))


def _params(scope: dict[str, Any], body: bytes) -> Json:
    """Query string and body parameters: JSON, or a form as aiogram posts it."""
    params: Json = dict(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    content_type = headers.get("content-type", "").split(";")[0].strip()
    if not body:
        return params
    if content_type == "application/json":
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ApiError(400, "Bad Request: parameters must be a JSON object")
        return params | parsed
    if content_type == "application/x-www-form-urlencoded":
        return params | dict(parse_qsl(body.decode(), keep_blank_values=True))
    raise ApiError(400, f"Bad Request: fake_telegram does not read {content_type or 'this'} bodies")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, body: Json) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@contextlib.asynccontextmanager
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """Serve a :class:`FakeTelegram` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeTelegram()
    async with serving(fake, "Telegram API") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            fake.close()
