"""One WhatsApp Business connection's health. Meta posts messages to the gateway's webhook,
so there is nothing to poll: the session checks that the access token still reaches the
phone number (``connected``, then again every :data:`RECHECK_EVERY`), reports a refused
token as ``action_required`` (temporary tokens expire after 24 hours) and an outage as
``degraded``, and holds the connection's lease meanwhile."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from adapters.channels.health import Refused, ReportingSession, Unreachable
from adapters.channels.whatsapp_business import DEFAULT_API_BASE, KIND
from adapters.channels.whatsapp_business.client import GraphApi, GraphError
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev

if TYPE_CHECKING:
    from adapters.channels.registry import SessionEnv

log = structlog.get_logger()

RECHECK_EVERY = 3600.0  # seconds between token checks once connected

_UNREACHABLE_MESSAGE = "Meta's Graph API cannot be reached right now; Moltbot keeps trying."


class WhatsAppBusinessSession(ReportingSession):
    def __init__(
        self, env: SessionEnv, *, recheck_every: float = RECHECK_EVERY, first_backoff: float = 1.0
    ) -> None:
        stored_as = "whatsapp_business_delivery_stored"  # nothing is: deliveries come to the webhook
        super().__init__(env, kind=KIND, log=log, stored_as=stored_as, first_backoff=first_backoff)
        self._token = env.secret["token"]
        self._phone_number_id = env.secret.get("phone_number_id", "")
        self._api_base = env.endpoints.whatsapp_business_api_base or DEFAULT_API_BASE
        self._recheck_every = recheck_every

    async def run(self) -> None:
        await self._health.report("connecting", "connecting", "Connecting to WhatsApp Business…")
        async with GraphApi(self._api_base, timeout=15.0) as api:
            await self._stay_linked(lambda: self._check(api), unreachable=_UNREACHABLE_MESSAGE)

    async def _check(self, api: GraphApi) -> bool:
        while True:
            raise_if_cancelled()  # a health report (a publish) can swallow it
            try:
                number = await api.phone_number(self._token, self._phone_number_id)
            except GraphError as exc:
                if exc.token_rejected:
                    raise Refused(
                        "token_revoked",
                        "Meta no longer accepts this access token (a temporary token expires after 24"
                        " hours); connect WhatsApp Business again with a permanent one.",
                    ) from None
                if exc.retryable:
                    raise Unreachable(exc.message) from None
                raise Refused(
                    "phone_number_unreachable",
                    f"This access token cannot reach the phone number any more ({exc.message}).",
                ) from None
            self._backoff.reset()
            shown = number.shown_as
            await self._health.report("connected", "ok", f"Connected to WhatsApp Business as {shown}")
            await asyncio.sleep(self._recheck_every)

    async def _download(self, attachment: ev.Attachment) -> bytes:
        raise NotImplementedError("WhatsApp Business media arrive through the webhook")
