"""The messaging endpoint of one Teams bot, ``POST /v1/webhooks/teams/{connection_id}``: the
Bot Connector posts each Activity there with ``Authorization: Bearer <JWT>``.

The token is checked before anything is read or stored (:mod:`adapters.channels.teams.auth`:
401 ``bad_signature`` when it fails, nothing appended); then the Activity's events are
appended, the conversation first when it is new (dedupe keys and derived ids store a
redelivered Activity once). Its conversation reference (serviceUrl, conversation id, bot
id) is the conversation's external id, so sends reach it, and only a serviceUrl a valid
token vouched for is ever remembered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from adapters.channels.errors import BadSignature, NotConnected
from adapters.channels.inbound import append_delivered
from adapters.channels.teams import KIND
from adapters.channels.teams.auth import SigningKeys, authenticate, signing_keys
from adapters.channels.teams.client import App
from adapters.channels.teams.normalize import normalize
from adapters.channels.teams.people import TeamsPeople
from adapters.channels.webhooks import Hooks

log = structlog.get_logger()


class TeamsWebhook:
    """``POST /v1/webhooks/teams/{connection_id}``. One per gateway (it holds Microsoft's
    published signing keys between deliveries)."""

    def __init__(self) -> None:
        self._keys: SigningKeys | None = None
        self._people: TeamsPeople | None = None  # senders' e-mail addresses (:mod:`.people`)

    async def receive(
        self, hooks: Hooks, connection_id: str | None, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        if connection_id is None:
            raise NotConnected(
                "The Bot Connector posts to its connection's own address (…/v1/webhooks/teams/cn_…)."
            )
        target = await hooks.target(KIND, connection_id)
        app_id = target.secret.get("app_id", "")
        if not app_id:
            raise BadSignature(
                "This connection has no Microsoft App ID to check tokens with; connect it again."
            )
        if self._keys is None:
            self._keys = signing_keys(hooks.endpoints.teams_openid_url)
        keys = self._keys
        activity = await authenticate(headers, body, keys, app_id=app_id)
        delivery = normalize(activity, tenant_id=target.tenant_id, connection_id=connection_id, app_id=app_id)
        if self._people is None:
            self._people = TeamsPeople(hooks.endpoints.teams_login_base)
        secret = target.secret.get("client_secret", "")
        if secret:
            app = App(app_id, secret, target.secret.get("tenant_id") or None)
            delivery = await self._people.with_emails(delivery, activity, app)
        stored = await append_delivered(hooks.store, delivery.created, delivery.events)
        log.info(
            "teams_activity_stored", connection_id=connection_id, activity_type=activity.type,
            events=len(stored), duplicates=sum(1 for appended in stored if appended.duplicate),
        )  # fmt: skip
        return {}
