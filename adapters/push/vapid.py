"""The deployment's VAPID key (RFC 8292): an ECDSA P-256 key pair that signs every Web Push
request. Browsers subscribe with its public half (the "application server key"), and push
services deliver only what that key signed.

``MOLTBOT_VAPID_PRIVATE_KEY`` gives it (base64url of the raw 32-byte private key, as
``web-push generate-vapid-keys`` prints it, or a PEM); without it the key file
``<data dir>/push/vapid-private.pem`` (mode 0600) holds it, made on first use. Every process of
a deployment must use the same key, and it must not change: a new key leaves every browser's
subscription unusable until its person subscribes again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class VapidKeyError(ValueError):
    """The configured key cannot be used; the message never holds key bytes."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """base64url with or without padding; ValueError for anything else."""
    stripped = text.strip().rstrip("=")
    if not stripped or any(c not in _B64URL for c in stripped):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class VapidKey:
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_raw(self) -> bytes:
        """The public key as an uncompressed point (65 bytes): what ``applicationServerKey`` takes."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def application_server_key(self) -> str:
        """The public key, base64url without padding, for ``pushManager.subscribe``."""
        return b64url(self.public_raw)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def parse_private_key(value: str, *, where: str = "MOLTBOT_VAPID_PRIVATE_KEY") -> VapidKey:
    """A P-256 private key from a PEM or the base64url of its raw 32 bytes."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            loaded = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) != 32:
                raise VapidKeyError(f"{where}: a raw VAPID private key is 32 bytes, not {len(raw)}")
            loaded = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except VapidKeyError:
        raise
    except (ValueError, TypeError):
        raise VapidKeyError(f"{where}: not a PEM or base64url P-256 private key") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise VapidKeyError(f"{where}: a VAPID key is an ECDSA key on the P-256 curve")
    return VapidKey(loaded)


def load_or_create(key_file: Path) -> VapidKey:
    """The key in ``key_file``, made there on first use (mode 0600; a process that loses the
    race to create it reads the winner's)."""
    if not key_file.exists():
        _create(key_file, VapidKey.generate())
    return parse_private_key(key_file.read_text(), where=str(key_file))


def _create(path: Path, key: VapidKey) -> None:
    """Written aside, then hard-linked in: never seen half-written, never replacing another's."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key.private_pem())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
