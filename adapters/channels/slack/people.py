"""Slack members' e-mail addresses (``users.info``, which needs the ``users:read.email``
scope; an install without it gets none): see :mod:`adapters.channels.people`."""

from __future__ import annotations

import msgspec
import structlog
from slack_sdk.errors import SlackApiError

from adapters.channels.people import NotNow, SenderEmails, address
from adapters.channels.slack.client import NETWORK_ERRORS, error_of, is_transient, web_client
from adapters.channels.slack.normalize import Delivery

log = structlog.get_logger()


class SlackPeople:
    def __init__(self) -> None:
        self._emails = SenderEmails()

    async def with_emails(self, delivered: Delivery, token: str, api_base: str | None) -> Delivery:
        async def look_up(member: str) -> str | None:
            try:
                answer = await web_client(token, api_base, retries=False).users_info(user=member)
            except SlackApiError as exc:
                if is_transient(exc):
                    raise NotNow(error_of(exc)) from None
                log.info("sender_email_unknown", member=member, error=error_of(exc))  # missing_scope, ...
                return None
            except NETWORK_ERRORS as exc:
                raise NotNow(repr(exc)) from None
            user = answer.get("user")
            profile = user.get("profile") if isinstance(user, dict) else None
            return address(profile.get("email")) if isinstance(profile, dict) else None

        events = await self._emails.add_to(delivered.events, token, look_up)
        return msgspec.structs.replace(delivered, events=events)
