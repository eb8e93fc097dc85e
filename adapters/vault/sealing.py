"""Sealing personal content before it is published, opening it when it is read, and
shredding it (docs/privacy.md).

Data keys: one random AES-256 key per tenant and UTC day of message content, and one
standing key per tenant for what lasts as long as the inbox (``vault.data_keys``), stored
wrapped by the deployment's vault keyring and unwrapped into this process's memory on
first use. A tenant in ``vault.erased_tenants`` gets no new key, so nothing of an erased
tenant can be sealed readably again. Shredding deletes keys and announces it on NATS
(``keys.shredded.<tenant>``): every process drops the keys it holds.

:class:`Sealer` is what the event store, the agent, the connectors and the gateway use:
``seal_events`` before an append, ``seal_text`` for a live signal, ``open`` /
``open_many`` on stored bytes — each sealed value (``domain.personal``) is replaced by its
plaintext, or by ``"[erased]"`` when its key is gone, and anything else is left as it is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from adapters.nats.pull import raise_if_cancelled
from adapters.vault.cipher import Keyring, Sealed, VaultError
from domain import personal
from domain.events import Event

log = structlog.get_logger()

DATA_KEYS_SQL = """
CREATE SCHEMA IF NOT EXISTS vault;
CREATE TABLE IF NOT EXISTS vault.data_keys (
    tenant_id  text NOT NULL,
    day        date NOT NULL,      -- the UTC day of the message content it seals (1970-01-01: standing)
    key_id     text NOT NULL,      -- the vault key that wraps it
    nonce      bytea NOT NULL,
    wrapped    bytea NOT NULL,     -- the data key, sealed by the vault key
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);
CREATE TABLE IF NOT EXISTS vault.erased_tenants (
    tenant_id text PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT now()
);
"""

SHREDDED_SUBJECT = "keys.shredded"  # + ".<tenant>": drop that tenant's keys
NONCE_BYTES = 12
_ERASED_JSON = msgspec.json.encode(personal.ERASED)
_NOT_HELD: Any = object()
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"===", b"==", b"=")  # by the unpadded length modulo 4


class TenantErased(Exception):
    """The tenant was erased: nothing of it may be sealed (or appended) any more."""


def key_associated(tenant_id: str, day: date) -> bytes:
    """What a wrapped data key is bound to: its tenant and day."""
    return f"datakey:{tenant_id}:{day:%Y%m%d}".encode()


def _field_associated(tenant_id: str, day: date) -> bytes:
    return f"{tenant_id}:{day:%Y%m%d}".encode()


class DataKeys:
    """The data keys this process has unwrapped, and the way to make, load and shred them."""

    def __init__(self, pool: AsyncConnectionPool[Any], keyring: Keyring) -> None:
        self._pool = pool  # as the database's owner role: every tenant's keys
        self._keyring = keyring
        self._keys: dict[tuple[str, date], AESGCM | None] = {}  # None: shredded (or never made)
        # The same keys by a token's label, b"<tenant>:<yyyymmdd>" (also its associated data).
        self.by_label: dict[bytes, AESGCM | None] = {}

    def get(self, tenant_id: str, day: date) -> AESGCM | None:
        return self._keys.get((tenant_id, day))

    def _hold(self, tenant_id: str, day: date, key: AESGCM | None) -> None:
        self._keys[(tenant_id, day)] = key
        self.by_label[_field_associated(tenant_id, day)] = key

    def known(self, tenant_id: str, day: date) -> bool:
        return (tenant_id, day) in self._keys

    def forget(self, tenant_id: str) -> None:
        """Drop every key of the tenant held here (it was shredded)."""
        for pair in [pair for pair in self._keys if pair[0] == tenant_id]:
            del self._keys[pair]
            self.by_label.pop(_field_associated(*pair), None)

    async def for_sealing(self, tenant_id: str, day: date) -> AESGCM:
        """The key that seals ``tenant_id``'s events of ``day``, made on first use."""
        found = self._keys.get((tenant_id, day))
        if found is not None:
            return found
        key = AESGCM.generate_key(bit_length=256)
        wrapped = self._keyring.encrypt(key, associated=key_associated(tenant_id, day))
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO vault.data_keys (tenant_id, day, key_id, nonce, wrapped)"
                " SELECT %s, %s, %s, %s, %s WHERE NOT EXISTS"
                " (SELECT 1 FROM vault.erased_tenants WHERE tenant_id = %s) ON CONFLICT DO NOTHING",
                (tenant_id, day, wrapped.key_id, wrapped.nonce, wrapped.ciphertext, tenant_id),
            )
        await self.load([(tenant_id, day)])
        made = self._keys.get((tenant_id, day))
        if made is None:
            self._keys.pop((tenant_id, day), None)
            raise TenantErased(f"tenant {tenant_id} was erased: nothing of it is kept")
        return made

    async def load(self, pairs: Sequence[tuple[str, date]]) -> None:
        """Unwrap the keys of ``pairs`` that are not held yet (None for those that are gone)."""
        wanted = sorted({pair for pair in pairs if pair not in self._keys})
        if not wanted:
            return
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT k.tenant_id, k.day, k.key_id, k.nonce, k.wrapped FROM vault.data_keys k"
                " JOIN unnest(%s::text[], %s::date[]) AS w(tenant_id, day)"
                " ON k.tenant_id = w.tenant_id AND k.day = w.day",
                ([tenant for tenant, _ in wanted], [day for _, day in wanted]),
            )
            rows = await cur.fetchall()
        for tenant_id, day in wanted:
            self._hold(tenant_id, day, None)
        for row in rows:
            tenant_id, day = row["tenant_id"], row["day"]
            sealed = Sealed(key_id=row["key_id"], nonce=bytes(row["nonce"]), ciphertext=bytes(row["wrapped"]))
            key = self._keyring.decrypt(sealed, associated=key_associated(tenant_id, day))
            self._hold(tenant_id, day, AESGCM(key))

    async def shred_tenant(self, tenant_id: str) -> int:
        """Delete every key of the tenant and refuse it new ones; how many keys went."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO vault.erased_tenants (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (tenant_id,),
            )
            cur = await conn.execute("DELETE FROM vault.data_keys WHERE tenant_id = %s", (tenant_id,))
        self.forget(tenant_id)
        return int(cur.rowcount)

    async def shred_before(self, tenant_id: str, day: date) -> int:
        """Delete the tenant's keys of the days before ``day`` (retention), its standing key
        excepted; how many went."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM vault.data_keys WHERE tenant_id = %s AND day < %s AND day <> %s",
                (tenant_id, day, personal.STANDING),
            )
        self.forget(tenant_id)
        return int(cur.rowcount)


class Sealer:
    """Seals and opens personal fields with a tenant's data keys (see the module)."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    # --- sealing -------------------------------------------------------------------

    async def seal_events(self, events: Sequence[Event]) -> list[Event]:
        """Each event with its personal fields sealed (raises :class:`TenantErased`)."""
        sealed: list[Event] = []
        for event in events:
            if event.type not in personal.PERSONAL_FIELDS:
                sealed.append(event)
                continue
            day = personal.key_day(event)
            aead = await self.keys.for_sealing(event.tenant_id, day)
            sealed.append(personal.seal_event(event, self._sealing(aead, event.tenant_id, day)))
        return sealed

    async def seal_text(self, tenant_id: str, text: str, *, at: datetime | None = None) -> str:
        """One value sealed with the tenant's key of today (or of ``at``'s day)."""
        day = (at or datetime.now(UTC)).date()
        aead = await self.keys.for_sealing(tenant_id, day)
        return self._sealing(aead, tenant_id, day)(text)

    async def seal_stored(self, raw: bytes) -> bytes:
        """Stored event bytes with their plaintext personal fields sealed, by the key of the day
        the event was recorded (a log written before sealing, rewritten); "[erased]" for an
        erased tenant. Anything that is not such an event comes back as it is."""
        document = stored_document(raw)
        if document is None:
            return raw
        tenant_id, day = document["tenant_id"], _key_day(document)
        try:
            seal = self._sealing(await self.keys.for_sealing(tenant_id, day), tenant_id, day)
        except TenantErased:
            seal = _erased
        return msgspec.json.encode(document) if personal.seal_document(document, seal) else raw

    @staticmethod
    def _sealing(aead: AESGCM, tenant_id: str, day: date) -> personal.Seal:
        associated = _field_associated(tenant_id, day)

        def seal(plaintext: str) -> str:
            nonce = os.urandom(NONCE_BYTES)
            ciphertext = aead.encrypt(nonce, plaintext.encode(), associated)
            body = base64.urlsafe_b64encode(nonce + ciphertext).rstrip(b"=").decode()
            return personal.token(tenant_id, day, body)

        return seal

    # --- opening -------------------------------------------------------------------

    async def open(self, raw: bytes) -> bytes:
        """``raw`` JSON with every sealed value opened (``"[erased]"`` once its key is gone)."""
        if personal.MARK_JSON not in raw:
            return raw
        missing: set[bytes] = set()
        opened = self._open_held(raw, missing)
        if not missing:
            return opened
        await self.keys.load([_pair(label) for label in missing])
        return self._open_held(raw, set())

    async def open_many(self, raws: Sequence[bytes]) -> list[bytes]:
        missing: set[bytes] = set()
        opened = [self._open_held(raw, missing) if personal.MARK_JSON in raw else raw for raw in raws]
        if not missing:
            return opened
        await self.keys.load([_pair(label) for label in missing])
        return [self._open_held(raw, set()) if personal.MARK_JSON in raw else raw for raw in raws]

    def _open_held(self, raw: bytes, missing: set[bytes]) -> bytes:
        """``raw`` opened with the keys held here; labels of keys not held yet go to ``missing``.
        (The hot path of every read: about 2 µs a sealed value here, decryption included.)"""
        held = self.keys.by_label
        encode, a2b, nonce = msgspec.json.encode, binascii.a2b_base64, NONCE_BYTES

        def opened(match: Any) -> bytes:
            label, body = match.group(1, 2)
            aead = held.get(label, _NOT_HELD)
            if aead is None:
                return _ERASED_JSON
            if aead is _NOT_HELD:
                missing.add(label)
                return bytes(match.group(0))
            try:
                blob = a2b(body.translate(_URLSAFE) + _PADDING[len(body) % 4])
                plaintext = aead.decrypt(blob[:nonce], blob[nonce:], label)  # type: ignore[union-attr]
            except (InvalidTag, ValueError, binascii.Error):
                return bytes(match.group(0))  # not ours (someone's text that looks like a token)
            return encode(plaintext.decode())

        return personal.TOKEN_JSON.sub(opened, raw)

    # --- shredding -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def listening(self, nc: Client) -> AsyncIterator[None]:
        """While open: drop a tenant's keys whenever any process announces they were shredded."""

        async def shredded(msg: Any) -> None:
            tenant_id = msg.subject.rsplit(".", 1)[-1]
            self.keys.forget(tenant_id)
            log.info("data_keys_forgotten", tenant_id=tenant_id)

        subscription = await nc.subscribe(f"{SHREDDED_SUBJECT}.*", cb=shredded)
        try:
            raise_if_cancelled()  # the subscribe's flush can swallow a stop asked for meanwhile
            yield
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def ensure_schema(conn: Any) -> None:
    """Create the data keys' tables if missing; safe when several processes start at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.vault.data_keys'))")
        await conn.execute(DATA_KEYS_SQL)


@contextlib.asynccontextmanager
async def sealing(nc: Client, database_url: str, keyring: Keyring) -> AsyncIterator[Sealer]:
    """A process's sealer: its own small pool (as the owner role: every tenant's keys), the
    tables made if missing, listening for shredded keys on ``nc`` while open."""
    from adapters.postgres import tenancy

    pool = tenancy.pool(database_url, max_size=2, confined=False)
    await pool.open()
    try:
        async with pool.connection() as conn:
            await ensure_schema(conn)
        sealer = Sealer(DataKeys(pool, keyring))
        async with sealer.listening(nc):
            yield sealer
    finally:
        await pool.close()


async def rewrap(conn: Any, keyring: Keyring) -> tuple[int, int]:
    """Wrap every data key not under the keyring's current key with it (a key rotation);
    (re-wrapped, failed: their vault key is not configured). The log is never re-encrypted."""
    current = keyring.current_id
    cur = await conn.execute(
        "SELECT tenant_id, day, key_id, nonce, wrapped FROM vault.data_keys WHERE key_id <> %s", (current,)
    )
    rewrapped = failed = 0
    for row in await cur.fetchall():
        associated = key_associated(row["tenant_id"], row["day"])
        try:
            sealed = Sealed(key_id=row["key_id"], nonce=bytes(row["nonce"]), ciphertext=bytes(row["wrapped"]))
            key = keyring.decrypt(sealed, associated=associated)
        except VaultError:
            failed += 1
            continue
        again = keyring.encrypt(key, associated=associated)
        await conn.execute(
            "UPDATE vault.data_keys SET key_id = %s, nonce = %s, wrapped = %s"
            " WHERE tenant_id = %s AND day = %s",
            (again.key_id, again.nonce, again.ciphertext, row["tenant_id"], row["day"]),
        )
        rewrapped += 1
    return rewrapped, failed


async def announce_shredded(nc: Client, tenant_id: str) -> None:
    """Tell every process to drop the tenant's keys (it keeps none of them after this)."""
    await nc.publish(f"{SHREDDED_SUBJECT}.{tenant_id}", b"")
    await nc.flush()


def stored_document(raw: bytes) -> dict[str, Any] | None:
    """Stored bytes as a JSON event with personal fields, or None (another kind, or not an event)."""
    if not raw.startswith(b"{"):
        return None
    try:
        document: dict[str, Any] = msgspec.json.decode(raw, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if document.get("type") not in personal.PERSONAL_FIELDS or not isinstance(document.get("tenant_id"), str):
        return None
    try:
        _key_day(document)
    except (TypeError, ValueError):
        return None
    return document


def unsealed_fields(raw: bytes) -> int:
    """How many personal fields of stored bytes are plaintext (what a rewrite would seal)."""
    document = stored_document(raw)
    return 0 if document is None else personal.seal_document(document, _erased)


def _key_day(document: dict[str, Any]) -> date:
    recorded = datetime.fromisoformat(document["occurred_at"])
    return personal.key_day_of(document["type"], recorded)


def _erased(_value: str) -> str:
    return personal.ERASED


def _pair(label: bytes) -> tuple[str, date]:
    """(tenant, day) of a token's label ``b"<tenant>:<yyyymmdd>"``."""
    tenant_id, day = label.decode().rsplit(":", 1)
    return tenant_id, date(int(day[:4]), int(day[4:6]), int(day[6:8]))
