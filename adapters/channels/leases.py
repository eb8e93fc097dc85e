"""One active session per connection, whatever the number of connector replicas.

A lease is a key in the JetStream key-value bucket ``connector_leases`` (streams.yaml):
taken with ``create`` (fails if someone holds it), kept by ``update`` at the revision the
holder last wrote (fails if someone else took it), and freed by ``delete`` or by the
bucket's max age when the holder dies without letting go.
"""

from __future__ import annotations

import contextlib

import nats.js.errors
import structlog
from nats.js.kv import KeyValue

log = structlog.get_logger()

BUCKET = "connector_leases"
TTL_SECONDS = 15.0  # the bucket's max age; holders renew well within it


class Lease:
    def __init__(self, kv: KeyValue, key: str, holder: str) -> None:
        self._kv = kv
        self.key = key
        self._holder = holder.encode()
        self._revision: int | None = None

    @property
    def held(self) -> bool:
        return self._revision is not None

    async def acquire(self) -> bool:
        try:
            self._revision = await self._kv.create(self.key, self._holder)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        log.info("lease_acquired", key=self.key)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired and taken by another)."""
        if self._revision is None:
            return False
        try:
            self._revision = await self._kv.update(self.key, self._holder, last=self._revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            self._revision = None
            log.warning("lease_lost", key=self.key)
            return False
        return True

    async def release(self) -> None:
        if self._revision is not None:
            with contextlib.suppress(nats.js.errors.Error, nats.errors.Error):
                await self._kv.delete(self.key, last=self._revision)
            self._revision = None
