"""Telegram's webhook mode: Telegram POSTs each update to the gateway with the
connection's secret in ``X-Telegram-Bot-Api-Secret-Token``; a wrong secret stores nothing."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from aiogram.types import Update

from adapters.channels.errors import BadRequest, BadSignature, NotConnected
from adapters.channels.inbound import append_delivered
from adapters.channels.telegram import KIND
from adapters.channels.telegram.normalize import conversation_created, normalize
from adapters.channels.webhooks import Hooks
from domain import events as ev
from domain.ports import EventStore

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105  # a header name


async def store_update(
    store: EventStore,
    update: Mapping[str, Any] | Update,
    *,
    tenant_id: str,
    connection_id: str,
    bot_username: str,
) -> list[ev.Event]:
    """Append what one update says (the conversation first if it is new); what a webhook
    delivery does. Dedupe keys store a redelivered update once."""
    events = normalize(update, tenant_id=tenant_id, connection_id=connection_id, bot_username=bot_username)
    created = conversation_created(update, tenant_id=tenant_id, connection_id=connection_id)
    if events:
        await append_delivered(store, created, events)
    return events


async def receive(
    store: EventStore,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tenant_id: str,
    connection_id: str,
    secret: Mapping[str, str],
) -> dict[str, Any]:
    """One delivery: the secret header must match (BadSignature), the body be an update
    (BadRequest); then its events are stored. The answer's body for Telegram."""
    given = {key.lower(): value for key, value in headers.items()}.get(SECRET_HEADER, "")
    expected = secret.get("webhook_secret", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadSignature("The X-Telegram-Bot-Api-Secret-Token header does not match.", code="bad_secret")
    try:
        update = json.loads(body)
        await store_update(
            store, update, tenant_id=tenant_id, connection_id=connection_id,
            bot_username=secret.get("bot_username", ""),
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"Not a Telegram update: {exc}") from None
    return {"ok": True}


class TelegramWebhook:
    """``POST /v1/webhooks/telegram/{connection_id}``."""

    async def receive(
        self, hooks: Hooks, connection_id: str | None, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        if connection_id is None:
            raise NotConnected("Telegram posts to its connection's own address.")
        target = await hooks.target(KIND, connection_id)
        return await receive(
            hooks.store, headers, body, tenant_id=target.tenant_id, connection_id=connection_id,
            secret=target.secret,
        )  # fmt: skip
