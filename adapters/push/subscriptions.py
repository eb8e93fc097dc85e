"""The devices people subscribed to push notifications, in PostgreSQL ``push.subscriptions``.

A browser's subscription (``PushSubscription.toJSON()``: its endpoint and the keys the push
is encrypted to) is a device secret, not history: it is kept here and nowhere else, never in
the event log. The endpoint and keys are sealed with the vault's keys (AES-256-GCM, like
channel credentials, bound to the row's inbox, person and endpoint digest); what stays
readable is whose it is, the push service's host and a device name, to list. A person may
subscribe several devices, in each inbox they belong to; row-level security keeps every
transaction to its tenant.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.postgres.database import Connection
from adapters.push.config import PushConfig
from adapters.push.vapid import b64url_decode
from adapters.vault.cipher import Keyring, Sealed, VaultError
from domain import ids

log = structlog.get_logger()

PREFIX = "ps"  # subscription ids: ps_<ulid>
MAX_PER_PERSON = 20  # devices one person may subscribe in one inbox

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS push;
CREATE TABLE IF NOT EXISTS push.subscriptions (
    subscription_id text PRIMARY KEY,
    tenant_id       text NOT NULL,
    user_id         text NOT NULL,
    endpoint_hash   text NOT NULL,   -- SHA-256 of the endpoint: the same browser subscribing again
    push_service    text NOT NULL,   -- the endpoint's host, to show ("fcm.googleapis.com")
    device          text NOT NULL,   -- from the browser's User-Agent ("Firefox on Linux")
    key_id          text NOT NULL,   -- the vault key sealing the endpoint and keys
    nonce           bytea NOT NULL,
    ciphertext      bytea NOT NULL,  -- {"endpoint","p256dh","auth"}, AES-256-GCM with its tag
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_sent_at    timestamptz,
    UNIQUE (tenant_id, user_id, endpoint_hash)
);
GRANT USAGE ON SCHEMA push TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON push.subscriptions TO moltbot_gateway;
ALTER TABLE push.subscriptions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_only ON push.subscriptions;
CREATE POLICY tenant_only ON push.subscriptions TO moltbot_gateway
    USING (tenant_id = current_setting('moltbot.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('moltbot.tenant_id', true));
"""


class InvalidSubscription(ValueError):
    """A browser subscription that cannot be pushed to; ``field`` names what is wrong."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class BrowserSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """What a push is sent with: the push service's URL for the device, the device's public
    key (P-256, uncompressed, base64url) and the shared authentication secret."""

    endpoint: str
    p256dh: str
    auth: str


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A subscribed device as its person sees it (never its endpoint or keys)."""

    subscription_id: str
    push_service: str
    device: str
    created_at: datetime
    last_sent_at: datetime | None = None


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """A device to push to, opened from the vault."""

    subscription_id: str
    user_id: str
    subscription: BrowserSubscription


async def ensure_schema(conn: Connection) -> None:
    """The table and the confined role's access (that role must exist: ``ensure_core``)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.push.schema'))")
        await conn.execute(SCHEMA_SQL)


def validated(config: PushConfig, endpoint: str, p256dh: str, auth: str) -> BrowserSubscription:
    """The subscription if a push can be encrypted to it and sent where it points, else
    :class:`InvalidSubscription` naming the field."""
    refusal = config.endpoint_refusal(endpoint)
    if refusal is not None:
        raise InvalidSubscription("endpoint", refusal)
    try:
        point = b64url_decode(p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if len(point) != 65:
            raise ValueError("compressed")
    except ValueError:
        raise InvalidSubscription(
            "keys.p256dh", "keys.p256dh must be the browser's P-256 public key (65 bytes, base64url)."
        ) from None
    try:
        secret = b64url_decode(auth)
    except ValueError:
        secret = b""
    if len(secret) != 16:
        raise InvalidSubscription("keys.auth", "keys.auth must be the browser's 16-byte secret, base64url.")
    return BrowserSubscription(endpoint=endpoint, p256dh=p256dh.strip(), auth=auth.strip())


def _associated(tenant_id: str, user_id: str, endpoint_hash: str) -> bytes:
    """What a row's ciphertext is bound to: its person in its inbox, and its own endpoint."""
    return f"push:{tenant_id}:{user_id}:{endpoint_hash}".encode()


def _endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()


async def subscribe(
    conn: Connection,
    keyring: Keyring,
    *,
    tenant_id: str,
    user_id: str,
    subscription: BrowserSubscription,
    device: str,
) -> Subscription | None:
    """Keep the device's subscription (a browser subscribing again gets its row back, with the
    keys it sends now); None when the person has :data:`MAX_PER_PERSON` devices already."""
    endpoint_hash = _endpoint_hash(subscription.endpoint)
    cur = await conn.execute(
        "SELECT 1 FROM push.subscriptions WHERE tenant_id = %s AND user_id = %s AND endpoint_hash = %s",
        (tenant_id, user_id, endpoint_hash),
    )
    if await cur.fetchone() is None and await count(conn, tenant_id, user_id) >= MAX_PER_PERSON:
        return None
    sealed = keyring.encrypt(
        msgspec.json.encode(subscription), associated=_associated(tenant_id, user_id, endpoint_hash)
    )
    # Two requests of one browser at once: one row, the later keys.
    cur = await conn.execute(
        "INSERT INTO push.subscriptions (subscription_id, tenant_id, user_id, endpoint_hash, push_service,"
        " device, key_id, nonce, ciphertext) VALUES (%(id)s, %(tenant)s, %(user)s, %(hash)s, %(service)s,"
        " %(device)s, %(key_id)s, %(nonce)s, %(ciphertext)s)"
        " ON CONFLICT (tenant_id, user_id, endpoint_hash) DO UPDATE SET device = EXCLUDED.device,"
        " key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext"
        " RETURNING subscription_id, push_service, device, created_at, last_sent_at",
        {
            "id": ids.new_id(PREFIX), "tenant": tenant_id, "user": user_id, "hash": endpoint_hash,
            "service": urlsplit(subscription.endpoint).hostname or "", "device": device[:100],
            "key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
        },
    )  # fmt: skip
    stored = await cur.fetchone()
    assert stored is not None  # RETURNING of an insert or update always has the row
    kept = msgspec.convert(stored, Subscription)
    log.info("push_subscribed", tenant_id=tenant_id, user_id=user_id, subscription_id=kept.subscription_id)
    return kept


async def count(conn: Connection, tenant_id: str, user_id: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM push.subscriptions WHERE tenant_id = %s AND user_id = %s",
        (tenant_id, user_id),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row is not None else 0


async def listed(conn: Connection, tenant_id: str, user_id: str) -> list[Subscription]:
    """The person's subscribed devices in the inbox, oldest first."""
    cur = await conn.execute(
        "SELECT subscription_id, push_service, device, created_at, last_sent_at FROM push.subscriptions"
        " WHERE tenant_id = %s AND user_id = %s ORDER BY created_at, subscription_id",
        (tenant_id, user_id),
    )
    return [msgspec.convert(row, Subscription) for row in await cur.fetchall()]


async def remove(conn: Connection, tenant_id: str, user_id: str, subscription_id: str) -> bool:
    """Unsubscribe one of the person's devices; False when it is not theirs (or not there)."""
    cur = await conn.execute(
        "DELETE FROM push.subscriptions WHERE tenant_id = %s AND user_id = %s AND subscription_id = %s",
        (tenant_id, user_id, subscription_id),
    )
    return cur.rowcount > 0


async def targets(conn: Connection, keyring: Keyring, tenant_id: str, user_ids: list[str]) -> list[Target]:
    """The devices of these people in the inbox, opened; a row that does not open (its vault
    key is gone) is left out and logged."""
    if not user_ids:
        return []
    cur = await conn.execute(
        "SELECT subscription_id, user_id, endpoint_hash, key_id, nonce, ciphertext FROM push.subscriptions"
        " WHERE tenant_id = %s AND user_id = ANY(%s) ORDER BY subscription_id",
        (tenant_id, user_ids),
    )
    found: list[Target] = []
    for row in await cur.fetchall():
        try:
            associated = _associated(tenant_id, row["user_id"], row["endpoint_hash"])
            plaintext = keyring.decrypt(_sealed(row), associated=associated)
        except VaultError as exc:
            log.warning(
                "push_subscription_unreadable", subscription_id=row["subscription_id"], error=str(exc)
            )
            continue
        subscription = msgspec.json.decode(plaintext, type=BrowserSubscription)
        found.append(
            Target(subscription_id=row["subscription_id"], user_id=row["user_id"], subscription=subscription)
        )
    return found


async def forget(conn: Connection, tenant_id: str, subscription_ids: list[str]) -> int:
    """Delete subscriptions the push service no longer knows (404 or 410)."""
    cur = await conn.execute(
        "DELETE FROM push.subscriptions WHERE tenant_id = %s AND subscription_id = ANY(%s)",
        (tenant_id, subscription_ids),
    )
    return cur.rowcount


async def forget_member(conn: Connection, tenant_id: str, user_id: str) -> int:
    """Delete a person's devices in an inbox they left."""
    cur = await conn.execute(
        "DELETE FROM push.subscriptions WHERE tenant_id = %s AND user_id = %s", (tenant_id, user_id)
    )
    return cur.rowcount


async def mark_sent(conn: Connection, tenant_id: str, subscription_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE push.subscriptions SET last_sent_at = now()"
        " WHERE tenant_id = %s AND subscription_id = ANY(%s)",
        (tenant_id, subscription_ids),
    )


def _sealed(row: dict[str, Any]) -> Sealed:
    return Sealed(key_id=row["key_id"], nonce=bytes(row["nonce"]), ciphertext=bytes(row["ciphertext"]))
