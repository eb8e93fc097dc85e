"""Slack's Web API through slack_sdk: whose a bot token is (``auth.test``), the OAuth v2
install (``oauth.v2.access``), a shared file's bytes; and how Slack's errors read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import msgspec
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from websockets.exceptions import WebSocketException

from adapters.channels.errors import BadRequest, InstallRejected, ProviderUnreachable, TokenRejected

API_BASE = "https://slack.com/api/"
AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
# The bot scopes an install asks for: read messages where the app is, write, see reactions,
# list its conversations (the history brought in on connect: adapters/channels/slack/history.py),
# and the senders' profile e-mail addresses (people across channels: adapters/channels/slack/people.py).
BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "reactions:read",
    "channels:read",
    "groups:read",
    "im:read",
    "mpim:read",
    "users:read",
    "users:read.email",
)


# Slack's answers that mean the token is no good any more (revoked, app uninstalled, ...).
TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "app_uninstalled"}
)
# Slack's answers worth retrying.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Message subtypes that are conversation (others: joins, topic changes, ... are not).


class WorkspaceBot(msgspec.Struct, frozen=True, kw_only=True):
    """A workspace the app is in, and the user id of the app's bot there."""

    team_id: str
    team_name: str
    bot_user_id: str


class WorkspaceIdentity(WorkspaceBot, frozen=True, kw_only=True):
    """Whose a bot token is (``auth.test``)."""

    bot_name: str
    bot_id: str | None = None
    url: str | None = None


class SlackInstall(WorkspaceBot, frozen=True, kw_only=True):
    """What an OAuth install gives: the workspace and its bot token (a secret: vault it)."""

    bot_token: str
    app_id: str | None = None
    scopes: tuple[str, ...] = ()
    authed_user_id: str | None = None  # the person who installed it: the inbox's owner in Slack


def _api_url(api_base: str | None) -> str:
    base = api_base or API_BASE
    return base if base.endswith("/") else base + "/"


def web_client(
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


def error_of(exc: SlackApiError) -> str:
    data = exc.response.data if isinstance(exc.response, AsyncSlackResponse) else None
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else f"http_{exc.response.status_code}"


def is_transient(exc: SlackApiError) -> bool:
    return (
        exc.response.status_code >= 500
        or exc.response.status_code == 429
        or error_of(exc) in TRANSIENT_ERRORS
    )


def retry_after(exc: SlackApiError) -> float | None:
    value = exc.response.headers.get("Retry-After") if exc.response.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
LINK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, WebSocketException)
SEND_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, SlackClientError)


async def download_file(bot_token: str, file_id: str, *, api_base: str | None = None) -> bytes:
    """A shared file's bytes: ``files.info`` for its private URL, then a GET with the bot token."""
    client = web_client(bot_token, api_base)
    try:
        info = await client.files_info(file=file_id)
    except SlackApiError as exc:
        raise ProviderUnreachable(f"Slack would not describe the file: {exc.response.get('error')}") from None
    file = info.get("file") or {}
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise ProviderUnreachable("Slack gave no download address for the file")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url, headers={"Authorization": f"Bearer {bot_token}"})
    if response.status_code != 200:
        raise ProviderUnreachable(f"Slack answered {response.status_code} for a file download")
    return response.content


async def validate_token(token: str, *, api_base: str | None = None) -> WorkspaceIdentity:
    """The workspace and bot a bot token belongs to (``auth.test``).

    Raises TokenRejected (not a bot token, or Slack refuses it) or ProviderUnreachable.
    """
    token = token.strip()
    if not token.startswith("xoxb-"):
        raise TokenRejected("This is not a Slack bot token: installing the app gives one starting with xoxb-")
    client = web_client(token, api_base)
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        if error_of(exc) in TOKEN_ERRORS:
            raise TokenRejected("Slack does not accept this bot token") from None
        raise ProviderUnreachable(f"Slack could not check the token just now ({error_of(exc)})") from None
    except NETWORK_ERRORS as exc:
        raise ProviderUnreachable(f"Slack could not check the token just now: {exc!r}") from None
    return identity_of(answer)


def identity_of(answer: Any) -> WorkspaceIdentity:
    """The workspace and bot an ``auth.test`` answer names."""
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
    client = web_client(None, api_base)
    try:
        answer = await client.oauth_v2_access(
            client_id=client_id, client_secret=client_secret, code=code, redirect_uri=redirect_uri
        )
    except SlackApiError as exc:
        error = error_of(exc)
        if is_transient(exc):
            raise ProviderUnreachable(f"Slack could not finish the install just now ({error})") from None
        reason = _INSTALL_REASONS.get(error, f"Slack refused the install ({error}).")
        raise InstallRejected(reason) from None
    except NETWORK_ERRORS as exc:
        raise ProviderUnreachable(f"Slack could not finish the install just now: {exc!r}") from None
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
        authed_user_id=(answer.get("authed_user") or {}).get("id") or None,
    )


async def connect_tokens(
    bot_token: str, app_token: str | None, signing_secret: str | None, *, api_base: str | None = None
) -> WorkspaceIdentity:
    """Check what a person pasted to connect: the bot token, and either an app-level token
    (Socket Mode) or a signing secret (Events API); the workspace the bot is in."""
    if not (app_token or signing_secret):
        detail = "Add the app-level token (xapp-…, for Socket Mode) or the signing secret (Events API)."
        raise BadRequest(detail, field="app_token")
    if app_token is not None and not app_token.strip().startswith("xapp-"):
        raise BadRequest("An app-level token starts with xapp-.", field="app_token")
    try:
        return await validate_token(bot_token, api_base=api_base)
    except TokenRejected as exc:
        raise TokenRejected(str(exc), field="bot_token") from None
