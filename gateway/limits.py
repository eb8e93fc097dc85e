"""Rate limits and caps on concurrent streams, with one way of refusing: ``429`` with
``Retry-After`` and the error body.

Counted limits (per minute, fixed windows) are kept in PostgreSQL, so they hold across
gateway replicas (:mod:`adapters.postgres.rate_counter`). Concurrent streams (SSE,
WebSocket, the widget's socket) and ``?min_seq=`` waits are capped per gateway replica:
each one holds resources of this process only. Every refusal is counted by kind and
shown on ``/metrics``.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from litestar import Request

from adapters.postgres.rate_counter import RateCounter
from gateway.errors import ApiError

WINDOW_S = 60
STREAM_RETRY_S = 5  # what a refused stream is told to wait: streams end at any time


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Every limit, read from ``MOLTBOT_LIMIT_<NAME>`` (upper case); 0 turns one off.

    Counted limits are per minute; the ``*_streams`` and ``*_waits`` ones are how many
    may be open at once on one gateway replica."""

    login_per_ip: int = 20
    login_per_account: int = 10
    signup_per_ip: int = 10
    refresh_per_ip: int = 60
    otp_per_account: int = 5  # two-factor codes tried for one account (a code is 1 in 10^6)
    password_reset_per_ip: int = 10  # reset mails asked for, and mailed links tried, from one address
    password_reset_per_account: int = 3  # reset and verification mails to one address
    invitations_per_tenant: int = 20  # invitations sent by one inbox
    pairing_per_ip: int = 10  # device pairings tried from one address (codes are guessable only so fast)
    webchat_per_ip: int = 30  # visitor messages from one address
    webchat_per_visitor: int = 12  # messages of one visitor
    webchat_per_widget: int = 600  # all visitors of one website together
    webchat_new_visitors_per_ip: int = 10  # first messages (each opens a conversation)
    api_per_tenant: int = 1200  # signed-in API requests of one inbox
    preview_per_tenant: int = 10  # agent previews (POST /v1/agents/{id}/test)
    exports_per_tenant: int = 6  # whole-inbox archives (GET /v1/export): each reads everything
    agent_runs_per_conversation: int = 6  # agent answers in one conversation
    streams_per_tenant: int = 20  # open SSE/WebSocket streams of one inbox
    streams_per_ip: int = 20  # open streams (the widget's included) from one address
    min_seq_waits_per_tenant: int = 4  # reads waiting for ?min_seq= at once

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Limits:
        values: dict[str, int] = {}
        for name in cls.__struct_fields__:
            raw = environ.get(f"MOLTBOT_LIMIT_{name.upper()}")
            if raw is None or raw == "":
                continue
            if not raw.isdigit():
                raise ValueError(
                    f"MOLTBOT_LIMIT_{name.upper()} is a whole number (0 turns it off), not {raw!r}"
                )
            values[name] = int(raw)
        return cls(**values)


def too_many(detail: str, retry_after: int) -> ApiError:
    return ApiError(429, "rate_limited", detail, headers={"Retry-After": str(retry_after)})


class Limiter:
    """Checks the counted limits and holds the concurrency caps of one gateway replica."""

    def __init__(self, counter: RateCounter | None, limits: Limits) -> None:
        self._counter = counter
        self.limits = limits
        self.refusals: Counter[str] = Counter()  # by limit name, for /metrics
        self._open: Counter[str] = Counter()

    async def check(self, limit: str, key: str, detail: str) -> None:
        """Count a hit on ``limit`` for ``key``; past the limit, refuse with 429."""
        allowed = getattr(self.limits, limit)
        if not allowed or self._counter is None:
            return
        hit = await self._counter.hit(f"{limit}:{key}", WINDOW_S)
        if hit.hits > allowed:
            self.refusals[limit] += 1
            raise too_many(f"{detail} Try again in {hit.retry_after} s.", hit.retry_after)

    def ensure_room(self, holds: list[tuple[str, str]], detail: str) -> None:
        """Refuse now (429) if any of ``holds`` is full — before a stream answers 200 and
        takes its slots with :meth:`hold`."""
        for limit, key in holds:
            allowed = getattr(self.limits, limit)
            if allowed and self._open[f"{limit}:{key}"] >= allowed:
                self.refusals[limit] += 1
                raise too_many(detail, STREAM_RETRY_S)

    @contextlib.asynccontextmanager
    async def hold(self, holds: list[tuple[str, str]], detail: str) -> AsyncIterator[None]:
        """Hold one slot of each ``(limit, key)`` for the block; refuse if any is full."""
        taken: list[str] = []
        try:
            for limit, key in holds:
                allowed = getattr(self.limits, limit)
                slot = f"{limit}:{key}"
                if allowed and self._open[slot] >= allowed:
                    self.refusals[limit] += 1
                    raise too_many(detail, STREAM_RETRY_S)
                self._open[slot] += 1
                taken.append(slot)
            yield
        finally:
            for slot in taken:
                self._open[slot] -= 1
                if self._open[slot] <= 0:
                    del self._open[slot]


def client_ip(request: Request[Any, Any, Any] | Any, trusted_proxies: tuple[str, ...]) -> str:
    """The caller's address: the peer, or — when the peer is a trusted proxy — the rightmost
    ``X-Forwarded-For`` entry that is not a trusted proxy itself."""
    peer = str(request.client.host) if request.client else "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    header = str(request.headers.get("x-forwarded-for", ""))
    forwarded = [hop.strip() for hop in header.split(",") if hop.strip()]
    for hop in reversed(forwarded):
        if not _trusted(hop, trusted_proxies):
            return hop
    return peer


def _trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)
