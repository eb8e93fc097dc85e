"""Browser push: the deployment's public key, and the devices a person subscribed.

- ``GET /v1/push/key`` — the VAPID public key (base64url) for ``pushManager.subscribe``.
- ``POST /v1/push/subscriptions`` — the browser's ``PushSubscription.toJSON()``
  (``{"endpoint", "keys": {"p256dh", "auth"}, "expirationTime"?}``): this device gets the
  inbox's notifications (``adapters/push/notifier.py``) until it is unsubscribed.
- ``GET /v1/push/subscriptions`` — the caller's devices in this inbox (never their keys).
- ``DELETE /v1/push/subscriptions/{id}`` — unsubscribe one.

Subscriptions are per person and inbox; another person's or inbox's id is a 404.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from adapters.push import subscriptions
from adapters.push.config import PushConfig
from adapters.push.subscriptions import InvalidSubscription, Subscription
from adapters.vault.cipher import Keyring
from gateway import sessions
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError


class PublicKey(msgspec.Struct, frozen=True):
    public_key: str  # base64url, uncompressed P-256 point: the applicationServerKey


class SubscriptionKeys(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    p256dh: str
    auth: str


class SubscriptionBody(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"expiration_time": "expirationTime"}
):
    """A browser's ``PushSubscription.toJSON()``."""

    endpoint: str
    keys: SubscriptionKeys
    expiration_time: float | None = None  # the browser's; the push service's 404/410 is what counts


def _push(ctx: GatewayContext) -> tuple[PushConfig, Keyring]:
    if ctx.push is None or ctx.keyring is None:
        raise ApiError(404, "push_off", "Push notifications are not set up on this gateway.")
    return ctx.push, ctx.keyring


@get("/key")
async def public_key(ctx: Ctx) -> PublicKey:
    """The application server key browsers subscribe with (public: it only lets pushes be checked)."""
    config, _ = _push(ctx)
    return PublicKey(config.key.application_server_key)


@post("/subscriptions", status_code=201, dependencies={"who": Provide(caller)})
async def subscribe(
    ctx: Ctx, who: Who, data: JSONBody[SubscriptionBody], request: Request[Any, Any, Any]
) -> Subscription:
    """This device gets the inbox's push notifications; subscribing it again keeps one row."""
    config, keyring = _push(ctx)
    try:
        browser = subscriptions.validated(config, data.endpoint, data.keys.p256dh, data.keys.auth)
    except InvalidSubscription as exc:
        raise ApiError(400, "invalid_request", exc.detail, field=exc.field) from None
    device = sessions.device_name(request.headers.get("user-agent"))
    async with ctx.tenant(who.tenant_id) as conn:
        kept = await subscriptions.subscribe(
            conn, keyring, tenant_id=who.tenant_id, user_id=who.user_id, subscription=browser, device=device
        )
    if kept is None:
        raise ApiError(
            409,
            "too_many_devices",
            f"You have {subscriptions.MAX_PER_PERSON} devices subscribed in this inbox:"
            " unsubscribe one first.",
        )
    return kept


@get("/subscriptions", dependencies={"who": Provide(caller)})
async def list_subscriptions(ctx: Ctx, who: Who) -> list[Subscription]:
    """The caller's subscribed devices in this inbox, oldest first."""
    _push(ctx)
    async with ctx.tenant(who.tenant_id) as conn:
        return await subscriptions.listed(conn, who.tenant_id, who.user_id)


@delete("/subscriptions/{subscription_id:str}", status_code=204, dependencies={"who": Provide(caller)})
async def unsubscribe(ctx: Ctx, who: Who, subscription_id: FromPath[str]) -> None:
    """This device gets no more notifications (the browser should unsubscribe too)."""
    _push(ctx)
    async with ctx.tenant(who.tenant_id) as conn:
        if not await subscriptions.remove(conn, who.tenant_id, who.user_id, subscription_id):
            raise ApiError(404, "not_found", f"No subscription {subscription_id} of yours here.", field="id")


push_router = Router(
    path="/v1/push", route_handlers=[public_key, subscribe, list_subscriptions, unsubscribe], tags=["push"]
)
