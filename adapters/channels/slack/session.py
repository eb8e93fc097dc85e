"""One workspace's Socket Mode session: slack_sdk's client (``apps.connections.open`` → a
WebSocket) appends what arrives and acks each envelope only once its events are stored,
so a crash repeats envelopes that dedupe stores once; it reports the connection's health.
An envelope for another workspace (an app installed in several) is acked, not stored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.socket_mode.websockets import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from websockets.exceptions import WebSocketException

from adapters.channels.backfill import backfill_once
from adapters.channels.errors import WrongWorkspace
from adapters.channels.health import Refused, ReportingSession, Unreachable
from adapters.channels.inbound import Intake
from adapters.channels.normalize import connection_actor
from adapters.channels.slack import KIND
from adapters.channels.slack.client import (
    LINK_ERRORS,
    NETWORK_ERRORS,
    TOKEN_ERRORS,
    WorkspaceIdentity,
    download_file,
    error_of,
    identity_of,
    web_client,
)
from adapters.channels.slack.history import slack_history
from adapters.channels.slack.normalize import check_workspace, delivery, inner
from adapters.channels.slack.people import SlackPeople
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev

if TYPE_CHECKING:
    from adapters.channels.registry import SessionEnv

log = structlog.get_logger()

_UNREACHABLE_MESSAGE = "Slack cannot be reached right now; Moltbot keeps trying."
_BOT_REFUSED_MESSAGE = "Slack no longer accepts this app's bot token"
_APP_LEVEL_REFUSED_MESSAGE = "Slack no longer accepts this app's Socket Mode (app-level) token"
_sdk_logger = logging.getLogger("moltbot.slack.socket_mode")  # the SDK's chatter, not our events


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


@contextlib.contextmanager
def _slack_answers(
    refused: Refused, call: str, network_errors: tuple[type[Exception], ...], over: str
) -> Iterator[None]:
    """What asking Slack for ``call`` (over ``over``) ended in, as a session's outcome: a
    refused token is ``refused``; Slack's other errors and the network's are Unreachable."""
    try:
        yield
    except SlackApiError as exc:
        if error_of(exc) in TOKEN_ERRORS:
            raise refused from None
        raise Unreachable(f"{call}: {error_of(exc)}") from None
    except network_errors as exc:
        raise Unreachable(f"{over}: {exc!r}") from None


class SlackSocketSession(ReportingSession):
    """Receives one workspace's events over Socket Mode into the log, and reports health.

    ``run`` returns when Slack refuses a token (reported as ``action_required``); network
    trouble is reported as ``degraded`` and retried with exponential backoff; an error of
    the event store ends ``run`` with it (the session manager restarts it, and Slack
    redelivers the envelopes not yet acknowledged). Slack's own refresh ("disconnect")
    is followed by slack_sdk's client; a lost link is opened again here.
    """

    def __init__(
        self,
        env: SessionEnv,
        *,
        ping_interval: float = 10.0,
        check_every: float = 0.5,
        hello_timeout: float = 10.0,
        first_backoff: float = 1.0,
    ) -> None:
        super().__init__(env, kind=KIND, log=log, stored_as="slack_event_stored", first_backoff=first_backoff)
        self._app_token = env.secret["app_token"]
        self._bot_token = env.secret["token"]
        self._owner_user_id = env.secret.get("owner_user_id")  # the inbox's owner in Slack, if known
        self._api_base = env.endpoints.slack_api_base
        self._ping_interval = ping_interval
        self._check_every = check_every
        self._hello_timeout = hello_timeout
        self.identity: WorkspaceIdentity | None = None
        self.acked: list[str] = []  # envelope ids acknowledged, in order (all stored before)
        self._inbox: asyncio.Queue[SocketModeRequest] = asyncio.Queue()
        self._hello = asyncio.Event()
        self._recheck = asyncio.Event()  # Slack said tokens were revoked: ask again
        self._people = SlackPeople()
        self._backfilling: asyncio.Task[None] | None = None  # the history, once per connection
        self._env = env

    async def run(self) -> None:
        await self._health.report("connecting", "connecting", "Connecting to Slack…")
        web = web_client(self._bot_token, self._api_base)
        try:
            await self._stay_linked(lambda: self._link(web), unreachable=_UNREACHABLE_MESSAGE)
        finally:
            if self._backfilling is not None:
                self._backfilling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._backfilling

    async def _identify(self, web: AsyncWebClient) -> WorkspaceIdentity:
        refused = Refused("token_revoked", _BOT_REFUSED_MESSAGE)
        with _slack_answers(refused, "auth.test", NETWORK_ERRORS, "auth.test"):
            answer = await web.auth_test()
        return identity_of(answer)

    async def _link(self, web: AsyncWebClient) -> bool:
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
            refused = Refused("app_token_revoked", _APP_LEVEL_REFUSED_MESSAGE)
            with _slack_answers(refused, "apps.connections.open", LINK_ERRORS, "socket mode"):
                client.wss_uri = await client.issue_new_wss_url()
                await client.connect()
            try:
                async with asyncio.timeout(self._hello_timeout):
                    await self._hello.wait()
            except TimeoutError:
                raise Unreachable("Slack did not say hello on the socket") from None
            await self._health.report(
                "connected",
                "ok",
                f"Connected to Slack workspace {identity.team_name} as @{identity.bot_name}",
            )
            if self._backfilling is None:  # beside the live events, which it never holds up
                self._backfilling = asyncio.create_task(
                    backfill(self._env, web, identity, self._intake, self._people, self._log)
                )
            await self._receive(client, identity)
            return True  # lost, or tokens to check again: link again at once
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _receive(self, client: SocketModeClient, identity: WorkspaceIdentity) -> None:
        link_down_checks = 0
        while True:
            raise_if_cancelled()  # storing the last event (a publish) can swallow it
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
        try:
            check_workspace(payload, team_id=identity.team_id)
        except WrongWorkspace:
            self._log.warning(
                "slack_delivery_refused", reason="wrong_workspace", envelope_id=request.envelope_id,
                team_id=payload.get("team_id"),
            )  # fmt: skip
            return  # acknowledged: it is not this connection's to store
        if _names_our_bot_revoked(inner(payload), identity.bot_user_id):
            self._recheck.set()  # the next auth.test says whether our token is still good
            return
        try:
            delivered = delivery(
                payload,
                tenant_id=self.tenant_id,
                connection_id=self.connection_id,
                bot_user_id=identity.bot_user_id,
                owner_user_id=self._owner_user_id,
            )
        except Exception as exc:  # one unreadable event must not stop the connection for good
            self._log.error("slack_event_unreadable", envelope_id=request.envelope_id, error=repr(exc))
            return
        delivered = await self._people.with_emails(delivered, self._bot_token, self._api_base)
        await self._intake.take(
            delivered.created, delivered.events, envelope_id=request.envelope_id,
            retry_attempt=request.retry_attempt,
        )  # fmt: skip

    async def _download(self, attachment: ev.Attachment) -> bytes:
        return await download_file(self._bot_token, attachment.provider_file_id, api_base=self._api_base)

    # slack_sdk runs each listener in a task of its own, in arrival order; they only queue
    # (no await before put_nowait), so the log keeps Slack's order.
    async def _on_message(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        if message.get("type") == "hello":
            self._hello.set()

    async def _on_request(self, client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        self._inbox.put_nowait(request)


async def backfill(
    env: SessionEnv,
    web: AsyncWebClient,
    bot: WorkspaceIdentity,
    intake: Intake,
    people: SlackPeople,
    log: Any,
) -> None:
    """The connection's recent history, once (:mod:`adapters.channels.backfill`)."""
    token = env.secret["token"]
    history = slack_history(
        web, bot, tenant_id=env.tenant_id, connection_id=env.connection_id,
        owner_user_id=env.secret.get("owner_user_id"), people=people, token=token,
        api_base=env.endpoints.slack_api_base,
    )  # fmt: skip
    await backfill_once(
        env.store, intake, tenant_id=env.tenant_id, connection_id=env.connection_id,
        actor=connection_actor(KIND, env.connection_id), history=history,
        errors=(SlackApiError, *NETWORK_ERRORS), log=log,
    )  # fmt: skip


async def events_api_session(env: SessionEnv) -> None:
    """An Events API connection's session: Slack posts its events to the gateway, so there is
    nothing to receive here; it brings the recent history in (once), then holds the lease."""
    bound = log.bind(tenant_id=env.tenant_id, connection_id=env.connection_id)
    web = web_client(env.secret["token"], env.endpoints.slack_api_base)
    try:
        bot = identity_of(await web.auth_test())
    except (SlackApiError, *NETWORK_ERRORS) as exc:
        bound.warning("backfill_failed", error=repr(exc))
    else:

        async def download(attachment: ev.Attachment) -> bytes:
            return await download_file(
                env.secret["token"], attachment.provider_file_id, api_base=env.endpoints.slack_api_base
            )

        intake = Intake(
            env.store, media=env.media, download=download, actor=connection_actor(KIND, env.connection_id),
            log=bound, stored_as="slack_event_stored",
        )  # fmt: skip
        await backfill(env, web, bot, intake, SlackPeople(), bound)
    await asyncio.Event().wait()
