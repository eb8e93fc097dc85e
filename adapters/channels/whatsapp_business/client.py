"""Meta's Graph API for WhatsApp Business, over httpx: the phone number a token reaches
(``GET /{phone-number-id}``), a text sent (``POST /{phone-number-id}/messages``), a media
file downloaded (``GET /{media-id}`` → a short-lived ``url`` → ``GET`` it, both with the
token). Graph's error answers become :class:`GraphError`; a person connecting gets the
channels' own errors (:func:`connect`)."""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

import httpx
import msgspec

from adapters.channels.errors import BadRequest, ProviderUnreachable, TokenRejected, retry_after
from adapters.channels.media import MAX_MEDIA_BYTES
from adapters.channels.whatsapp_business import DEFAULT_API_BASE

# Graph's codes for "too many requests" (app, account, pair, spam limits) and "try again".
RATE_LIMITED = frozenset({4, 80007, 130429, 131048, 131056})
TRANSIENT = frozenset({1, 2, 131000, 131016})
_BSUID = re.compile(r"[A-Z]{2}\.[A-Z0-9.]+")  # a business-scoped user id: US.13491208655302741918


class PhoneNumber(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    display_phone_number: str
    verified_name: str

    @property
    def shown_as(self) -> str:
        """How people know the number: "Ada's Shop (+1 555-0100)"."""
        if not self.verified_name:
            return self.display_phone_number
        return f"{self.verified_name} ({self.display_phone_number})"


class GraphError(Exception):
    """An error answer of the Graph API (``status`` 0: it could not be reached)."""

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        *,
        details: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.retry_after = details, retry_after

    @property
    def token_rejected(self) -> bool:
        return self.status == 401 or self.code == 190  # 190: OAuthException, the token is not valid

    @property
    def retryable(self) -> bool:
        return (
            self.status in (0, 429)
            or self.status >= 500
            or self.code in RATE_LIMITED
            or self.code in TRANSIENT
        )


def _error(response: httpx.Response) -> GraphError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    code, data = error.get("code"), error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return GraphError(
        response.status_code,
        code if isinstance(code, int) else None,
        str(error.get("message") or response.reason_phrase or "no message"),
        details=details if isinstance(details, str) else None,
        retry_after=retry_after(response.headers),
    )


def recipient(to: str) -> dict[str, str]:
    """Whom a message goes to: a phone number (``to``) or a business-scoped user id (``recipient``)."""
    return {"recipient": to} if _BSUID.fullmatch(to) else {"to": to}


class GraphApi:
    """One HTTP client on the Graph API base (its version included, e.g.
    ``https://graph.facebook.com/v21.0``); each call names the access token it uses."""

    def __init__(self, api_base: str | None = None, *, timeout: float = 30.0) -> None:
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.api_base, timeout=timeout)

    async def __aenter__(self) -> GraphApi:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, token: str, **options: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(
                method, path, headers={"Authorization": f"Bearer {token}"}, **options
            )
        except httpx.HTTPError as exc:
            raise GraphError(0, None, f"the Graph API cannot be reached: {exc!r}") from None
        if response.status_code >= 400:
            raise _error(response)
        try:
            answer = response.json()
        except ValueError:
            raise GraphError(response.status_code, None, "the Graph API answered no JSON") from None
        if not isinstance(answer, dict):
            raise GraphError(response.status_code, None, "the Graph API answered no JSON object")
        return answer

    async def phone_number(self, token: str, phone_number_id: str) -> PhoneNumber:
        """The number a phone number id names, as the token's owner sees it."""
        answer = await self._call(
            "GET", f"/{phone_number_id}", token, params={"fields": "display_phone_number,verified_name"}
        )
        return PhoneNumber(
            id=str(answer.get("id") or phone_number_id),
            display_phone_number=str(answer.get("display_phone_number") or phone_number_id),
            verified_name=str(answer.get("verified_name") or ""),
        )

    async def send_text(
        self, token: str, phone_number_id: str, to: str, text: str, *, callback_data: str | None = None
    ) -> str:
        """Send a free-form text; the ``wamid.…`` Meta gives it."""
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **recipient(to),
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        if callback_data is not None:
            body["biz_opaque_callback_data"] = callback_data  # returned in this message's statuses
        answer = await self._call("POST", f"/{phone_number_id}/messages", token, json=body)
        messages = answer.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
            raise GraphError(200, None, "the Graph API accepted the message but named no id")
        return str(messages[0]["id"])

    async def download_media(self, token: str, media_id: str) -> bytes:
        """A media file's bytes: its short-lived URL first, then the file, both with the token."""
        if not media_id.isdigit():
            raise GraphError(400, None, f"{media_id!r} is not a WhatsApp media id")
        info = await self._call("GET", f"/{media_id}", token)
        size = info.get("file_size")
        if isinstance(size, int) and size > MAX_MEDIA_BYTES:
            raise GraphError(413, None, f"the file is {size} bytes, more than we keep")
        url = str(info.get("url") or "")
        if not self._may_send_token_to(url):
            raise GraphError(200, None, "the Graph API named a media URL we do not send the token to")
        authorization = {"Authorization": f"Bearer {token}"}
        try:
            async with self._http.stream("GET", url, headers=authorization) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_MEDIA_BYTES:
                        raise GraphError(413, None, "the file is larger than we keep")
        except httpx.HTTPError as exc:
            raise GraphError(0, None, f"the media URL cannot be reached: {exc!r}") from None
        return bytes(content)

    def _may_send_token_to(self, url: str) -> bool:
        """Only over https (Meta's lookaside host), or to the API base's own origin (a proxy, a fake)."""
        target, base = httpx.URL(url), httpx.URL(self.api_base)
        same_origin = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
        return bool(target.host) and (target.scheme == "https" or same_origin)


_PHONE_NUMBER_ID_HELP = (
    "The phone number ID is the number Meta shows under WhatsApp → API Setup (digits only, e.g."
    " 106540352242922), not the phone number itself."
)
_WHERE_ACCESS_TOKENS_ARE = (
    "Copy it again from your app's WhatsApp → API Setup page in Meta's dashboard; for a lasting"
    " connection use a System User's permanent token (the temporary one expires after 24 hours)."
)


async def validate_token(token: str, phone_number_id: str, *, api_base: str | None = None) -> PhoneNumber:
    """The number an access token reaches (``GET /{phone-number-id}``); raises TokenRejected
    (the token, or the number for this token) or ProviderUnreachable."""
    if not phone_number_id.isdigit():
        raise BadRequest(f"This is not a phone number ID. {_PHONE_NUMBER_ID_HELP}", field="phone_number_id")
    async with GraphApi(api_base, timeout=15.0) as api:
        try:
            return await api.phone_number(token.strip(), phone_number_id)
        except GraphError as exc:
            if exc.token_rejected:
                raise TokenRejected("Meta does not accept this access token", field="access_token") from None
            if exc.retryable:
                raise ProviderUnreachable(f"Meta could not check the token just now: {exc.message}") from None
            raise TokenRejected(
                f"This access token cannot reach the phone number ID {phone_number_id} ({exc.message})."
                f" {_PHONE_NUMBER_ID_HELP}",
                field="phone_number_id",
            ) from None


async def connect(token: str, phone_number_id: str, *, api_base: str | None = None) -> PhoneNumber:
    """:func:`validate_token` for a person connecting: a refused token says where tokens come from."""
    try:
        return await validate_token(token, phone_number_id.strip(), api_base=api_base)
    except TokenRejected as exc:
        if exc.field != "access_token":
            raise
        raise TokenRejected(f"{exc}. {_WHERE_ACCESS_TOKENS_ARE}", field="access_token") from None
