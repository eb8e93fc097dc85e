"""Publishing dead letters: ``dlq.<origin>.<reason>`` with the original bytes and headers
naming where the message came from and why it was refused."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from domain import subjects

ORIGIN_STREAM = "Moltbot-Origin-Stream"
ORIGIN_SEQ = "Moltbot-Origin-Seq"
ORIGIN_SUBJECT = "Moltbot-Origin-Subject"
CONSUMER = "Moltbot-Consumer"
REASON = "Moltbot-Reason"
ERROR = "Moltbot-Error"


class DeadLetter(msgspec.Struct, frozen=True):
    origin_stream: str
    origin_seq: int
    origin_subject: str
    consumer: str
    reason: str  # machine code: malformed, unknown_type, invalid, unsupported_version, rejected
    error: str  # what a person reads
    data: bytes


class DeadLetters:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, letter: DeadLetter) -> None:
        # Dedupe per consumer and origin sequence: a batch replayed after a crash
        # dead-letters the same message once.
        headers = {
            "Nats-Msg-Id": f"dlq:{letter.consumer}:{letter.origin_stream}:{letter.origin_seq}",
            ORIGIN_STREAM: letter.origin_stream,
            ORIGIN_SEQ: str(letter.origin_seq),
            ORIGIN_SUBJECT: letter.origin_subject,
            CONSUMER: letter.consumer,
            REASON: letter.reason,
            # Header values are single lines.
            ERROR: " ".join(letter.error.split())[:1000],
        }
        await self._js.publish(
            subjects.dlq_subject(letter.consumer, letter.reason), letter.data, headers=headers
        )
