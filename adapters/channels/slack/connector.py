"""Executing ``send_message`` with ``chat.postMessage``, mapping Slack's answers onto
``SendDeferred`` (rate limits, outages) and ``SendRejected`` (channel gone, app not in the
channel, archived, token revoked). A thread's external id sends into the thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.channels.clients import ClientPerConnection, Credentials, stored_token
from adapters.channels.slack import CAPABILITIES, KIND
from adapters.channels.slack.client import (
    SEND_ERRORS,
    TOKEN_ERRORS,
    error_of,
    is_transient,
    retry_after,
    web_client,
)
from adapters.channels.slack.normalize import provider_message_id, slack_time
from domain.commands import EditMessage, SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected


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
    error = error_of(exc)
    if exc.response.status_code == 429 or error == "ratelimited":
        wait_for = retry_after(exc)
        wait = f"{wait_for:g} s" if wait_for is not None else "a moment"
        return SendDeferred(f"Slack asked us to wait {wait}", retry_after=wait_for)
    if is_transient(exc):
        return SendDeferred(f"Slack could not take the message just now ({error})")
    if error in TOKEN_ERRORS:
        return SendRejected(
            "token_revoked", "Slack no longer accepts this app's token; reconnect Slack to send."
        )
    reason = _REJECTIONS.get(error)
    if reason is not None:
        return SendRejected(error, reason)
    return SendRejected("bad_request", f"Slack refused the message ({error}).")


class SlackConnector(ClientPerConnection[AsyncWebClient]):
    """Sends with one slack_sdk client per connection; tokens come from ``credentials``."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self, credentials: Credentials, *, api_base: str | None = None, request_timeout: int = 30
    ) -> None:
        super().__init__(credentials)
        self._api_base = api_base
        self._timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None  # one for every connection's client

    async def _new_client(self, credentials: Mapping[str, Any]) -> AsyncWebClient:
        token = stored_token(
            credentials, missing="This Slack connection has no bot token; connect Slack again."
        )
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        return web_client(token, self._api_base, timeout=self._timeout, session=self._session, retries=False)

    async def send(self, command: SendMessage) -> Delivered:
        client = await self.sending_client(command)
        channel, thread_ts = destination(command.to)
        try:
            answer = await client.chat_postMessage(channel=channel, text=command.text, thread_ts=thread_ts)
        except SlackApiError as exc:
            failure = _rejected_or_deferred(exc)
            if isinstance(failure, SendRejected) and failure.code == "token_revoked":
                self.forget(command.connection_id)
            raise failure from None
        except SEND_ERRORS as exc:
            raise SendDeferred(f"Slack cannot be reached: {exc!r}") from None
        ts = str(answer["ts"])
        return Delivered(
            provider_message_id=provider_message_id(str(answer.get("channel") or channel), ts),
            sent_at=slack_time(ts),
        )

    async def edit(self, command: EditMessage) -> None:
        client = await self.sending_client(command)
        channel, _, ts = command.provider_message_id.rpartition(":")
        try:
            await client.chat_update(channel=channel, ts=ts, text=command.text)
        except SlackApiError as exc:
            failure = _rejected_or_deferred(exc)
            if isinstance(failure, SendRejected) and failure.code == "token_revoked":
                self.forget(command.connection_id)
            raise failure from None
        except SEND_ERRORS as exc:
            raise SendDeferred(f"Slack cannot be reached: {exc!r}") from None

    async def aclose(self) -> None:
        self._clients.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None
