"""Teams users' e-mail addresses, from the conversation's member the Bot Connector describes
(``email``, else a ``userPrincipalName`` that is one): see :mod:`adapters.channels.people`.
The lookup uses the app's own token (client credentials), kept per app until it expires."""

from __future__ import annotations

import msgspec
import structlog

from adapters.channels.people import NotNow, SenderEmails, address
from adapters.channels.teams.client import App, AppTokens, BotFramework, ConnectorError, LoginError
from adapters.channels.teams.normalize import Activity, Delivery

log = structlog.get_logger()


class TeamsPeople:
    def __init__(self, login_base: str | None) -> None:
        self._api = BotFramework(login_base, timeout=5.0)
        self._tokens: dict[App, AppTokens] = {}
        self._emails = SenderEmails()

    async def with_emails(self, delivered: Delivery, activity: Activity, app: App) -> Delivery:
        tokens = self._tokens.setdefault(app, AppTokens(app, self._api))

        async def look_up(member: str) -> str | None:
            try:
                found = await self._api.member(
                    activity.service_url, activity.conversation.id, member, await tokens.token()
                )
            except (ConnectorError, LoginError) as exc:
                if exc.retryable:
                    raise NotNow(str(exc)) from None
                log.info("sender_email_unknown", member=member, error=str(exc))
                return None
            return address(found.get("email")) or address(found.get("userPrincipalName"))

        events = await self._emails.add_to(delivered.events, app.app_id, look_up)
        return msgspec.structs.replace(delivered, events=events)
