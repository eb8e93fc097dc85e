"""The vault cipher: AES-256-GCM under named keys, bound to an owner; clear errors that
never carry key bytes or plaintext."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import msgspec
import pytest

from adapters.vault.cipher import (
    CannotDecrypt,
    KeyConfigError,
    Keyring,
    Sealed,
    UnknownKey,
    VaultError,
    add_key_to_file,
    format_key,
    load_keyring,
    parse_keys,
    read_key_file,
)

K1, K2 = bytes(range(32)), bytes(range(32, 64))
OWNER = b"t_1:cn_telegram_1"
SECRET = b'{"bot_token":"123456:ABC-secret"}'


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_round_trip_under_the_current_key() -> None:
    keyring = Keyring({"k1": K1, "k2": K2}, "k2")
    sealed = keyring.encrypt(SECRET, associated=OWNER)
    assert sealed.key_id == "k2"
    assert SECRET not in sealed.ciphertext
    assert keyring.decrypt(sealed, associated=OWNER) == SECRET


def test_a_sealed_secret_survives_json() -> None:
    keyring = Keyring({"k1": K1}, "k1")
    sealed = msgspec.json.decode(msgspec.json.encode(keyring.encrypt(SECRET, associated=OWNER)), type=Sealed)
    assert keyring.decrypt(sealed, associated=OWNER) == SECRET


def test_nonce_differs_per_encryption() -> None:
    keyring = Keyring({"k1": K1}, "k1")
    first, second = (keyring.encrypt(SECRET, associated=OWNER) for _ in range(2))
    assert len(first.nonce) == 12
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_another_owner_cannot_decrypt() -> None:
    keyring = Keyring({"k1": K1}, "k1")
    sealed = keyring.encrypt(SECRET, associated=OWNER)
    with pytest.raises(CannotDecrypt) as caught:
        keyring.decrypt(sealed, associated=b"t_1:cn_telegram_2")
    assert "k1" in str(caught.value)


@pytest.mark.parametrize("field", ["nonce", "ciphertext"])
def test_tampered_data_fails(field: str) -> None:
    keyring = Keyring({"k1": K1}, "k1")
    sealed = keyring.encrypt(SECRET, associated=OWNER)
    value = bytearray(getattr(sealed, field))
    value[-1] ^= 1
    with pytest.raises(CannotDecrypt):
        keyring.decrypt(msgspec.structs.replace(sealed, **{field: bytes(value)}), associated=OWNER)


def test_the_wrong_key_under_the_same_id_fails() -> None:
    sealed = Keyring({"k1": K1}, "k1").encrypt(SECRET, associated=OWNER)
    with pytest.raises(CannotDecrypt):
        Keyring({"k1": K2}, "k1").decrypt(sealed, associated=OWNER)


def test_unknown_key_id_is_named() -> None:
    sealed = Keyring({"old": K1}, "old").encrypt(SECRET, associated=OWNER)
    with pytest.raises(UnknownKey) as caught:
        Keyring({"new": K2}, "new").decrypt(sealed, associated=OWNER)
    message = str(caught.value)
    assert "'old'" in message
    assert "new" in message
    assert isinstance(caught.value, VaultError)


def test_errors_and_repr_never_show_key_bytes() -> None:
    keyring = Keyring({"k1": K1}, "k1")
    assert _b64(K1) not in repr(keyring)
    assert repr(keyring) == "Keyring(current='k1', keys=[k1])"


@pytest.mark.parametrize(
    ("entries", "current", "expected"),
    [
        ("", None, "holds no keys"),
        (f"{_b64(K1)}", None, "entry 1 is not 'id:base64key'"),
        (f"k1:{_b64(K1)},k2", None, "entry 2 is not 'id:base64key'"),
        ("k1:not base64!", None, "key 'k1' is not valid base64"),
        (f"k1:{_b64(K1[:16])}", None, "MOLTBOT_VAULT_KEYS: key 'k1' is 16 bytes; AES-256 needs 32"),
        (f"k1:{_b64(K1)},k1:{_b64(K2)}", None, "names key 'k1' twice"),
        (f"k1:{_b64(K1)},k2:{_b64(K2)}", None, "holds 2 keys: set MOLTBOT_VAULT_KEY_ID"),
        (f"k1:{_b64(K1)}", "k9", "MOLTBOT_VAULT_KEY_ID 'k9' is not in MOLTBOT_VAULT_KEYS (k1)"),
        (f"bad id:{_b64(K1)}", None, "entry 1: a key id must be"),
        # the pair pasted the wrong way round: the key is not echoed as an id
        (f"{_b64(K1)}:k1", None, "entry 1: a key id must be"),
    ],
)
def test_key_parsing_errors_are_clear(entries: str, current: str | None, expected: str) -> None:
    with pytest.raises(KeyConfigError) as caught:
        parse_keys(entries, current)
    assert expected in str(caught.value)
    for key in (K1, K2, K1[:16]):
        assert _b64(key) not in str(caught.value)


def test_parse_keys_with_a_current_id() -> None:
    keyring = parse_keys(f" k1:{_b64(K1)} , k2:{_b64(K2)} ,", "k1")
    assert keyring.key_ids == ["k1", "k2"]
    assert keyring.current_id == "k1"
    assert parse_keys(f"only:{_b64(K2)}", None).current_id == "only"


def test_generated_keys_format_and_parse_back() -> None:
    key_id, key = Keyring.generate_key()
    assert len(key) == 32
    keyring = parse_keys(format_key(key_id, key), key_id)
    sealed = keyring.encrypt(SECRET, associated=OWNER)
    assert Keyring({key_id: key}, key_id).decrypt(sealed, associated=OWNER) == SECRET
    assert Keyring.generate_key()[1] != key


def test_environment_keys_win_over_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "vault" / "keys.json"
    keyring = load_keyring(keys=f"k1:{_b64(K1)}", current=None, key_file=key_file)
    assert keyring.key_ids == ["k1"]
    assert not key_file.exists()
    with pytest.raises(KeyConfigError, match="set MOLTBOT_VAULT_KEYS too"):
        load_keyring(keys=None, current="k1", key_file=key_file)


def test_the_key_file_is_created_private_on_first_use_and_kept(tmp_path: Path) -> None:
    key_file = tmp_path / "vault" / "keys.json"
    first = load_keyring(keys=None, current=None, key_file=key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    again = load_keyring(keys=None, current=None, key_file=key_file)
    assert again.key_ids == first.key_ids == [first.current_id]
    sealed = first.encrypt(SECRET, associated=OWNER)
    assert again.decrypt(sealed, associated=OWNER) == SECRET


def test_adding_a_key_to_the_file_makes_it_current_and_keeps_the_old(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"
    old = load_keyring(keys=None, current=None, key_file=key_file)
    sealed = old.encrypt(SECRET, associated=OWNER)
    new_id = add_key_to_file(key_file)
    rotated = read_key_file(key_file)
    assert rotated.current_id == new_id != old.current_id
    assert rotated.key_ids == sorted([old.current_id, new_id])
    assert rotated.decrypt(sealed, associated=OWNER) == SECRET
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["keys.json"]  # nothing left aside


def test_a_broken_key_file_is_refused_clearly(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"
    key_file.write_text('{"current": "k1", "keys": {"k1": "c2hvcnQ="}}')
    with pytest.raises(KeyConfigError, match=r"keys.json: key 'k1' is 5 bytes"):
        read_key_file(key_file)
    key_file.write_text('{"keys": {}}')
    with pytest.raises(KeyConfigError, match="not a vault key file"):
        read_key_file(key_file)
    key_file.write_text(f'{{"current": "k2", "keys": {{"k1": "{_b64(K1)}"}}}}')
    with pytest.raises(KeyConfigError, match=r"current key 'k2' is not among the keys \(k1\)"):
        read_key_file(key_file)
