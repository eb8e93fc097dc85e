"""The Personal Bridge's rules (pure): pairing codes, device identity and what a device offers.

A pairing code is 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L, U),
shown as ``ABCD-EFGH``; people may type it in any case, with or without the dash. Only
its digest is stored. A device proves who it is by signing :func:`challenge` for a nonce
the cloud chose for this one connection, so a recorded signature is worth nothing later.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from domain import events as ev
from domain import ids

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
PAIRING_TTL = timedelta(minutes=10)
NONCE_BYTES = 32
PROTOCOL = "moltbot-bridge/1"


def new_pairing_code() -> str:
    """A fresh code, e.g. ``K7QM-3XHT``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(typed: str) -> str | None:
    """The code as stored (upper case, no dash or spaces), or None when it cannot be one."""
    cleaned = typed.strip().upper().replace("-", "").replace(" ", "")
    if len(cleaned) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in cleaned):
        return None
    return cleaned


def code_digest(normalized: str) -> str:
    """What is stored of a code: its SHA-256 (hex). Codes live 10 minutes and are
    single use, so a plain digest is enough: there is nothing to guess offline in time."""
    return hashlib.sha256(f"{PROTOCOL}:pairing:{normalized}".encode()).hexdigest()


def encode_key(raw: bytes) -> str:
    """A public key or signature as text (base64url, no padding)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_key(text: str) -> bytes:
    """The inverse of :func:`encode_key`; ValueError when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


def fingerprint(public_key: bytes) -> str:
    """``SHA256:<base64>`` of the raw public key, as people compare SSH keys."""
    digest = base64.b64encode(hashlib.sha256(public_key).digest()).rstrip(b"=").decode()
    return f"SHA256:{digest}"


def challenge(nonce: bytes, device_id: str) -> bytes:
    """What a device signs to open a tunnel: the protocol, its id and the server's nonce."""
    return f"{PROTOCOL}:tunnel:{device_id}:".encode() + nonce


def connection_id(device_id: str, kind: str) -> str:
    """The connection of a channel ``kind`` hosted by a device: one per device and kind,
    the same id every time, so a device offering it again finds its connection."""
    return ids.stable_id(ids.CONNECTION, f"bridge:{device_id}:{kind}")


def kinds_offered(capabilities: Iterable[str], bridge_kinds: Iterable[str]) -> list[str]:
    """The bridge-hosted kinds a device can read (``<kind>.read``), in ``bridge_kinds`` order."""
    offered = set(capabilities)
    return [kind for kind in bridge_kinds if f"{kind}.read" in offered]


# What a device may record: its channels' conversations and messages, nothing else.
DEVICE_EVENT_TYPES = frozenset(
    {
        "conversation.created",
        "message.received",
        "message.sent",
        "message.edited",
        "message.deleted",
        "message.status_changed",
        "reaction.added",
        "reaction.removed",
    }
)
# Events that name their conversation's connection in their data.
_NAMING_CONNECTION = frozenset({"conversation.created", "message.received", "message.sent"})


def actor(device_id: str) -> str:
    return f"device:{device_id}"


def refusal(event: ev.Event, *, tenant_id: str, device_id: str, connections: Mapping[str, str]) -> str | None:
    """Why the cloud refuses an event a device sent (None: it may be stored, once the
    conversation of an event that does not name its connection is found to be the device's).

    ``connections`` maps each connection the device hosts to its kind. Conversation and
    message ids of a device are derived from its connection and the provider's ids, so a
    device cannot write into a conversation or message that is not its own.
    """
    if event.type not in DEVICE_EVENT_TYPES:
        return f"a device may not record {event.type} events"
    if event.tenant_id != tenant_id:
        return "the event names another tenant"
    if event.actor != actor(device_id):
        return f"the actor must be {actor(device_id)}"
    if isinstance(event, ev.MessageStatusChanged):  # names the connection whose messages it marks
        hosted = event.data.connection_id in connections
        return None if hosted else f"the connection {event.data.connection_id} is not hosted by this device"
    if event.type not in _NAMING_CONNECTION:
        return None
    data: Any = event.data  # type: ignore[attr-defined]
    kind = connections.get(data.connection_id)
    if kind is None:
        return f"the connection {data.connection_id} is not hosted by this device"
    if isinstance(event, ev.ConversationCreated):
        if data.channel != kind:
            return f"the connection {data.connection_id} is a {kind} connection"
        if event.aggregate_id != ids.stable_id(
            ids.CONVERSATION, f"{kind}:{data.connection_id}:{data.external_id}"
        ):
            return "the conversation id is not the one its connection and external id give"
        return None
    if data.channel != kind:
        return f"the connection {data.connection_id} is a {kind} connection"
    if isinstance(event, ev.MessageSent) and data.origin != "device":
        return 'a device records only what was written on it (origin "device")'
    provider_id = data.provider_message_id
    if data.message_id != ids.stable_id(ids.MESSAGE, f"{kind}:{data.connection_id}:{provider_id}"):
        return "the message id is not the one its connection and provider id give"
    return None
