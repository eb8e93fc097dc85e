"""Executing ``send_message`` commands through the Cloud API, from the connection's phone
number, mapping Meta's answers onto ``SendDeferred`` (rate limits, outages) and
``SendRejected`` (the 24-hour window closed, the token revoked, the person unreachable).

Each message carries ``biz_opaque_callback_data`` naming our conversation and message, so a
``failed`` status that arrives later at the webhook becomes that message's
``message.send_failed``. The 24-hour window is Meta's to decide: the connector does not
know when the customer last wrote (that is in the log, not in a command), so it sends and
reads Meta's answer (131047, at once or later as a status)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.channels.clients import ClientPerConnection, Credentials, stored_token
from adapters.channels.errors import TokenRejected
from adapters.channels.whatsapp_business import (
    CAPABILITIES,
    KIND,
    OUTSIDE_WINDOW,
    OUTSIDE_WINDOW_REASON,
    REENGAGEMENT_ERROR,
)
from adapters.channels.whatsapp_business.client import GraphApi, GraphError
from adapters.channels.whatsapp_business.normalize import callback_data
from domain.commands import SendMessage
from domain.connectors import Delivered, SendDeferred, SendRejected

NOT_ALLOWED_RECIPIENT = 131030  # a test number may only write to the numbers listed for it
UNDELIVERABLE = 131026


class Account(msgspec.Struct, frozen=True):
    """What a connection sends with: its access token and its phone number id."""

    token: str
    phone_number_id: str


def refusal(exc: GraphError) -> SendRejected | SendDeferred:
    """What a Graph API error answer to a send means for the command."""
    if exc.code == REENGAGEMENT_ERROR:
        return SendRejected(OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON)
    if exc.token_rejected:
        return SendRejected(
            "token_revoked",
            "Meta no longer accepts this connection's access token; connect WhatsApp Business again to send.",
        )
    if exc.retryable:
        reason = f"WhatsApp cannot take the message now: {exc.message}"
        return SendDeferred(reason, retry_after=exc.retry_after)
    if exc.code == NOT_ALLOWED_RECIPIENT:
        return SendRejected(
            "recipient_not_allowed",
            "This test number may only write to the numbers listed for it in Meta's dashboard"
            " (WhatsApp → API Setup); add this one there, or use a production number.",
        )
    if exc.code == UNDELIVERABLE:
        return SendRejected(
            "undeliverable",
            "WhatsApp cannot deliver to this person (no WhatsApp account, or an app too old).",
        )
    return SendRejected("bad_request", f"WhatsApp refused the message: {exc.details or exc.message}")


class WhatsAppBusinessConnector(ClientPerConnection[Account]):
    """Sends through one Graph API client for every connection; each connection's token and
    phone number id come from ``credentials``."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self, credentials: Credentials, *, api_base: str | None = None, request_timeout: float = 30.0
    ) -> None:
        super().__init__(credentials)
        self._api = GraphApi(api_base, timeout=request_timeout)

    async def _new_client(self, credentials: Mapping[str, Any]) -> Account:
        missing = "This WhatsApp Business connection has no access token; connect it again."
        token = stored_token(credentials, missing=missing)
        phone_number_id = credentials.get("phone_number_id")
        if not isinstance(phone_number_id, str) or not phone_number_id.isdigit():
            raise TokenRejected("This WhatsApp Business connection has no phone number ID; connect it again.")
        return Account(token, phone_number_id)

    async def send(self, command: SendMessage) -> Delivered:
        account = await self.sending_client(command)
        try:
            wamid = await self._api.send_text(
                account.token, account.phone_number_id, command.to, command.text,
                callback_data=callback_data(command.conversation_id, command.message_id),
            )  # fmt: skip
        except GraphError as exc:
            if exc.token_rejected:
                self.forget(command.connection_id)  # a reconnect brings a new token
            raise refusal(exc) from None
        return Delivered(provider_message_id=wamid, sent_at=datetime.now(UTC))

    async def aclose(self) -> None:
        self._clients.drain()
        await self._api.aclose()
