"""Who this device is: its Ed25519 key (private, mode 0600, never sent anywhere) and what
pairing gave it (the gateway, the tenant and the device id), under the bridge's data folder."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import devices

KEY_FILE = "device.key"
PAIRING_FILE = "device.json"


class Pairing(msgspec.Struct, frozen=True):
    gateway: str  # e.g. https://inbox.example.com
    tenant_id: str
    device_id: str
    name: str
    fingerprint: str


class NotPaired(Exception):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"This device is not paired (nothing in {data_dir}). Make a pairing code on the Bridge page,"
            " then run: moltbot bridge pair CODE --gateway URL"
        )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` so that only this user may ever read it (created 0600, not chmod-ed after)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def load_key(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / KEY_FILE
    if not path.exists():
        raise NotPaired(data_dir)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 key")
    return key


def save_key(data_dir: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(data_dir / KEY_FILE, pem)


def public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_challenge(key: Ed25519PrivateKey, nonce: bytes, device_id: str) -> str:
    return devices.encode_key(key.sign(devices.challenge(nonce, device_id)))


def save_pairing(data_dir: Path, pairing: Pairing) -> None:
    _write_private(data_dir / PAIRING_FILE, msgspec.json.format(msgspec.json.encode(pairing)))


def load_pairing(data_dir: Path) -> Pairing:
    path = data_dir / PAIRING_FILE
    if not path.exists():
        raise NotPaired(data_dir)
    return msgspec.json.decode(path.read_bytes(), type=Pairing)


def forget_pairing(data_dir: Path) -> None:
    """After a revocation: the identity is dead; a new pairing makes a new key."""
    for name in (PAIRING_FILE, KEY_FILE):
        (data_dir / name).unlink(missing_ok=True)
