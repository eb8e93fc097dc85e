"""The Events API: Slack POSTs a workspace's events to the gateway, signed with the app's
signing secret. :func:`verify_request` (signature and a 5-minute freshness window; a
:class:`BadSignature` stores nothing), then ``url_verification`` → the challenge, or an
``event_callback`` for the connection's own workspace (``team_id``, and app when known;
else :class:`WrongWorkspace`) → a :class:`Delivery` of canonical events to append."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from slack_sdk.signature import Clock, SignatureVerifier

from adapters.channels.errors import (
    BadRequest,
    BadSignature,
    NotConfigured,
    NotConnected,
    TokenRejected,
    TokenRevoked,
    WrongWorkspace,
)
from adapters.channels.inbound import append_delivered
from adapters.channels.media import fetch_media
from adapters.channels.slack import KIND
from adapters.channels.slack.client import download_file, validate_token
from adapters.channels.slack.normalize import Delivery, actor, check_workspace, delivery
from adapters.channels.slack.people import SlackPeople
from adapters.channels.webhooks import Hooks, HookTarget
from adapters.media.store import MediaStore
from domain import events as ev
from domain.ports import Appended, EventStore

log = structlog.get_logger()

MAX_SIGNATURE_AGE = 5 * 60  # seconds: Slack's replay window for signed requests


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verify_request(signing_secret: str, headers: Mapping[str, str], body: bytes, *, now: datetime) -> None:
    """Refuse a request Slack did not sign with ``signing_secret`` within 5 minutes of ``now``.

    Raises BadSignature (answer 401, store nothing); returns None when it is Slack's.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp")
    signature = lowered.get("x-slack-signature")
    if not timestamp or not signature:
        raise BadSignature("The request carries no Slack signature.")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadSignature("The request's Slack timestamp is not a number.") from None
    if abs(now.timestamp() - sent_at) > MAX_SIGNATURE_AGE:
        raise BadSignature("The request's Slack signature is stale: signed more than 5 minutes from now.")
    verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now.timestamp()))
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise BadSignature("The request's Slack signature does not match.")


async def append_delivery(
    store: EventStore, delivered: Delivery, known_conversations: set[str] | None = None
) -> list[Appended]:
    """Append a delivery: ``conversation.created`` with expected sequence 0 (an existing one is
    left alone), then its events (their dedupe keys store a redelivery once)."""
    return await append_delivered(store, delivered.created, delivered.events, known_conversations)


class EventsApiAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the webhook does with a verified request: answer ``challenge`` (url_verification),
    or append ``delivery`` (event_callback). ``team_id`` names the workspace."""

    challenge: str | None = None
    team_id: str | None = None
    delivery: Delivery | None = None


class SlackEvents:
    """The Events API endpoint's logic for one Slack app (its signing secret).

    ``verify`` checks and decodes a request (raising BadSignature, or BadRequest for a
    signed body that is not JSON), so a gateway serving many workspaces can find the
    connection by ``payload["api_app_id"]`` and ``payload["team_id"]`` before ``answer``,
    which refuses a delivery for another workspace than the connection's (WrongWorkspace).
    """

    def __init__(self, signing_secret: str) -> None:
        self._signing_secret = signing_secret

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: datetime) -> dict[str, Any]:
        verify_request(self._signing_secret, headers, body, now=now)
        try:
            payload = json.loads(body)
        except ValueError:
            raise BadRequest("The request's body is not JSON.") from None
        if not isinstance(payload, dict):
            raise BadRequest("The request's body is not a JSON object.")
        return payload

    def answer(
        self, payload: Mapping[str, Any], target: HookTarget, *, now: datetime | None = None
    ) -> EventsApiAnswer:
        """Answer a verified request for ``target``, the connection it is for (its workspace
        known: learned first where it was not recorded)."""
        if payload.get("type") == "url_verification":
            return EventsApiAnswer(challenge=str(payload.get("challenge") or ""))
        team_id = target.team_id
        assert team_id is not None
        check_workspace(payload, team_id=team_id, app_id=target.app_id)
        if payload.get("type") != "event_callback":
            return EventsApiAnswer(team_id=team_id)
        return EventsApiAnswer(
            team_id=team_id,
            delivery=delivery(
                payload,
                tenant_id=target.tenant_id,
                connection_id=target.connection_id,
                bot_user_id=target.secret.get("bot_user_id", ""),
                owner_user_id=target.secret.get("owner_user_id"),
                now=now,
            ),
        )

    def handle(
        self, headers: Mapping[str, str], body: bytes, target: HookTarget, *, now: datetime
    ) -> EventsApiAnswer:
        """Verify, then answer: the whole webhook for a request whose connection is known."""
        return self.answer(self.verify(headers, body, now=now), target)


async def fetch_delivery_media(
    store: EventStore,
    media: MediaStore,
    delivered: Delivery,
    bot_token: str,
    connection_id: str,
    *,
    api_base: str | None = None,
) -> None:
    """Bring the files shared in a delivery into our storage (``media.available`` each)."""

    async def download(attachment: ev.Attachment) -> bytes:
        return await download_file(bot_token, attachment.provider_file_id, api_base=api_base)

    for event in delivered.events:
        if isinstance(event, ev.MessageReceived) and event.data.attachments:
            await fetch_media(store, media, event, download, actor=actor(connection_id))


class SlackWebhook:
    """``POST /v1/webhooks/slack/{connection_id}`` (a connection's own signing secret) and
    ``POST /v1/webhooks/slack`` (the deployment app's Request URL, routed by
    ``(api_app_id, team_id)``): a bad or stale signature is refused (401), a delivery for
    another workspace than the connection's too (403); either way nothing is stored.
    A sender's e-mail address is looked up once per member (:mod:`.people`)."""

    def __init__(self) -> None:
        self._people = SlackPeople()

    async def receive(
        self, hooks: Hooks, connection_id: str | None, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        if connection_id is None:
            return await self._for_app(hooks, headers, body)
        target = await hooks.target(KIND, connection_id)
        if not target.secret.get("signing_secret"):
            raise NotConnected("This Slack connection uses Socket Mode, not the Events API.")
        events = SlackEvents(target.secret["signing_secret"])
        payload = events.verify(headers, body, now=datetime.now(UTC))
        if payload.get("type") == "url_verification":
            return {"challenge": str(payload.get("challenge") or "")}
        if target.team_id is None:
            target = msgspec.structs.replace(target, team_id=await _learn_workspace(hooks, target))
        return await _deliver(hooks, events, payload, target, self._people)

    async def _for_app(self, hooks: Hooks, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        signing_secret = hooks.app_signing_secret(KIND)
        if signing_secret is None:
            raise NotConfigured(
                "Slack installs need MOLTBOT_SLACK_CLIENT_ID, _CLIENT_SECRET and _SIGNING_SECRET."
            )
        events = SlackEvents(signing_secret)
        payload = events.verify(headers, body, now=datetime.now(UTC))
        if payload.get("type") == "url_verification":
            return {"challenge": str(payload.get("challenge") or "")}
        app_id, team_id = str(payload.get("api_app_id") or ""), str(payload.get("team_id") or "")
        targets = await hooks.targets_in(KIND, app_id, team_id)
        if not targets:
            log.warning("slack_delivery_refused", reason="unknown_workspace", team_id=payload.get("team_id"))
            raise NotConnected("No Slack connection for this workspace and app.")
        return await _deliver(hooks, events, payload, targets[0], self._people)


async def _learn_workspace(hooks: Hooks, target: HookTarget) -> str:
    """The workspace of a connection recorded before workspaces were: whose is its bot token
    (auth.test), learned once."""
    try:
        token = target.secret.get("token", "")
        identity = await validate_token(token, api_base=hooks.endpoints.slack_api_base)
    except TokenRejected:
        raise TokenRevoked("Slack no longer accepts this connection's bot token.") from None
    await hooks.remember_workspace(target.connection_id, identity.team_id)
    return identity.team_id


async def _deliver(
    hooks: Hooks, events: SlackEvents, payload: Mapping[str, Any], target: HookTarget, people: SlackPeople
) -> dict[str, Any]:
    """Store a verified delivery for its connection, unless it is another workspace's (403)."""
    try:
        answer = events.answer(payload, target)
    except WrongWorkspace:
        log.warning(
            "slack_delivery_refused", reason="wrong_workspace", connection_id=target.connection_id,
            team_id=payload.get("team_id"), api_app_id=payload.get("api_app_id"),
        )  # fmt: skip
        raise
    if answer.delivery is not None:
        delivered = await people.with_emails(
            answer.delivery, target.secret["token"], hooks.endpoints.slack_api_base
        )
        await append_delivery(hooks.store, delivered)
        if hooks.media is not None:
            await fetch_delivery_media(
                hooks.store, hooks.media, delivered, target.secret["token"], target.connection_id,
                api_base=hooks.endpoints.slack_api_base,
            )  # fmt: skip
    return {"ok": True}
