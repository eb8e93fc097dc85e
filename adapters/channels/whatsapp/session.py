"""One cloud WhatsApp connection's live session, held by one connector replica (its lease).

The link (``link.py``) does the WhatsApp part; this session gives it the cloud's outlet:
states and messages into the log (attachments into the media store while the message
that holds their keys is at hand), pairing codes onto LIVE only, the paired device into
the session store. While it runs it answers the connection's sends
(``bridge.whatsapp.<connection>.send``, the same relay a bridge connection's sends take)
and shows "typing…" when the agent writes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from adapters.channels.health import ReportingSession
from adapters.channels.whatsapp import KIND, normalize
from adapters.channels.whatsapp.client import NewClient
from adapters.channels.whatsapp.link import PAIRING_GRACE, WhatsAppLink
from adapters.channels.whatsapp.states import PAIRING_WINDOW
from adapters.channels.whatsapp.store import SessionStore
from adapters.nats import bridge_relay, pairing_codes
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev
from domain import tunnel as t
from domain.commands import SendMessage
from domain.connectors import PairingCode, typing_subject

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from adapters.channels.registry import SessionEnv

log = structlog.get_logger()

KEPT_FOR_DOWNLOAD = 64  # received messages whose files may still be fetched
_UNREACHABLE = "WhatsApp cannot be reached right now; Moltbot keeps trying."


class WhatsAppSession(ReportingSession):
    def __init__(
        self,
        env: SessionEnv,
        *,
        nc: Client,
        new_client: NewClient,
        database: str,
        sessions: SessionStore,
        first_backoff: float = 2.0,
        pairing_window: float = PAIRING_WINDOW + PAIRING_GRACE,
    ) -> None:
        super().__init__(
            env, kind=KIND, log=log, stored_as="whatsapp_message_stored", first_backoff=first_backoff
        )
        self._nc = nc
        self._store = env.store  # opens the sealed chat of a typing signal
        self._new_client = new_client
        self._database = database
        self._sessions = sessions
        self._phone_number = env.secret.get("phone_number") or None
        self._pairing_window = pairing_window
        self._recent: OrderedDict[str, Any] = OrderedDict()  # WhatsApp id -> MessageEv

    async def run(self) -> None:
        jid = await self._sessions.jid(self.connection_id)
        self.link = link = WhatsAppLink(
            self._new_client, self, database=self._database, tenant_id=self.tenant_id,
            connection_id=self.connection_id, jid=jid, backoff=self._backoff, log=self._log,
            phone_number=self._phone_number, pairing_window=self._pairing_window,
        )  # fmt: skip
        sends = await bridge_relay.serve_sends(self._nc, KIND, self.connection_id, self._answer)
        typing = await self._nc.subscribe(
            typing_subject(self.tenant_id, KIND, self.connection_id), cb=self._typing
        )
        try:
            raise_if_cancelled()  # the subscribes' flushes can swallow a stop asked for meanwhile
            await self._stay_linked(link.link_once, unreachable=_UNREACHABLE)
        finally:
            for subscription in (sends, typing):
                await subscription.unsubscribe()

    async def _answer(self, payload: bytes) -> bytes:
        try:
            command = msgspec.json.decode(payload, type=SendMessage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            result = t.Result(id="", outcome="rejected", code="malformed", reason=str(exc))
        else:
            result = await self.link.send(command)
        return msgspec.json.encode(result)

    async def _typing(self, msg: Msg) -> None:
        try:
            chat = msgspec.json.decode(await self._store.open(msg.data), type=dict[str, str])["to"]
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
            return
        await self.link.typing(chat)

    # --- the link's outlet ---------------------------------------------------------------------

    async def show_state(self, shown: ev.ConnectionStateChangedData) -> None:
        await self._health.report(shown.state, shown.code, shown.message, action=shown.action)

    async def show_code(self, code: PairingCode) -> None:
        await pairing_codes.publish(self._nc, self.tenant_id, code)

    async def remember(self, jid: str | None) -> None:
        await self._sessions.remember(self.tenant_id, self.connection_id, jid)

    async def take(self, delivery: normalize.Delivery, message: Any | None) -> None:
        whatsapp_id = None if message is None else str(message.Info.ID)
        if message is not None:
            self._recent[str(whatsapp_id)] = message
            while len(self._recent) > KEPT_FOR_DOWNLOAD:
                self._recent.popitem(last=False)
        try:
            await self._intake.take(delivery.created, delivery.events, whatsapp_id=whatsapp_id)
        except OSError as exc:  # the file could not be fetched: the message itself is stored
            self._log.warning("whatsapp_media_failed", whatsapp_id=whatsapp_id, error=repr(exc))

    async def _download(self, attachment: ev.Attachment) -> bytes:
        whatsapp_id = attachment.provider_file_id.split(":", 1)[0]
        message = self._recent.get(whatsapp_id)
        client = self.link.client
        if message is None or client is None:
            raise FileNotFoundError(f"WhatsApp message {whatsapp_id} is no longer at hand")
        return await client.download(message)
