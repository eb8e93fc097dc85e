"""Real neonize ``MessageEv`` protobufs for the WhatsApp normalizer's tests.

Importing neonize loads its native library and calls ``logging.basicConfig`` on the root
logger; the import here puts the root logger back as it was, so no other test sees it.
"""

from __future__ import annotations

import logging
from typing import Any

_root = logging.getLogger()
_handlers, _level = list(_root.handlers), _root.level
from neonize.aioze.events import MessageEv  # noqa: E402 - after the logging snapshot
from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource  # noqa: E402
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message  # noqa: E402

_root.handlers[:], _root.level = _handlers, _level

GROUP = "120363012345678901"
ALICE = "15551230000"
ME = "15559990000"
AT_MS = 1_767_225_600_000  # 2026-01-01T00:00Z, as WhatsApp dates messages (milliseconds)


def j(user: str, server: str = "s.whatsapp.net", device: int = 0) -> Any:
    return JID(User=user, Server=server, RawAgent=0, Device=device, Integrator=0, IsEmpty=False)


def message_ev(
    message: Any,
    *,
    wa_id: str = "3EB0C0FFEE",
    chat: Any = None,
    sender: Any = None,
    sender_alt: Any = None,
    from_me: bool = False,
    group: bool = False,
    edit: str = "",
    push_name: str = "Alice",
    timestamp: int = AT_MS,
) -> Any:
    source = MessageSource(
        Chat=chat if chat is not None else (j(GROUP, "g.us") if group else j(ALICE)),
        Sender=sender if sender is not None else (j(ME) if from_me else j(ALICE)),
        IsFromMe=from_me,
        IsGroup=group,
    )
    if sender_alt is not None:
        source.SenderAlt.CopyFrom(sender_alt)
    info = MessageInfo(ID=wa_id, Timestamp=timestamp, Pushname=push_name, Edit=edit, MessageSource=source)
    return MessageEv(Info=info, Message=message)


__all__ = ["ALICE", "AT_MS", "GROUP", "ME", "Message", "j", "message_ev"]
