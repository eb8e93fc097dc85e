"""The bridge tunnel's frames (docs/bridge.md): JSON text frames, tagged by ``op``.

The cloud speaks first (``challenge``); the device answers ``hello`` with its signature of
:func:`domain.devices.challenge`; the cloud answers ``welcome`` with the device's
connections. Then, both ways at once:

- device → cloud: ``event`` (one canonical event with the device's local sequence),
  ``state`` (a channel's state on the device), ``code`` (a pairing code to show the owner,
  live only), ``result`` (what became of a command), ``ping`` every 15 s;
- cloud → device: ``ack`` (every event up to ``seq`` is stored), ``refused`` (an event the
  cloud will never store, with why: the device drops it), ``command`` (send this),
  ``pong``.

The cloud closes with a code that says why: 4400 a frame it cannot read, 4401 the identity
was not proven, 4403 the device is revoked, 4408 no heartbeat, 4409 the device opened a newer
tunnel, 4410 the device's connections changed (reconnect at once for the new ``welcome``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from domain.commands import SendMessage
from domain.connectors import PairingCode
from domain.events import ConnectionState

HEARTBEAT_SECONDS = 15.0  # the device pings this often
# The gateway reads no WebSocket message over 32 KiB (before anyone is authenticated, too),
# so a device sends a bigger frame (a long message, a file) as numbered parts of this size.
PART_BYTES = 16 * 1024
MAX_FRAME_BYTES = 24 * 1024  # a frame up to this size goes whole
MAX_ASSEMBLED_BYTES = 32 * 1024 * 1024  # what the cloud assembles from parts at most
SILENCE_LIMIT = 45.0  # the cloud closes a tunnel that said nothing for this long

CLOSE_BAD_FRAME = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_REVOKED = 4403
CLOSE_SILENT = 4408
CLOSE_REPLACED = 4409
CLOSE_RECONNECT = 4410


class _Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="op", forbid_unknown_fields=True):
    pass


# --- device → cloud ------------------------------------------------------------------------


class Hello(_Frame, frozen=True, tag="hello"):
    tenant_id: str  # the device's tenant and id, as pairing gave them
    device_id: str
    signature: str  # base64url Ed25519 signature of domain.devices.challenge(nonce, device_id)
    version: str
    platform: str
    capabilities: tuple[str, ...] = ()


class EventFrame(_Frame, frozen=True, tag="event"):
    seq: int  # the device's local outbox sequence
    event: msgspec.Raw  # one canonical event (domain/events.py), checked by the cloud


Outcome = Literal["delivered", "rejected", "deferred"]


class Result(_Frame, frozen=True, tag="result"):
    id: str  # the command's id
    outcome: Outcome
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    code: str | None = None
    reason: str | None = None
    retry_after: float | None = None


class State(_Frame, frozen=True, tag="state"):
    kind: str  # the channel kind on the device, e.g. "imessage"
    state: ConnectionState
    code: str
    message: str
    action: str | None = None


class Ping(_Frame, frozen=True, tag="ping"):
    pass


class Code(_Frame, frozen=True, tag="code"):
    """A pairing code a channel on the device shows its owner (WhatsApp's QR codes): the
    cloud puts it on LIVE only, never in the log."""

    kind: str
    code: PairingCode


class File(_Frame, frozen=True, tag="file"):
    """The answer to ``fetch``: the file's bytes, or why there are none."""

    id: str
    data: bytes | None = None  # base64 in JSON
    error: str | None = None


class Part(_Frame, frozen=True, tag="part"):
    """Piece ``index`` (from 0) of ``count`` of one bigger frame's JSON (see :func:`parts`)."""

    id: str
    index: int
    count: int
    data: bytes


FromDevice = Hello | EventFrame | Result | State | Ping | Code | File | Part


# --- cloud → device ------------------------------------------------------------------------


class Challenge(_Frame, frozen=True, tag="challenge"):
    nonce: str  # base64url
    protocol: str


class Welcome(_Frame, frozen=True, tag="welcome"):
    device_id: str
    tenant_id: str
    connections: dict[str, str]  # kind -> connection id
    heartbeat: float = HEARTBEAT_SECONDS
    fresh: tuple[str, ...] = ()  # kinds whose connection was just made (the device backfills them)


class Ack(_Frame, frozen=True, tag="ack"):
    seq: int  # every event up to and including this local sequence is stored


class Refused(_Frame, frozen=True, tag="refused"):
    seq: int
    reason: str


class Command(_Frame, frozen=True, tag="command"):
    id: str
    kind: str
    command: SendMessage


class Fetch(_Frame, frozen=True, tag="fetch"):
    """Send the file an event named (an attachment's ``provider_file_id``), as ``file``."""

    id: str
    kind: str
    file_id: str


class Pong(_Frame, frozen=True, tag="pong"):
    pass


ToDevice = Challenge | Welcome | Ack | Refused | Command | Fetch | Pong

_from_device: msgspec.json.Decoder[FromDevice] = msgspec.json.Decoder(FromDevice)
_to_device: msgspec.json.Decoder[ToDevice] = msgspec.json.Decoder(ToDevice)
_encoder = msgspec.json.Encoder()


def encode(frame: _Frame) -> str:
    return _encoder.encode(frame).decode()


def split(encoded: bytes, part_id: str) -> list[str]:
    """A frame's JSON as the text messages to send: itself when small, else in parts."""
    if len(encoded) <= MAX_FRAME_BYTES:
        return [encoded.decode()]
    pieces = [encoded[i : i + PART_BYTES] for i in range(0, len(encoded), PART_BYTES)]
    return [
        encode(Part(id=part_id, index=n, count=len(pieces), data=piece)) for n, piece in enumerate(pieces)
    ]


class Assembler:
    """Joins a device's parts back into frames; bounded in size and in frames in flight."""

    def __init__(self, max_bytes: int = MAX_ASSEMBLED_BYTES, max_open: int = 4) -> None:
        self._max_bytes = max_bytes
        self._max_open = max_open
        self._open: dict[str, list[bytes]] = {}

    def add(self, part: Part) -> FromDevice | None:
        """The whole frame once its last part came (parts arrive in order); ValueError when
        the parts do not make one (out of order, too big, too many at once)."""
        pieces = self._open.setdefault(part.id, [])
        if len(self._open) > self._max_open:
            raise ValueError(f"more than {self._max_open} frames in parts at once")
        if part.index != len(pieces) or not 0 < part.count <= self._max_bytes // PART_BYTES + 1:
            raise ValueError(f"part {part.index} of {part.count} of {part.id} is out of order")
        pieces.append(part.data)
        if sum(map(len, pieces)) > self._max_bytes:
            raise ValueError(f"a frame in parts is larger than {self._max_bytes} bytes")
        if len(pieces) < part.count:
            return None
        del self._open[part.id]
        whole = from_device(b"".join(pieces))
        if isinstance(whole, Part | Hello):
            raise ValueError(f"a {type(whole).__name__.lower()} frame cannot come in parts")
        return whole


def from_device(raw: str | bytes) -> FromDevice:
    """A device's frame; msgspec.DecodeError (a ValidationError too) when it is not one."""
    return _from_device.decode(raw)


def to_device(raw: str | bytes) -> ToDevice:
    """A cloud frame; msgspec.DecodeError when it is not one."""
    return _to_device.decode(raw)
