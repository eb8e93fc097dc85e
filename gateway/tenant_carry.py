"""What a tenant needs to work on another deployment besides its events: the carry of a
portable tenant export (``moltbot events export --tenant``, docs/operations.md).

The event log holds no secrets, so moving a tenant's events alone leaves it locked out:
its sealed fields need the tenant's data keys, its people their sign-ins, its website its
widget key. :func:`gather` reads those rows on the source and re-seals every secret under a
one-time *transfer key* (data keys, channel credentials, two-factor secrets): the file is
useless without that key, which the operator passes to the target's operator apart.
:func:`restore` opens them with the transfer key and seals them under the target's own vault
key, in one transaction, before the events are appended (so every sealed field opens as the
target's projections fold it). Rows already there from an earlier run of the same import are
kept; a row that belongs to someone else there (an e-mail already signed up, a data key of
another) stops the import with nothing written.

Not carried, and why (each named in :data:`LEFT_BEHIND`): sign-in sessions (people sign in
again), browser push subscriptions (browsers subscribe again), the source's billing customer
(a Stripe account is the deployment's own), WhatsApp linked-device sessions (link the phone
again), and short-lived rows (pairing codes, OAuth states, one-time links, idempotency keys).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec

from adapters.postgres.database import Connection
from adapters.vault.cipher import Keyring, Sealed, VaultError, format_key, parse_keys
from adapters.vault.sealing import ensure_schema as ensure_data_keys
from adapters.vault.sealing import key_associated
from adapters.vault.store import associated_data
from adapters.vault.store import ensure_schema as ensure_vault
from gateway.schema import ensure_gateway_tables
from gateway.two_factor import secret_associated

LEFT_BEHIND = (
    "sign-in sessions: people sign in again with their passwords",
    "browser push: each browser turns notifications on again",
    "billing: the plan's Stripe customer stays with the source deployment",
    "WhatsApp linked devices: link the phone again (Channels → WhatsApp)",
    "members whose account lives in another inbox: they sign in where their account is",
    "short-lived rows: pairing codes, one-time links, OAuth states, idempotency keys",
)


class DataKey(msgspec.Struct, frozen=True):
    day: date  # 1970-01-01: the standing key
    wrapped: Sealed  # the data key, under the transfer key


class Account(msgspec.Struct, frozen=True):
    """A sign-in whose home inbox is the tenant (``gateway.credentials``)."""

    email: str
    user_id: str
    password_hash: str  # a hash: it moves as it is
    email_verified_at: datetime | None
    password_changed_at: datetime | None
    created_at: datetime


class TwoFactor(msgspec.Struct, frozen=True):
    user_id: str
    secret: Sealed  # the TOTP secret, under the transfer key
    confirmed_at: datetime | None
    last_step: int


class RecoveryCode(msgspec.Struct, frozen=True):
    user_id: str
    code_hash: str
    used_at: datetime | None


class Identity(msgspec.Struct, frozen=True):
    """An external identity provider's person linked to a user (useful where the target
    trusts the same provider)."""

    issuer: str
    subject: str
    user_id: str


class Widget(msgspec.Struct, frozen=True):
    widget_key: str  # websites keep their embed code
    connection_id: str
    preview_token: str | None


class ChannelSecret(msgspec.Struct, frozen=True):
    connection_id: str
    kind: str
    secret: Sealed  # the connection's credentials, under the transfer key


class TenantCarry(msgspec.Struct, frozen=True, kw_only=True):
    """The first line of a portable tenant export, as ``{"carry": TenantCarry}``."""

    tenant_id: str
    transfer_key_id: str  # the key every ``Sealed`` here is under
    data_keys: list[DataKey]
    accounts: list[Account]
    two_factor: list[TwoFactor]
    recovery_codes: list[RecoveryCode]
    identities: list[Identity]
    widgets: list[Widget]
    channel_secrets: list[ChannelSecret]
    left_behind: list[str]

    def summary(self) -> str:
        parts = [
            (len(self.accounts), "sign-in"),
            (len(self.widgets), "website widget"),
            (len(self.channel_secrets), "channel credential"),
            (len(self.two_factor), "two-factor secret"),
            (len(self.data_keys), "data key"),
        ]
        return ", ".join(f"{n} {what}{'' if n == 1 else 's'}" for n, what in parts)


class _CarryLine(msgspec.Struct, frozen=True):
    carry: TenantCarry


class CarryError(Exception):
    """The carry cannot be made or restored; the message says what to do."""


CARRY_PREFIX = b'{"carry":'


def new_transfer_key() -> tuple[Keyring, str]:
    """A one-time transfer key, and how the operator passes it on (``id:base64key``)."""
    key_id, key = Keyring.generate_key()
    return Keyring({key_id: key}, key_id), format_key(key_id, key)


def transfer_keyring(entry: str) -> Keyring:
    """The transfer key an export printed (``id:base64key``)."""
    try:
        return parse_keys(entry, None)
    except VaultError as exc:
        raise CarryError(f"--transfer-key: {exc} (pass it as the export printed it, id:base64key)") from None


def encode_line(carry: TenantCarry) -> bytes:
    return msgspec.json.encode(_CarryLine(carry)) + b"\n"


def decode_line(line: bytes) -> TenantCarry | None:
    """The carry of a first line, or None when the line is an event."""
    if not line.startswith(CARRY_PREFIX):
        return None
    try:
        return msgspec.json.decode(line, type=_CarryLine).carry
    except msgspec.ValidationError as exc:
        raise CarryError(f"line 1: the tenant's carry is malformed: {exc}") from None


def _reseal(sealed: Sealed, source: Keyring, target: Keyring, associated: bytes) -> Sealed:
    """``sealed`` opened with ``source`` and sealed again with ``target``'s current key."""
    return target.encrypt(_open(sealed, source, associated), associated=associated)


def _sealed(row: dict[str, Any], column: str = "ciphertext") -> Sealed:
    return Sealed(key_id=row["key_id"], nonce=bytes(row["nonce"]), ciphertext=bytes(row[column]))


async def _rows(conn: Connection, query: str, *params: Any) -> list[dict[str, Any]]:
    return list(await (await conn.execute(query, params)).fetchall())  # type: ignore[arg-type]


async def gather(conn: Connection, tenant_id: str, vault: Keyring, transfer: Keyring) -> TenantCarry:
    """The tenant's rows on this deployment, every secret re-sealed from ``vault`` (this
    deployment's keys) to ``transfer``; ``conn`` as the database owner."""
    if await _rows(conn, "SELECT 1 FROM vault.erased_tenants WHERE tenant_id = %s", tenant_id):
        raise CarryError(f"tenant {tenant_id} was erased: there is nothing of it to carry")
    data_keys = [
        DataKey(
            r["day"], _reseal(_sealed(r, "wrapped"), vault, transfer, key_associated(tenant_id, r["day"]))
        )
        for r in await _rows(
            conn,
            "SELECT day, key_id, nonce, wrapped FROM vault.data_keys WHERE tenant_id = %s ORDER BY day",
            tenant_id,
        )
    ]
    accounts = [
        Account(**r)
        for r in await _rows(
            conn,
            "SELECT email, user_id, password_hash, email_verified_at, password_changed_at, created_at"
            " FROM gateway.credentials WHERE tenant_id = %s ORDER BY email",
            tenant_id,
        )
    ]
    users = [a.user_id for a in accounts]
    two_factor = [
        TwoFactor(
            r["user_id"],
            _reseal(_sealed(r), vault, transfer, secret_associated(r["user_id"])),
            r["confirmed_at"],
            r["last_step"],
        )
        for r in await _rows(
            conn,
            "SELECT user_id, key_id, nonce, ciphertext, confirmed_at, last_step FROM gateway.two_factor"
            " WHERE user_id = ANY(%s) ORDER BY user_id",
            users,
        )
    ]
    codes = [
        RecoveryCode(**r)
        for r in await _rows(
            conn,
            "SELECT user_id, code_hash, used_at FROM gateway.recovery_codes WHERE user_id = ANY(%s)"
            " ORDER BY user_id, code_hash",
            users,
        )
    ]
    identities = [
        Identity(**r)
        for r in await _rows(
            conn,
            "SELECT issuer, subject, user_id FROM gateway.identities WHERE tenant_id = %s"
            " ORDER BY issuer, subject",
            tenant_id,
        )
    ]
    widgets = [
        Widget(**r)
        for r in await _rows(
            conn,
            "SELECT widget_key, connection_id, preview_token FROM gateway.webchat_widgets"
            " WHERE tenant_id = %s",
            tenant_id,
        )
    ]
    secrets = [
        ChannelSecret(
            r["connection_id"],
            r["kind"],
            _reseal(_sealed(r), vault, transfer, associated_data(tenant_id, r["connection_id"])),
        )
        for r in await _rows(
            conn,
            "SELECT connection_id, kind, key_id, nonce, ciphertext FROM vault.credentials"
            " WHERE tenant_id = %s ORDER BY connection_id",
            tenant_id,
        )
    ]
    return TenantCarry(
        tenant_id=tenant_id,
        transfer_key_id=transfer.current_id,
        data_keys=data_keys,
        accounts=accounts,
        two_factor=two_factor,
        recovery_codes=codes,
        identities=identities,
        widgets=widgets,
        channel_secrets=secrets,
        left_behind=list(LEFT_BEHIND),
    )


async def restore(conn: Connection, carry: TenantCarry, transfer: Keyring, vault: Keyring) -> None:
    """Write ``carry`` here, each secret sealed under ``vault``'s current key, in one
    transaction (``conn`` as the database owner, in autocommit); an earlier run's rows are
    kept, another's stop it (:class:`CarryError`) with nothing written."""
    if carry.transfer_key_id not in transfer.key_ids:
        raise CarryError(
            f"this file's secrets are sealed under transfer key {carry.transfer_key_id!r}, not"
            f" {transfer.current_id!r}: pass the key its export printed"
        )
    tenant = carry.tenant_id
    await ensure_gateway_tables(conn)
    await ensure_vault(conn)
    await ensure_data_keys(conn)
    async with conn.transaction():
        erased = await conn.execute("SELECT 1 FROM vault.erased_tenants WHERE tenant_id = %s", (tenant,))
        if await erased.fetchone() is not None:
            raise CarryError(f"tenant {tenant} was erased on this deployment: it cannot come back here")
        for key in carry.data_keys:
            await _restore_data_key(conn, tenant, key, transfer, vault)
        for account in carry.accounts:
            await _insert_or_same(
                conn,
                "gateway.credentials",
                {"tenant_id": tenant, **msgspec.structs.asdict(account)},
                key=("email",),
                same=("user_id", "tenant_id"),
                what=f"the e-mail {account.email} is already signed up here for another account",
            )
        for factor in carry.two_factor:
            sealed = _reseal(factor.secret, transfer, vault, secret_associated(factor.user_id))
            row = {
                "user_id": factor.user_id, "key_id": sealed.key_id, "nonce": sealed.nonce,
                "ciphertext": sealed.ciphertext, "confirmed_at": factor.confirmed_at,
                "last_step": factor.last_step,
            }  # fmt: skip
            await _insert_or_same(conn, "gateway.two_factor", row, key=("user_id",))
        for code in carry.recovery_codes:
            row = msgspec.structs.asdict(code)
            await _insert_or_same(conn, "gateway.recovery_codes", row, key=("user_id", "code_hash"))
        for identity in carry.identities:
            await _insert_or_same(
                conn,
                "gateway.identities",
                {"tenant_id": tenant, **msgspec.structs.asdict(identity)},
                key=("issuer", "subject"),
                same=("user_id",),
                what=f"the identity {identity.issuer} {identity.subject} is linked to another account here",
            )
        for widget in carry.widgets:
            await _insert_or_same(
                conn,
                "gateway.webchat_widgets",
                {"tenant_id": tenant, **msgspec.structs.asdict(widget)},
                key=("widget_key",),
                same=("tenant_id",),
                what=f"the widget key {widget.widget_key} belongs to another tenant here",
            )
        for secret in carry.channel_secrets:
            associated = associated_data(tenant, secret.connection_id)
            sealed = _reseal(secret.secret, transfer, vault, associated)
            row = {
                "connection_id": secret.connection_id, "tenant_id": tenant, "kind": secret.kind,
                "key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
            }  # fmt: skip
            await _insert_or_same(
                conn,
                "vault.credentials",
                row,
                key=("connection_id",),
                same=("tenant_id",),
                what=f"the connection {secret.connection_id} belongs to another tenant here",
            )


async def _restore_data_key(
    conn: Connection, tenant: str, key: DataKey, transfer: Keyring, vault: Keyring
) -> None:
    associated = key_associated(tenant, key.day)
    plain = _open(key.wrapped, transfer, associated)
    cur = await conn.execute(
        "SELECT key_id, nonce, wrapped FROM vault.data_keys WHERE tenant_id = %s AND day = %s",
        (tenant, key.day),
    )
    held = await cur.fetchone()
    if held is not None:
        if _open(_sealed(held, "wrapped"), vault, associated) != plain:
            raise CarryError(
                f"tenant {tenant} already has another data key here for {key.day}: import a tenant"
                " into a deployment where it is new (or where this file was imported before)"
            )
        return
    wrapped = vault.encrypt(plain, associated=associated)
    await conn.execute(
        "INSERT INTO vault.data_keys (tenant_id, day, key_id, nonce, wrapped) VALUES (%s, %s, %s, %s, %s)",
        (tenant, key.day, wrapped.key_id, wrapped.nonce, wrapped.ciphertext),
    )


def _open(sealed: Sealed, keyring: Keyring, associated: bytes) -> bytes:
    try:
        return keyring.decrypt(sealed, associated=associated)
    except VaultError as exc:
        raise CarryError(f"a secret of the tenant does not open: {exc}") from None


async def _insert_or_same(
    conn: Connection,
    table: str,
    row: dict[str, Any],
    *,
    key: tuple[str, ...],
    same: tuple[str, ...] = (),
    what: str = "",
) -> None:
    """Insert ``row``; where its ``key`` is taken, the row there must agree on ``same``."""
    columns = ", ".join(row)
    placeholders = ", ".join(["%s"] * len(row))
    conflict = ", ".join(key)
    cur = await conn.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT ({conflict}) DO NOTHING"
        " RETURNING 1",
        tuple(row.values()),
    )
    if await cur.fetchone() is not None or not same:
        return
    where = " AND ".join(f"{k} = %s" for k in key)
    held = await (await conn.execute(
        f"SELECT {', '.join(same)} FROM {table} WHERE {where}", tuple(row[k] for k in key)
    )).fetchone()  # fmt: skip
    if held is None or any(held[c] != row[c] for c in same):
        raise CarryError(what)
