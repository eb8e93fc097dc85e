"""Meta's webhook for one WhatsApp Business connection, at ``/v1/webhooks/whatsapp_business/
{connection_id}``.

- ``GET`` is Meta's subscription check (``hub.mode=subscribe``, ``hub.verify_token``,
  ``hub.challenge``): the challenge back when the verify token is the connection's, else
  :class:`SubscriptionRefused` (403).
- ``POST`` is a delivery, signed ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret,
  raw body)>``: checked before anything else (:class:`BadSignature`, 401, nothing stored),
  then its messages and failed statuses are appended (dedupe keys store a redelivery once)
  and its media brought into our storage.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import structlog

from adapters.channels.errors import BadRequest, BadSignature, NotConnected, SubscriptionRefused
from adapters.channels.inbound import append_delivered
from adapters.channels.media import fetch_media
from adapters.channels.webhooks import Hooks, HookTarget
from adapters.channels.whatsapp_business import KIND
from adapters.channels.whatsapp_business.client import GraphApi, GraphError
from adapters.channels.whatsapp_business.normalize import Normalized, actor, normalize
from domain import events as ev
from domain.ports import Appended, EventStore

log = structlog.get_logger()

SIGNATURE_HEADER = "x-hub-signature-256"


def verify_signature(app_secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Refuse a delivery Meta did not sign with ``app_secret`` (BadSignature: store nothing)."""
    given = {key.lower(): value for key, value in headers.items()}.get(SIGNATURE_HEADER, "").strip()
    if not given:
        raise BadSignature("The request carries no X-Hub-Signature-256 header, so it is not from Meta.")
    if not app_secret:
        raise BadSignature("This connection has no app secret to check Meta's signature; connect it again.")
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise BadSignature(
            "The X-Hub-Signature-256 signature does not match this connection's app secret"
            " (is the app secret the one of the app that posts here?)."
        )


def confirm_subscription(secret: Mapping[str, str], query: Mapping[str, str]) -> str:
    """Meta's check of the webhook address: the challenge when the verify token is ours."""
    expected = secret.get("verify_token", "")
    given = query.get("hub.verify_token", "")
    if (
        query.get("hub.mode") != "subscribe"
        or not expected
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise SubscriptionRefused(
            "The verify token does not match this connection's: paste the one Moltbot gave when you"
            " connected into Meta's dashboard (WhatsApp → Configuration → Webhook)."
        )
    return query.get("hub.challenge", "")


async def store_delivery(store: EventStore, normalized: Normalized) -> list[Appended]:
    """Append a verified delivery: each conversation first when it is new, then the events."""
    known: set[str] = set()
    stored: list[Appended] = []
    for delivery in normalized.deliveries:
        stored += await append_delivered(store, delivery.created, delivery.events, known)
    return stored


async def fetch_delivery_media(hooks: Hooks, normalized: Normalized, target: HookTarget) -> None:
    """Bring the delivery's media into our storage (``media.available`` each); a file Meta
    will not give stays there (logged), the messages are stored already."""
    if hooks.media is None:
        return
    token = target.secret.get("token", "")
    async with GraphApi(hooks.endpoints.whatsapp_business_api_base) as api:

        async def download(attachment: ev.Attachment) -> bytes:
            return await api.download_media(token, attachment.provider_file_id)

        for delivery in normalized.deliveries:
            for event in delivery.events:
                if isinstance(event, ev.MessageReceived) and event.data.attachments:
                    try:
                        await fetch_media(
                            hooks.store, hooks.media, event, download, actor=actor(target.connection_id)
                        )
                    except GraphError as exc:
                        log.warning(
                            "whatsapp_business_media_unavailable", connection_id=target.connection_id,
                            message_id=event.data.message_id, status=exc.status, error=exc.message,
                        )  # fmt: skip


class WhatsAppBusinessWebhook:
    """``GET`` and ``POST /v1/webhooks/whatsapp_business/{connection_id}``."""

    async def confirm(self, hooks: Hooks, connection_id: str, query: Mapping[str, str]) -> str:
        target = await hooks.target(KIND, connection_id)
        return confirm_subscription(target.secret, query)

    async def receive(
        self, hooks: Hooks, connection_id: str | None, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        if connection_id is None:
            raise NotConnected("WhatsApp Business posts to its connection's own address.")
        target = await hooks.target(KIND, connection_id)
        verify_signature(target.secret.get("app_secret", ""), headers, body)
        try:
            normalized = normalize(
                body, tenant_id=target.tenant_id, connection_id=connection_id,
                phone_number_id=target.secret.get("phone_number_id", ""),
            )  # fmt: skip
        except ValueError as exc:  # msgspec's DecodeError and ValidationError among them
            raise BadRequest(f"Not a WhatsApp Business webhook delivery: {exc}") from None
        if normalized.other_numbers:
            log.warning(
                "whatsapp_business_other_number_skipped", connection_id=connection_id,
                phone_number_ids=list(normalized.other_numbers),
            )  # fmt: skip
        stored = await store_delivery(hooks.store, normalized)
        log.info(
            "whatsapp_business_delivery_stored", connection_id=connection_id, events=len(stored),
            duplicates=sum(1 for appended in stored if appended.duplicate),
        )  # fmt: skip
        await fetch_delivery_media(hooks, normalized, target)
        return {"ok": True}
