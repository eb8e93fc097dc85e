"""A fake of Meta's Graph API for WhatsApp Business (the Cloud API), served on 127.0.0.1.

The real client (httpx, ``adapters/channels/whatsapp_business/client.py``) talks to it over
HTTP with ``Authorization: Bearer <token>``, so tests exercise request building, response
parsing and the mapping of Graph's errors, not a mock of them. It answers like Graph:
JSON objects, and errors as ``{"error": {"message", "type", "code", "error_subcode"?,
"error_data"?: {"details"}, "fbtrace_id"}}`` with HTTP 400/401/429/5xx.

Endpoints (under ``/v21.0``): ``GET /{phone-number-id}`` (``display_phone_number``,
``verified_name``), ``POST /{phone-number-id}/messages`` (a text; checks its shape and
length; records it, answers its ``wamid``), ``GET /{media-id}`` (a short-lived ``url`` on
this server) and that URL, ``GET /media-download/{media-id}`` (the bytes, with the token).

Test controls: :meth:`FakeWhatsAppBusiness.add_number` (→ :class:`Number`: its id, an access
token, the app's secret), :meth:`~FakeWhatsAppBusiness.add_media`,
:meth:`~FakeWhatsAppBusiness.close_window` (sends to that person answer 131047 at once),
:meth:`~FakeWhatsAppBusiness.fail_next_send`, :meth:`~FakeWhatsAppBusiness.revoke`, and what
was done: ``sent``, ``requests``. Builders of what Meta posts to a webhook:
:meth:`~FakeWhatsAppBusiness.text_message`, :meth:`~FakeWhatsAppBusiness.media_message`,
:meth:`~FakeWhatsAppBusiness.status`, and :func:`signed` (the ``X-Hub-Signature-256`` header).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.serving import serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Json = dict[str, Any]

VERSION = "v21.0"
MAX_TEXT = 4096
REENGAGEMENT_DETAILS = (
    "Message failed to send because more than 24 hours have passed since the customer last replied"
    " to this number."
)
_GRAPH = re.compile(rf"^/{VERSION}/(?P<id>[^/]+)(?P<edge>/messages)?$")
_DOWNLOAD = re.compile(r"^/media-download/(?P<id>\d+)$")


@dataclass(frozen=True)
class Number:
    """A business phone number on the fake, and what its owner pastes into Moltbot."""

    phone_number_id: str
    display_phone_number: str
    verified_name: str
    token: str
    app_secret: str


@dataclass
class _Failure:
    status: int
    code: int
    message: str
    retry_after: int | None
    details: str | None


@dataclass
class _Media:
    content: bytes
    mime_type: str
    token: str  # only its number's token may fetch it


class GraphError(Exception):
    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class FakeWhatsAppBusiness:
    """The Cloud API's state for any number of business phone numbers, and the knobs tests turn."""

    def __init__(self) -> None:
        self.base_url = ""  # http://127.0.0.1:<port>
        self.numbers: dict[str, Number] = {}
        self.revoked: set[str] = set()
        self.closed_windows: set[str] = set()  # recipients more than 24 hours after their last message
        self.sent: list[Json] = []  # each send's body, with "phone_number_id" and the "wamid" answered
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self._failures: list[_Failure] = []
        self._media: dict[str, _Media] = {}
        self._ids = itertools.count(1)

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/{VERSION}"

    # --- numbers, media, failures ----------------------------------------------------

    def add_number(self, display: str = "+1 555-0100", verified_name: str = "Ada's Shop") -> Number:
        number = Number(
            phone_number_id=str(106540352242000 + next(self._ids)),
            display_phone_number=display,
            verified_name=verified_name,
            token="EAAG" + secrets.token_urlsafe(48),
            app_secret=secrets.token_hex(16),
        )
        self.numbers[number.phone_number_id] = number
        return number

    def revoke(self, token: str) -> None:
        """The token was invalidated (expired, or the system user removed): 401 from now on."""
        self.revoked.add(token)

    def close_window(self, recipient: str) -> None:
        """This person last wrote more than 24 hours ago: free-form sends answer 131047 at once."""
        self.closed_windows.add(recipient)

    def fail_next_send(
        self,
        status: int,
        code: int,
        message: str,
        *,
        retry_after: int | None = None,
        details: str | None = None,
    ) -> None:
        self._failures.append(_Failure(status, code, message, retry_after, details))

    def add_media(self, number: Number, content: bytes, mime_type: str) -> str:
        """A file a customer sent to ``number``; its media id."""
        media_id = str(900000000000000 + next(self._ids))
        self._media[media_id] = _Media(content, mime_type, number.token)
        return media_id

    # --- what Meta posts to the webhook ----------------------------------------------

    def _envelope(self, number: Number, value: Json) -> Json:
        metadata = {"display_phone_number": re.sub(r"\D", "", number.display_phone_number),
                    "phone_number_id": number.phone_number_id}  # fmt: skip
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
                         "field": "messages"}
                    ],
                }
            ],
        }  # fmt: skip

    def _from(self, number: Number, wa_id: str | None, name: str, user_id: str | None, content: Json) -> Json:
        wamid = "wamid." + secrets.token_urlsafe(24)
        contact: Json = {"profile": {"name": name}}
        message: Json = {"id": wamid, "timestamp": str(int(time.time())), **content}
        if wa_id is not None:
            contact["wa_id"] = wa_id
            message["from"] = wa_id
        if user_id is not None:
            contact["user_id"] = user_id
            message["from_user_id"] = user_id
        return self._envelope(number, {"contacts": [contact], "messages": [message]})

    def text_message(
        self,
        number: Number,
        wa_id: str | None,
        text: str,
        *,
        name: str = "Ada Lovelace",
        user_id: str | None = None,
        reply_to: str | None = None,
    ) -> Json:
        """A customer's text to ``number`` (``wa_id`` None: a username user, BSUID only)."""
        content: Json = {"type": "text", "text": {"body": text}}
        if reply_to is not None:
            content["context"] = {"from": number.display_phone_number, "id": reply_to}
        return self._from(number, wa_id, name, user_id, content)

    def media_message(
        self,
        number: Number,
        wa_id: str,
        kind: str,
        content: bytes,
        mime_type: str,
        *,
        caption: str | None = None,
        filename: str | None = None,
        name: str = "Ada Lovelace",
    ) -> Json:
        """A customer's image, document, audio, video or sticker (stored here for download)."""
        media: Json = {
            "id": self.add_media(number, content, mime_type),
            "mime_type": mime_type,
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        if caption is not None:
            media["caption"] = caption
        if filename is not None:
            media["filename"] = filename
        return self._from(number, wa_id, name, None, {"type": kind, kind: media})

    def status(self, number: Number, sent: Json, status: str, *, error_code: int | None = None) -> Json:
        """Meta's status of a message sent before (an entry of ``sent``)."""
        entry: Json = {
            "id": sent["wamid"],
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": sent.get("to") or sent.get("recipient"),
        }
        if "biz_opaque_callback_data" in sent:
            entry["biz_opaque_callback_data"] = sent["biz_opaque_callback_data"]
        if error_code == 131047:
            entry["errors"] = [
                {
                    "code": 131047,
                    "title": "Re-engagement message",
                    "message": "Re-engagement message",
                    "error_data": {"details": REENGAGEMENT_DETAILS},
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ]
        elif error_code is not None:
            entry["errors"] = [
                {"code": error_code, "title": "Message undeliverable", "message": "undeliverable"}
            ]
        return self._envelope(number, {"statuses": [entry]})

    # --- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        try:
            download = _DOWNLOAD.match(path)
            if method == "GET" and download:
                media = self._media_for(token, download["id"])
                await _reply(send, 200, media.content, media.mime_type)
                return
            graph = _GRAPH.match(path)
            if graph is None:
                raise GraphError(404, 1, "Unknown path components")
            self._authorized(token)
            if method == "POST" and graph["edge"]:
                answer = self._send(token, graph["id"], body)
            elif method == "GET" and not graph["edge"]:
                answer = self._get(token, graph["id"], scope)
            else:
                raise GraphError(400, 100, "Unsupported request")
        except GraphError as exc:
            retry_after = exc.extra.pop("retry_after", None)
            error = {"message": exc.message, "type": "OAuthException", "code": exc.code,
                     "fbtrace_id": secrets.token_urlsafe(8), **exc.extra}  # fmt: skip
            extra = [(b"retry-after", str(retry_after).encode())] if retry_after is not None else []
            await _reply(send, exc.status, json.dumps({"error": error}).encode(), "application/json", extra)
            return
        await _reply(send, 200, json.dumps(answer).encode(), "application/json")

    def _authorized(self, token: str) -> None:
        if not token or token in self.revoked or all(n.token != token for n in self.numbers.values()):
            raise GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token")

    def _get(self, token: str, object_id: str, scope: dict[str, Any]) -> Json:
        number = self.numbers.get(object_id)
        if number is not None and number.token == token:
            fields = dict(parse_qsl(scope.get("query_string", b"").decode())).get("fields", "id")
            shown = {"id": number.phone_number_id, "display_phone_number": number.display_phone_number,
                     "verified_name": number.verified_name}  # fmt: skip
            return {key: shown[key] for key in ["id", *fields.split(",")] if key in shown}
        media = self._media.get(object_id)
        if media is not None and media.token == token:
            return {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/media-download/{object_id}?ext={int(time.time())}",
                "mime_type": media.mime_type,
                "sha256": hashlib.sha256(media.content).hexdigest(),
                "file_size": len(media.content),
                "id": object_id,
            }
        raise GraphError(
            400, 100,
            f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to"
            " missing permissions, or does not support this operation.",
            error_subcode=33,
        )  # fmt: skip

    def _media_for(self, token: str, media_id: str) -> _Media:
        self._authorized(token)
        media = self._media.get(media_id)
        if media is None or media.token != token:
            raise GraphError(404, 100, "Media not found")
        return media

    def _send(self, token: str, phone_number_id: str, body: bytes) -> Json:
        number = self.numbers.get(phone_number_id)
        if number is None or number.token != token:
            raise GraphError(400, 100, f"Object with ID '{phone_number_id}' does not exist", error_subcode=33)
        try:
            message = json.loads(body)
        except ValueError:
            raise GraphError(400, 100, "Invalid parameter") from None
        to = message.get("to") or message.get("recipient")
        text = (message.get("text") or {}).get("body")
        if message.get("messaging_product") != "whatsapp" or not isinstance(to, str) or not to:
            raise GraphError(400, 100, "(#100) Invalid parameter: messaging_product and to are required")
        if message.get("type") != "text" or not isinstance(text, str) or not text:
            raise GraphError(400, 100, "(#100) The parameter text['body'] is required.")
        if len(text) > MAX_TEXT:
            raise GraphError(
                400, 100, f"(#100) Param text['body'] must be at most {MAX_TEXT} characters long."
            )
        if self._failures:
            failure = self._failures.pop(0)
            extra: Json = {"error_data": {"details": failure.details}} if failure.details else {}
            if failure.retry_after is not None:
                extra["retry_after"] = failure.retry_after
            raise GraphError(failure.status, failure.code, failure.message, **extra)
        if to in self.closed_windows:
            raise GraphError(
                400, 131047, "(#131047) Re-engagement message",
                error_data={"messaging_product": "whatsapp", "details": REENGAGEMENT_DETAILS},
            )  # fmt: skip
        wamid = "wamid." + secrets.token_urlsafe(24)
        self.sent.append({**message, "phone_number_id": phone_number_id, "wamid": wamid})
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid}],
        }


def signed(payload: Json | bytes, app_secret: str) -> tuple[bytes, dict[str, str]]:
    """A delivery as Meta posts it: the body, and its ``X-Hub-Signature-256`` header."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


# --- HTTP plumbing ---------------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(
    send: Send, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def fake_whatsapp_business() -> AsyncIterator[FakeWhatsAppBusiness]:
    """Serve a :class:`FakeWhatsAppBusiness` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeWhatsAppBusiness()
    async with serving(fake, "Graph API") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake
