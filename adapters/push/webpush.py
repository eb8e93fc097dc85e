"""Sending one notification to one device with Web Push (RFC 8030): the payload encrypted to
the device's keys (aes128gcm, RFC 8291) and the request signed with the deployment's VAPID key
(RFC 8292), through pywebpush's asyncio API on one shared aiohttp session.

Outcomes: ``sent``; ``gone`` when the push service says the subscription no longer exists
(404, 410: the caller deletes it); ``refused`` for another 4xx (the request is wrong, retrying
it would not help); ``failed`` when the service stays unreachable or busy (429, 5xx, network)
after a few tries with backoff (stamina). Nothing here raises: one bad device never stops the
others, nor the notifier.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Literal

import aiohttp
import msgspec
import stamina
import structlog
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from adapters.push.config import PushConfig
from adapters.push.subscriptions import Target
from domain.notifications import PushMessage, Urgency

log = structlog.get_logger()

Outcome = Literal["sent", "gone", "refused", "failed"]
TTL_S = 6 * 3600  # how long a push service keeps a notification for a device that is offline


def _transient(exc: Exception) -> bool:
    """Worth trying again: the network, a timeout, or the service busy (429) or failing (5xx)."""
    if isinstance(exc, WebPushException):
        status = exc.status_code
        return status is None or status == 429 or status >= 500
    return isinstance(exc, aiohttp.ClientError | TimeoutError)


def topic(tag: str) -> str:
    """The Topic header for a tag (at most 32 base64url characters): a push service keeps one
    undelivered notification per topic, the newest."""
    return base64.urlsafe_b64encode(hashlib.sha256(tag.encode()).digest()).decode()[:32]


class WebPushSender:
    def __init__(
        self, config: PushConfig, *, timeout: float = 10.0, attempts: int = 3, wait_initial: float = 0.5
    ) -> None:
        self._vapid = Vapid(config.key.private_key)
        self._subject = config.subject
        self._config = config
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._wait_initial = wait_initial
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, target: Target, message: PushMessage, urgency: Urgency = "normal") -> Outcome:
        subscription = target.subscription
        if self._config.endpoint_refusal(subscription.endpoint) is not None:
            # Stored when the service list allowed it; it does not any more.
            log.warning("push_endpoint_not_allowed", subscription_id=target.subscription_id)
            return "refused"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        data = msgspec.json.encode(message).decode()
        headers = {"Urgency": urgency, "Topic": topic(message.tag)}
        try:
            async for attempt in stamina.retry_context(
                on=_transient, attempts=self._attempts, timeout=None,
                wait_initial=self._wait_initial, wait_max=5.0,
            ):  # fmt: skip
                with attempt:
                    await webpush_async(
                        info, data, vapid_private_key=self._vapid, vapid_claims={"sub": self._subject},
                        ttl=TTL_S, headers=headers, aiohttp_session=self._session,
                        timeout=self._timeout,  # type: ignore[arg-type]  # aiohttp takes a ClientTimeout
                    )  # fmt: skip
        except WebPushException as exc:
            status = exc.status_code
            if status in (404, 410):
                return "gone"
            log.warning("push_not_delivered", subscription_id=target.subscription_id, status=status)
            return "failed" if _transient(exc) else "refused"
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("push_not_delivered", subscription_id=target.subscription_id, error=repr(exc))
            return "failed"
        except Exception:  # a library bug or a malformed stored key: this device only
            log.exception("push_send_error", subscription_id=target.subscription_id)
            return "failed"
        return "sent"
