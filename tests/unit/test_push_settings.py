"""The deployment's push settings: the VAPID key made once and kept, or given; who runs the
deployment; which endpoints a subscription may point at."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from adapters.push.config import PushConfig
from adapters.push.vapid import VapidKey, VapidKeyError, b64url, load_or_create, parse_private_key
from moltbot.settings import Settings


def test_the_key_file_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    settings = Settings.load({}, data_dir=str(tmp_path))
    first = settings.push_config()
    key_file = tmp_path / "push" / "vapid-private.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings.push_config().key.application_server_key == first.key.application_server_key
    assert len(first.key.public_raw) == 65 and first.key.public_raw[0] == 4
    assert load_or_create(key_file).application_server_key == first.key.application_server_key


def test_a_given_key_is_used_and_never_shown(tmp_path: Path) -> None:
    made = VapidKey.generate()
    raw = made.private_key.private_numbers().private_value.to_bytes(32, "big")
    settings = Settings.load({"MOLTBOT_VAPID_PRIVATE_KEY": b64url(raw)}, data_dir=str(tmp_path))
    assert settings.push_config().key.application_server_key == made.application_server_key
    assert b64url(raw) not in repr(settings)
    assert not (tmp_path / "push").exists()  # no key file when the key is given
    pem = made.private_pem().decode()
    assert parse_private_key(pem).application_server_key == made.application_server_key


@pytest.mark.parametrize(
    "value", ["not a key", b64url(b"short"), "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----"]
)
def test_a_key_that_cannot_be_used_stops_the_start_naming_the_setting(tmp_path: Path, value: str) -> None:
    with pytest.raises(VapidKeyError, match="MOLTBOT_VAPID_PRIVATE_KEY"):
        Settings.load({"MOLTBOT_VAPID_PRIVATE_KEY": value}, data_dir=str(tmp_path))


def test_the_subject_is_set_or_the_public_https_url_or_the_mail_sender(tmp_path: Path) -> None:
    def subject(**environ: str) -> str:
        return Settings.load(environ, data_dir=str(tmp_path)).push_subject()

    assert subject() == "mailto:no-reply@moltbot.localhost"
    assert subject(MOLTBOT_PUBLIC_URL="https://inbox.example.com/") == "https://inbox.example.com"
    assert subject(MOLTBOT_PUBLIC_URL="http://inbox.example.com") == "mailto:no-reply@moltbot.localhost"
    assert subject(MOLTBOT_VAPID_SUBJECT="mailto:ops@example.com") == "mailto:ops@example.com"
    assert subject(MOLTBOT_MAIL_FROM="Ops <ops@example.com>") == "mailto:ops@example.com"
    assert subject(MOLTBOT_MAIL_FROM="Moltbot") == "mailto:no-reply@moltbot.localhost"  # no address in it
    for wrong in ("ops@example.com", "mailto:ops", "http://example.com"):
        with pytest.raises(ValueError, match="MOLTBOT_VAPID_SUBJECT"):
            subject(MOLTBOT_VAPID_SUBJECT=wrong)


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc:def", True),
        ("https://updates.push.services.mozilla.com/wpush/v2/gAAA", True),
        ("https://wns2-par02p.notify.windows.com/w/?token=BQYAAA", True),
        ("https://web.push.apple.com/QGuQyavXutnMp", True),
        ("http://fcm.googleapis.com/fcm/send/abc", False),  # plain http
        ("https://fcm.googleapis.com.evil.example/x", False),
        ("https://evilfcm.googleapis.com.example/x", False),
        ("https://user@fcm.googleapis.com/x", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("http://127.0.0.1:8000/push/1", False),  # loopback is not a push service unless listed
        ("not a url", False),
        ("https://fcm.googleapis.com/" + "x" * 2100, False),
    ],
)
def test_endpoints_must_be_on_a_browser_push_service(endpoint: str, allowed: bool) -> None:
    config = PushConfig(key=VapidKey.generate(), subject="mailto:ops@example.com")
    assert (config.endpoint_refusal(endpoint) is None) is allowed


def test_plain_http_only_on_a_listed_loopback_address(tmp_path: Path) -> None:
    settings = Settings.load({"MOLTBOT_PUSH_SERVICES": "127.0.0.1, push.example.org"}, data_dir=str(tmp_path))
    config = settings.push_config()
    assert config.services == ("127.0.0.1", "push.example.org")
    assert config.endpoint_refusal("http://127.0.0.1:4444/push/1") is None
    assert config.endpoint_refusal("http://push.example.org/push/1") is not None
    assert config.endpoint_refusal("https://push.example.org/push/1") is None
