"""The one JetStream API client: every ``$JS.API.*`` request the roles make is built here.

Requests go to the server as its own JSON (``$JS.API.STREAM.INFO.<stream>``,
``$JS.API.CONSUMER.CREATE.<stream>.<name>``, ...), with no unit conversion, and the answer
comes back as JSON, error included (``"error": {"err_code": ...}``). Which of these
subjects each role may use is in ``adapters/nats/permissions.py``.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError

from adapters.nats.dead_letters import DeadLetters
from adapters.nats.pull import PullStream

API = "$JS.API"


def raise_for_error(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` itself, or the nats-py error it carries."""
    if "error" in answer:
        raise APIError.from_error(answer["error"])
    return answer


class JetStreamApi:
    def __init__(self, nc: Client, *, timeout: float = 10.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def request(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request on ``$JS.API.<subject>``; its JSON answer, error included."""
        payload = json.dumps(body).encode() if body else b""
        reply = await self._nc.request(f"{API}.{subject}", payload, timeout=self._timeout)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    # --- streams -------------------------------------------------------------------

    async def stream_info(self, stream: str) -> dict[str, Any]:
        return await self.request(f"STREAM.INFO.{stream}")

    async def create_stream(self, stream: str, config: dict[str, Any]) -> dict[str, Any]:
        return await self.request(f"STREAM.CREATE.{stream}", config)

    async def direct_get(self, stream: str, seq: int) -> Msg:
        """The message stored at ``seq`` as the server sends it (headers and data)."""
        body = json.dumps({"seq": seq}).encode()
        return await self._nc.request(f"{API}.DIRECT.GET.{stream}", body, timeout=self._timeout)

    async def next_seq(self, stream: str, start: int, subject: str) -> int | None:
        """The sequence of the first message at or after ``start`` on ``subject`` (wildcards
        allowed), read from the store itself; None when there is none."""
        body = json.dumps({"seq": start, "next_by_subj": subject}).encode()
        reply = await self._nc.request(f"{API}.DIRECT.GET.{stream}", body, timeout=self._timeout)
        headers = reply.headers or {}
        if "Nats-Sequence" not in headers:
            return None  # 404: no such message
        return int(headers["Nats-Sequence"])

    # --- consumers -----------------------------------------------------------------

    async def consumer_info(self, stream: str, name: str) -> dict[str, Any]:
        return await self.request(f"CONSUMER.INFO.{stream}.{name}")

    async def create_ephemeral(self, stream: str, config: dict[str, Any]) -> dict[str, Any]:
        """Create a consumer with a server-made name (ephemeral); raises on error."""
        return raise_for_error(
            await self.request(f"CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config})
        )

    async def delete_consumer(self, stream: str, name: str) -> dict[str, Any]:
        return await self.request(f"CONSUMER.DELETE.{stream}.{name}")

    async def recreate_consumer(self, stream: str, name: str, config: dict[str, Any]) -> None:
        """Delete the durable consumer ``name`` if it exists and create it with ``config``."""
        await self.delete_consumer(stream, name)
        raise_for_error(
            await self.request(
                f"CONSUMER.CREATE.{stream}.{name}",
                {"stream_name": stream, "config": config | {"name": name, "durable_name": name}},
            )
        )

    def pull(self, stream: str, consumer: str, *, batch: int) -> PullStream:
        """A reader of the pull consumer ``stream``/``consumer`` (start it, then read batches)."""
        return PullStream(self._nc, stream, consumer, batch=batch)

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self._nc.jetstream(timeout=self._timeout))
