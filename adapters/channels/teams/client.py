"""The Bot Framework over httpx, bot → Microsoft:

- the app's token, by the client-credentials flow: ``POST {login}/{tenant}/oauth2/v2.0/token``
  (``botframework.com`` for multi-tenant bots, the Azure AD tenant for single-tenant ones),
  scope ``https://api.botframework.com/.default`` (:class:`AppTokens` caches it until
  :data:`RENEW_BEFORE` seconds before it expires);
- an Activity sent: ``POST {serviceUrl}/v3/conversations/{conversationId}/activities``
  with that token (:meth:`BotFramework.send_text`);
- a member of a conversation (their e-mail address):
  ``GET {serviceUrl}/v3/conversations/{conversationId}/members/{memberId}`` (:meth:`BotFramework.member`).

Microsoft's error answers become :class:`LoginError` and :class:`ConnectorError`; a person
connecting gets the channels' own errors (:func:`connect`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from adapters.channels.errors import ProviderUnreachable, TokenRejected, retry_after
from adapters.channels.teams import DEFAULT_LOGIN_BASE, MULTI_TENANT, SCOPE
from adapters.channels.teams.normalize import Reference

RENEW_BEFORE = 300.0  # seconds before a token expires that a new one is fetched
_APP_NOT_FOUND = 700016  # AADSTS700016: no application with this id in the tenant
_BAD_SECRET = frozenset({7000215, 7000222})  # AADSTS7000215 invalid secret, 7000222 expired secret
_TENANT_NOT_FOUND = frozenset({90002, 90023})


class LoginError(Exception):
    """The token endpoint's refusal (``status`` 0: it could not be reached), with Azure AD's
    ``error`` ("invalid_client", …) and ``codes`` (the AADSTS numbers)."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        codes: tuple[int, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.codes = status, error, description, codes
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in (0, 429) or self.status >= 500 or self.error == "temporarily_unavailable"

    @property
    def credentials_refused(self) -> bool:
        """The app id or its secret is not (or no longer) accepted: a person must act."""
        return not self.retryable and (
            self.status in (401, 403) or self.error in ("invalid_client", "unauthorized_client")
        )

    @property
    def tenant_unknown(self) -> bool:
        return bool(_TENANT_NOT_FOUND.intersection(self.codes))


class ConnectorError(Exception):
    """The Bot Connector's refusal of a call (``status`` 0: it could not be reached)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    @property
    def retryable(self) -> bool:
        return self.status in (0, 429) or self.status >= 500


class Token(msgspec.Struct, frozen=True):
    access_token: str
    expires_at: float  # on the clock of the AppTokens that fetched it


@dataclass(frozen=True)
class App:
    """A bot's credentials: its Microsoft App ID, a client secret, and its Azure AD tenant
    when it is single-tenant (None: multi-tenant, through ``botframework.com``)."""

    app_id: str
    client_secret: str
    tenant_id: str | None = None


def _login_error(response: httpx.Response) -> LoginError:
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    codes = answer.get("error_codes")
    description = str(answer.get("error_description") or response.reason_phrase or "no description")
    return LoginError(
        response.status_code,
        str(answer.get("error") or ""),
        description.splitlines()[0] if description else description,  # AAD appends trace ids
        tuple(code for code in codes if isinstance(code, int)) if isinstance(codes, list) else (),
        retry_after(response.headers),
    )


def _connector_error(response: httpx.Response) -> ConnectorError:
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    error = answer.get("error") if isinstance(answer, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or response.reason_phrase or "no message")
    code = str(error.get("code") or "")
    return ConnectorError(response.status_code, code, message, retry_after(response.headers))


class BotFramework:
    """One HTTP client for the token endpoint (under ``login_base``) and the Bot Connector
    (each call names the serviceUrl it goes to)."""

    def __init__(self, login_base: str | None = None, *, timeout: float = 30.0) -> None:
        self.login_base = (login_base or DEFAULT_LOGIN_BASE).rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> BotFramework:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch_token(self, app: App, *, now: float) -> Token:
        """A new token for ``app`` (client credentials); LoginError when Azure AD refuses."""
        url = f"{self.login_base}/{quote(app.tenant_id or MULTI_TENANT, safe='')}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": app.app_id,
            "client_secret": app.client_secret,
            "scope": SCOPE,
        }
        try:
            response = await self._http.post(url, data=form)
        except httpx.HTTPError as exc:
            raise LoginError(
                0, "unreachable", f"Microsoft's token endpoint cannot be reached: {exc!r}"
            ) from None
        if response.status_code >= 400:
            raise _login_error(response)
        try:
            answer = response.json()
            access_token, expires_in = str(answer["access_token"]), float(answer.get("expires_in") or 3599)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LoginError(502, "bad_answer", "Microsoft's token endpoint answered no token") from None
        return Token(access_token, now + expires_in)

    async def send_text(self, ref: Reference, text: str, token: str) -> str:
        """Post a message to a conversation; the id the Bot Connector gives it."""
        url = (
            f"{ref.service_url.rstrip('/')}/v3/conversations/{quote(ref.conversation_id, safe='')}/activities"
        )
        activity: dict[str, Any] = {"type": "message", "text": text, "from": {"id": ref.bot_id}}
        try:
            response = await self._http.post(url, json=activity, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ConnectorError(0, "unreachable", f"the Bot Connector cannot be reached: {exc!r}") from None
        if response.status_code >= 400:
            raise _connector_error(response)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        activity_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(activity_id, str) or not activity_id:
            raise ConnectorError(response.status_code, "bad_answer", "the Bot Connector named no activity id")
        return activity_id

    async def member(
        self, service_url: str, conversation_id: str, member_id: str, token: str
    ) -> dict[str, Any]:
        """A member of a conversation as the Bot Connector describes them (``email``,
        ``userPrincipalName``, ``name``, ...)."""
        url = (
            f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}"
            f"/members/{quote(member_id, safe='')}"
        )
        try:
            response = await self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ConnectorError(0, "unreachable", f"the Bot Connector cannot be reached: {exc!r}") from None
        if response.status_code >= 400:
            raise _connector_error(response)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ConnectorError(response.status_code, "bad_answer", "the Bot Connector described no member")
        return answer


class AppTokens:
    """One app's token, fetched when needed and kept until :data:`RENEW_BEFORE` seconds before
    it expires (one fetch at a time)."""

    def __init__(self, app: App, api: BotFramework, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._api = api
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._token.expires_at - RENEW_BEFORE:
                self._token = await self._api.fetch_token(self.app, now=self._clock())
            return self._token.access_token

    def drop(self) -> None:
        """Forget the token (the Bot Connector refused it): the next send fetches another."""
        self._token = None


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}")

WHERE_APP_ID_IS = (
    "The Microsoft App ID is on your Azure Bot resource, Settings → Configuration (a GUID such as"
    " 6f6b1c3e-0c55-4a4b-9d1e-3b1d3c1a2b3c)."
)
WHERE_SECRETS_ARE = (
    "Make a new client secret under Configuration → Manage Password (Certificates & secrets →"
    " New client secret) and paste its Value, not its Secret ID."
)


def is_app_id(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def is_tenant_id(value: str) -> bool:
    """A directory (tenant) id as a GUID, or one of its domains (contoso.onmicrosoft.com)."""
    return _GUID.fullmatch(value) is not None or _DOMAIN.fullmatch(value) is not None


def refusal_for_person(exc: LoginError, app: App) -> TokenRejected | ProviderUnreachable:
    """What to tell a person whose credentials Azure AD refused (or could not check)."""
    if exc.retryable:
        return ProviderUnreachable(
            f"Microsoft could not check the bot's credentials just now: {exc.description}"
        )
    if exc.tenant_unknown:
        return TokenRejected(
            f"Azure AD knows no tenant {app.tenant_id!r}. Give the Directory (tenant) ID shown on the"
            " bot's app registration, or leave tenant_id out for a multi-tenant bot.",
            field="tenant_id",
        )
    if _APP_NOT_FOUND in exc.codes:
        single = (
            " If the bot's type is Single Tenant, also give tenant_id (the app registration's Directory"
            " (tenant) ID)."
            if app.tenant_id is None
            else ""
        )
        return TokenRejected(
            f"Microsoft knows no bot with this app id ({exc.description}). {WHERE_APP_ID_IS}{single}",
            field="app_id",
        )
    if _BAD_SECRET.intersection(exc.codes) or exc.credentials_refused:
        return TokenRejected(
            f"Microsoft does not accept this client secret for the app ({exc.description})."
            f" {WHERE_SECRETS_ARE}",
            field="client_secret",
        )
    return TokenRejected(f"Microsoft refused the bot's credentials: {exc.description}", field="app_id")


async def connect(app: App, *, login_base: str | None = None) -> Token:
    """A token for ``app``, proving its credentials, for a person connecting the bot:
    TokenRejected naming the field to fix, or ProviderUnreachable."""
    async with BotFramework(login_base, timeout=15.0) as api:
        try:
            return await api.fetch_token(app, now=time.monotonic())
        except LoginError as exc:
            raise refusal_for_person(exc, app) from None
