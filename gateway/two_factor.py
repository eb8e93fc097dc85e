"""Two-factor sign-in: TOTP (RFC 6238: 6 digits, 30 s, SHA-1, what authenticator apps use)
and ten single-use recovery codes.

The secret is sealed with the vault's keys (``adapters/vault/cipher.py``) before it is
stored; a code is accepted once — the last accepted time step is kept, so a code seen over
someone's shoulder cannot be replayed within its 90 s window. Recovery codes are stored as
SHA-256 digests (they are random, 50 bits each) and each works once.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
from typing import Any, Final

import msgspec
import pyotp
import segno

from adapters.postgres.database import Connection
from adapters.vault.cipher import Keyring, Sealed

TWO_FACTOR_SQL = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.two_factor (
    user_id      text PRIMARY KEY,
    key_id       text NOT NULL,
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,   -- the TOTP secret, sealed
    confirmed_at timestamptz,      -- NULL: enrolment started, not yet confirmed with a code
    last_step    bigint NOT NULL DEFAULT 0,  -- the last accepted 30 s step (no replays)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS gateway.recovery_codes (
    user_id   text NOT NULL,
    code_hash text NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
GRANT USAGE ON SCHEMA gateway TO moltbot_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.two_factor, gateway.recovery_codes TO moltbot_gateway;
"""

ISSUER: Final = "Moltbot Cloud"
RECOVERY_CODES: Final = 10
STEP_S: Final = 30


class Enrolment(msgspec.Struct, frozen=True):
    """What ``POST /v1/me/2fa`` answers: scan the QR (or type the secret), then confirm a code."""

    secret: str
    otpauth_uri: str
    qr_svg: str


def secret_associated(user_id: str) -> bytes:
    """What a sealed TOTP secret is bound to: its user."""
    return f"2fa:{user_id}".encode()


def _digest(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def new_recovery_codes() -> list[str]:
    """Ten codes like ``k3m9-x2pq-7hdw``: lower-case base32, easy to read and type."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(alphabet) for _ in range(12))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


async def begin(conn: Connection, keyring: Keyring, user_id: str, email: str) -> Enrolment:
    """Start (or restart) enrolment with a new secret; not in force until :func:`confirm`."""
    secret = pyotp.random_base32()
    sealed = keyring.encrypt(secret.encode(), associated=secret_associated(user_id))
    await conn.execute(
        "INSERT INTO gateway.two_factor (user_id, key_id, nonce, ciphertext) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,"
        " ciphertext = EXCLUDED.ciphertext, confirmed_at = NULL, last_step = 0, created_at = now()",
        (user_id, sealed.key_id, sealed.nonce, sealed.ciphertext),
    )
    uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False, svgns=True)
    return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=buffer.getvalue().decode())


async def enabled(conn: Connection, user_id: str) -> bool:
    """Whether sign-in needs a second factor."""
    cur = await conn.execute(
        "SELECT 1 FROM gateway.two_factor WHERE user_id = %s AND confirmed_at IS NOT NULL", (user_id,)
    )
    return await cur.fetchone() is not None


async def confirm(conn: Connection, keyring: Keyring, user_id: str, code: str) -> list[str] | None:
    """Put enrolment in force with a first code; the recovery codes (shown once), or None when
    the code is wrong or no enrolment is pending."""
    if not await _accept_totp(conn, keyring, user_id, code, pending=True):
        return None
    codes = new_recovery_codes()
    await conn.execute("UPDATE gateway.two_factor SET confirmed_at = now() WHERE user_id = %s", (user_id,))
    await conn.execute("DELETE FROM gateway.recovery_codes WHERE user_id = %s", (user_id,))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO gateway.recovery_codes (user_id, code_hash) VALUES (%s, %s)",
            [(user_id, _digest(code)) for code in codes],
        )
    return codes


async def verify(conn: Connection, keyring: Keyring, user_id: str, code: str) -> str | None:
    """Check a second factor of a confirmed enrolment: ``"totp"`` or ``"recovery_code"`` when
    accepted (and used up), None otherwise."""
    if code.strip().isdigit():
        return "totp" if await _accept_totp(conn, keyring, user_id, code, pending=False) else None
    cur = await conn.execute(
        "UPDATE gateway.recovery_codes SET used_at = now()"
        " WHERE user_id = %s AND code_hash = %s AND used_at IS NULL RETURNING 1",
        (user_id, _digest(code)),
    )
    return "recovery_code" if await cur.fetchone() is not None else None


async def recovery_codes_left(conn: Connection, user_id: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM gateway.recovery_codes WHERE user_id = %s AND used_at IS NULL", (user_id,)
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return int(row["n"]) if row else 0


async def disable(conn: Connection, user_id: str) -> None:
    await conn.execute("DELETE FROM gateway.two_factor WHERE user_id = %s", (user_id,))
    await conn.execute("DELETE FROM gateway.recovery_codes WHERE user_id = %s", (user_id,))


async def _accept_totp(conn: Connection, keyring: Keyring, user_id: str, code: str, *, pending: bool) -> bool:
    cur = await conn.execute(
        "SELECT key_id, nonce, ciphertext, last_step FROM gateway.two_factor WHERE user_id = %s"
        " AND (confirmed_at IS NULL) = %s FOR UPDATE",
        (user_id, pending),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    code = code.strip()
    if row is None or len(code) != 6 or not code.isdigit():
        return False
    sealed = Sealed(key_id=row["key_id"], nonce=bytes(row["nonce"]), ciphertext=bytes(row["ciphertext"]))
    totp = pyotp.TOTP(keyring.decrypt(sealed, associated=secret_associated(user_id)).decode())
    now_step = int(time.time()) // STEP_S
    # The step before and after too (clocks drift), but never a step at or before the last one used.
    for step in (now_step - 1, now_step, now_step + 1):
        if step > row["last_step"] and secrets.compare_digest(totp.at(step * STEP_S), code):
            await conn.execute(
                "UPDATE gateway.two_factor SET last_step = %s WHERE user_id = %s", (step, user_id)
            )
            return True
    return False
