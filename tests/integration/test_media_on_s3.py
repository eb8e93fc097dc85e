"""The product with its media in an S3-compatible bucket (moto's server, checking SigV4):
a Telegram photo lands in the bucket under the tenant's prefix and the gateway serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.channels.endpoints import ProviderEndpoints
from adapters.media.s3 import S3Config, S3MediaStore
from adapters.media.store import MediaStore
from tests.fakes.s3_api import FakeS3, fake_s3
from tests.fakes.telegram_api import ADA, FakeTelegram, private_chat
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
async def bucket() -> AsyncIterator[FakeS3]:
    async with fake_s3(buckets=("moltbot-media",)) as server:
        yield server


@pytest.fixture
async def media_store(bucket: FakeS3) -> AsyncIterator[MediaStore]:
    config = S3Config(
        endpoint=bucket.endpoint, bucket="moltbot-media", access_key_id=bucket.allowed.access_key_id,
        secret_access_key=bucket.allowed.secret_access_key, prefix="prod",
    )  # fmt: skip
    async with S3MediaStore(config) as store:
        yield store


@pytest.fixture
def endpoints(tg: FakeTelegram) -> ProviderEndpoints:
    return ProviderEndpoints(telegram_api_base=tg.base_url)


async def test_a_photo_goes_to_the_bucket_and_back(
    api: httpx.AsyncClient, tg: FakeTelegram, bucket: FakeS3
) -> None:
    owner = await _signup(api, "s3-owner@example.com")
    token = tg.add_bot("bucket_bot")
    assert (
        await api.post("/v1/channels/telegram/connect", json={"bot_token": token}, headers=_auth(owner))
    ).status_code == 202
    tg.push_message(private_chat(ADA), ADA, caption="receipt", photo=True)

    async def media_url() -> str | None:
        for conversation in (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]:
            page = await api.get(
                f"/v1/conversations/{conversation['conversation_id']}/messages", headers=_auth(owner)
            )
            for message in page.json()["items"]:
                media: list[dict[str, Any]] = message["media"]
                if media:
                    return str(media[0]["url"])
        return None

    url = await _until(media_url, "the photo", timeout=30)
    served = await api.get(url, headers=_auth(owner))
    assert served.status_code == 200
    [(key, content)] = (await bucket.objects("moltbot-media")).items()
    assert key.startswith(f"prod/{owner['tenant_id']}/md_")
    assert content == served.content
