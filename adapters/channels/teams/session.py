"""One Teams connection's health. The Bot Connector posts Activities to the gateway's
webhook, so there is nothing to poll: the session checks that Azure AD still issues the bot
a token with its client secret (``connected``, then again every :data:`RECHECK_EVERY`),
reports a refused secret (expired, deleted) as ``action_required`` and an outage as
``degraded``, and holds the connection's lease meanwhile."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from adapters.channels.health import Refused, ReportingSession, Unreachable
from adapters.channels.teams import KIND
from adapters.channels.teams.client import App, BotFramework, LoginError
from adapters.channels.teams.connector import CREDENTIALS_REVOKED
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev

if TYPE_CHECKING:
    from adapters.channels.registry import SessionEnv

log = structlog.get_logger()

RECHECK_EVERY = 900.0  # seconds between credential checks once connected (a secret expires on a date)

_UNREACHABLE_MESSAGE = "Microsoft's token endpoint cannot be reached right now; Moltbot keeps trying."
_REVOKED_MESSAGE = (
    "Microsoft no longer accepts this bot's client secret (it expired or was deleted). Make a new one"
    " on the Azure Bot resource (Configuration → Manage Password) and connect Teams again."
)


class TeamsSession(ReportingSession):
    def __init__(
        self, env: SessionEnv, *, recheck_every: float | None = None, first_backoff: float = 1.0
    ) -> None:
        stored_as = "teams_activity_stored"  # nothing is: Activities come to the webhook
        super().__init__(env, kind=KIND, log=log, stored_as=stored_as, first_backoff=first_backoff)
        tenant_id = env.secret.get("tenant_id") or None
        self._app = App(env.secret.get("app_id", ""), env.secret.get("client_secret", ""), tenant_id)
        self._login_base = env.endpoints.teams_login_base
        self._recheck_every = RECHECK_EVERY if recheck_every is None else recheck_every

    async def run(self) -> None:
        await self._health.report("connecting", "connecting", "Connecting to Microsoft Teams…")
        async with BotFramework(self._login_base, timeout=15.0) as api:
            await self._stay_linked(lambda: self._check(api), unreachable=_UNREACHABLE_MESSAGE)

    async def _check(self, api: BotFramework) -> bool:
        while True:
            raise_if_cancelled()  # a health report (a publish) can swallow it
            try:
                await api.fetch_token(self._app, now=time.monotonic())
            except LoginError as exc:
                if exc.retryable:
                    raise Unreachable(exc.description) from None
                if exc.credentials_refused:
                    raise Refused(CREDENTIALS_REVOKED, _REVOKED_MESSAGE) from None
                raise Refused(
                    "login_refused", f"Microsoft refused the bot a token: {exc.description}"
                ) from None
            self._backoff.reset()
            shown = f"Connected to Microsoft Teams as the bot {self._app.app_id}"
            await self._health.report("connected", "ok", shown)
            await asyncio.sleep(self._recheck_every)

    async def _download(self, attachment: ev.Attachment) -> bytes:
        raise NotImplementedError("Teams files are not carried")
