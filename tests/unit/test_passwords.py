"""Password hashes (gateway/passwords.py): argon2id for new ones, scrypt ones still accepted
and marked for rehashing, and a dummy hash that matches nothing."""

from __future__ import annotations

import base64
import hashlib
import os

from gateway.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password


def test_new_hashes_are_argon2id_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not needs_rehash(stored)
    assert hash_password("correct horse battery") != stored  # salted


def test_scrypt_hashes_verify_and_ask_to_be_rehashed() -> None:
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old password 1", salt=salt, n=2**14, r=8, p=1, maxmem=64 * 1024 * 1024)
    stored = f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("old password 1", stored)
    assert not verify_password("old password 2", stored)
    assert needs_rehash(stored)


def test_malformed_hashes_match_nothing() -> None:
    for stored in ("", "scrypt$1$2", "$argon2id$garbage", "plain text"):
        assert not verify_password("anything at all", stored)
        assert needs_rehash(stored)
    assert not verify_password("", DUMMY_HASH)
    assert not verify_password("no account has this password", DUMMY_HASH)
