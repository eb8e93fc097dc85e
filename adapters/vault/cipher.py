"""Encryption of channel credentials at rest: AES-256-GCM under named, rotatable keys.

A ciphertext names the key that sealed it (``key_id``), so keys can be rotated without
a flag day: new secrets are sealed under the current key while older ones still open
under theirs until ``moltbot vault rotate`` re-seals them. The associated data (the
owner, ``<tenant_id>:<connection_id>``) is authenticated but not stored: a ciphertext
copied onto another connection's row does not decrypt.

Keys come from ``MOLTBOT_VAULT_KEYS`` (``id:base64key,…``) and ``MOLTBOT_VAULT_KEY_ID``
(the current one; may be left out when one key is listed). Without them, the local key
file ``<data dir>/vault/keys.json`` (mode 0600, created on first use) holds the keys;
``moltbot vault new-key`` adds one there and makes it current. Error messages name key
ids, never key bytes or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, random per seal: safe for up to 2**32 seals per key (NIST SP 800-38D)
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BAD_ID = "a key id must be 1-64 letters, digits, '_' or '-'"


class VaultError(Exception):
    """A vault key or ciphertext problem; the message never holds key bytes or plaintext."""


class KeyConfigError(VaultError):
    """The configured keys cannot be used (malformed list, wrong length, no current key)."""


class UnknownKey(VaultError):
    """A ciphertext was sealed under a key this keyring does not hold."""


class CannotDecrypt(VaultError):
    """Authentication failed: wrong key, tampered data or another owner's ciphertext."""


class Sealed(msgspec.Struct, frozen=True):
    """One encrypted secret: the key it was sealed under, its nonce, ciphertext with GCM tag."""

    key_id: str
    nonce: bytes  # base64 in JSON
    ciphertext: bytes


class KeyFile(msgspec.Struct, kw_only=True):
    """The local key file: ``{"current": id, "keys": {id: base64key}}``."""

    current: str
    keys: dict[str, str]


class Keyring:
    """Named 32-byte keys and which one seals new secrets."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        for key_id, key in keys.items():
            _check_key(key_id, key)
        if current not in keys:
            raise KeyConfigError(f"current key {current!r} is not among the keys ({_ids(keys)})")
        self._keys = dict(keys)
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_id = current

    def __repr__(self) -> str:  # never the key bytes
        return f"Keyring(current={self.current_id!r}, keys=[{_ids(self._keys)}])"

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def encrypt(self, plaintext: bytes, *, associated: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aead[self.current_id].encrypt(nonce, plaintext, associated)
        return Sealed(key_id=self.current_id, nonce=nonce, ciphertext=ciphertext)

    def decrypt(self, sealed: Sealed, *, associated: bytes) -> bytes:
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise UnknownKey(
                f"sealed under key {sealed.key_id!r}, which is not configured (have: {_ids(self._keys)})"
            )
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, associated)
        except (InvalidTag, ValueError):  # ValueError: a nonce of the wrong length
            raise CannotDecrypt(
                f"cannot decrypt under key {sealed.key_id!r}: wrong key, tampered data or another owner"
            ) from None

    def with_key(self, key_id: str, key: bytes, *, current: bool = True) -> Keyring:
        """A keyring with one more key, by default the current one."""
        if key_id in self._keys:
            raise KeyConfigError(f"key {key_id!r} already exists")
        return Keyring({**self._keys, key_id: key}, key_id if current else self.current_id)

    @staticmethod
    def generate_key() -> tuple[str, bytes]:
        """A new (key_id, key); the id tells when it was made, so ids sort by age."""
        key_id = f"k{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
        return key_id, AESGCM.generate_key(bit_length=KEY_BYTES * 8)

    def to_key_file(self) -> KeyFile:
        keys = {key_id: base64.b64encode(key).decode() for key_id, key in self._keys.items()}
        return KeyFile(current=self.current_id, keys=keys)


def format_key(key_id: str, key: bytes) -> str:
    """One ``id:base64key`` entry of ``MOLTBOT_VAULT_KEYS``."""
    _check_key(key_id, key)
    return f"{key_id}:{base64.b64encode(key).decode()}"


def parse_keys(entries: str, current: str | None) -> Keyring:
    """The keyring of ``MOLTBOT_VAULT_KEYS`` / ``MOLTBOT_VAULT_KEY_ID``."""
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(entries.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        key_id, separator, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not separator:
            raise KeyConfigError(f"MOLTBOT_VAULT_KEYS entry {position} is not 'id:base64key'")
        if not _KEY_ID.fullmatch(key_id):
            raise KeyConfigError(f"MOLTBOT_VAULT_KEYS entry {position}: {_BAD_ID}")
        if key_id in keys:
            raise KeyConfigError(f"MOLTBOT_VAULT_KEYS names key {key_id!r} twice")
        keys[key_id] = _decode_key(key_id, encoded.strip(), where="MOLTBOT_VAULT_KEYS")
    if not keys:
        raise KeyConfigError("MOLTBOT_VAULT_KEYS holds no keys")
    if current is None:
        if len(keys) > 1:
            raise KeyConfigError(f"MOLTBOT_VAULT_KEYS holds {len(keys)} keys: set MOLTBOT_VAULT_KEY_ID")
        current = next(iter(keys))
    if current not in keys:
        raise KeyConfigError(f"MOLTBOT_VAULT_KEY_ID {current!r} is not in MOLTBOT_VAULT_KEYS ({_ids(keys)})")
    return Keyring(keys, current)


def load_keyring(*, keys: str | None, current: str | None, key_file: Path) -> Keyring:
    """The configured keyring: ``keys``/``current`` (the environment) if given, else the key file.

    The key file is created with one new key on first use.
    """
    if keys:
        return parse_keys(keys, current)
    if current:
        raise KeyConfigError("MOLTBOT_VAULT_KEY_ID is set: set MOLTBOT_VAULT_KEYS too")
    if not key_file.exists():
        _create_key_file(key_file)
    return read_key_file(key_file)


def read_key_file(path: Path) -> Keyring:
    try:
        content = msgspec.json.decode(path.read_bytes(), type=KeyFile)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        # msgspec names the field at fault, never its value
        raise KeyConfigError(f"{path}: not a vault key file ({exc})") from None
    keys = {key_id: _decode_key(key_id, encoded, where=str(path)) for key_id, encoded in content.keys.items()}
    return Keyring(keys, content.current)


def add_key_to_file(path: Path) -> str:
    """Add a new key to the key file (creating it if needed), make it current; return its id."""
    keyring = read_key_file(path) if path.exists() else None
    key_id, key = Keyring.generate_key()
    keyring = keyring.with_key(key_id, key) if keyring else Keyring({key_id: key}, key_id)
    _write_key_file(path, keyring, replace=True)
    return key_id


def _create_key_file(path: Path) -> None:
    key_id, key = Keyring.generate_key()
    with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
        _write_key_file(path, Keyring({key_id: key}, key_id), replace=False)


def _write_key_file(path: Path, keyring: Keyring, *, replace: bool) -> None:
    """Mode 0600 from the start, and never seen half-written: written aside, then moved in
    (``replace``) or hard-linked in (creation: fails if the file appeared meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    content = json.dumps(msgspec.to_builtins(keyring.to_key_file()), indent=2).encode() + b"\n"
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(aside, path)
        else:
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)


def _decode_key(key_id: str, encoded: str, *, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{where}: key {key_id!r} is not valid base64") from None
    _check_key(key_id, key, where=where)
    return key


def _check_key(key_id: str, key: bytes, *, where: str = "") -> None:
    prefix = f"{where}: " if where else ""
    if not _KEY_ID.fullmatch(key_id):
        raise KeyConfigError(prefix + _BAD_ID)  # not the id itself: it may be a key pasted in its place
    if len(key) != KEY_BYTES:
        raise KeyConfigError(f"{prefix}key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")


def _ids(keys: Mapping[str, bytes]) -> str:
    return ", ".join(sorted(keys)) or "none"
