"""Settings never show their secrets when printed or logged."""

from __future__ import annotations

from moltbot.settings import Settings

SECRETS = {
    "MOLTBOT_ANTHROPIC_API_KEY": "sk-ant-api03-very-secret",
    "MOLTBOT_VAULT_KEYS": "k1:c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5YWJjZGVm",
    "MOLTBOT_DATABASE_URL": "postgresql://moltbot:db-password@db.internal/moltbot",
    "MOLTBOT_SLACK_CLIENT_ID": "123.456",
    "MOLTBOT_SLACK_CLIENT_SECRET": "slack-client-secret",
    "MOLTBOT_SLACK_SIGNING_SECRET": "slack-signing-secret",
    "MOLTBOT_MEDIA_S3_ENDPOINT": "https://s3.example",
    "MOLTBOT_MEDIA_S3_BUCKET": "media",
    "MOLTBOT_MEDIA_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "MOLTBOT_MEDIA_S3_SECRET_ACCESS_KEY": "s3-secret-access-key",
    "MOLTBOT_OPS_TOKEN": "ops-bearer-token",
}


def test_repr_hides_every_secret_and_keeps_the_rest() -> None:
    settings = Settings.load(SECRETS)
    shown = repr(settings)
    for name in (
        "sk-ant-api03-very-secret",
        "c2VjcmV0",
        "db-password",
        "slack-client-secret",
        "slack-signing-secret",
        "s3-secret-access-key",
        "ops-bearer-token",
    ):
        assert name not in shown
    assert "gateway_port=8000" in shown
    assert "anthropic_api_key=***" in shown
    assert f"{settings}" == shown
