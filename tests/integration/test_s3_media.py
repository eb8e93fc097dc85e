"""S3MediaStore against moto's S3 server on 127.0.0.1 (tests/fakes/s3_api.py), with moto's
IAM authentication on, so every request's SigV4 signature is checked by moto.

Round trips keep keys with slashes, spaces and non-ASCII intact; a missing object is
None / False but a missing bucket is an error; a wrong secret, an unknown access key, a
user without permission or an unreachable endpoint raise MediaStoreError naming the
cause and never the secret."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.media.s3 import MediaStoreError, S3Config, S3MediaStore
from adapters.media.store import MediaStore, media_key
from tests.fakes.s3_api import FakeS3, fake_s3

BUCKET = "media"
WRONG_SECRET = "not-the-s3cr3t/0123456789abcdefghijklmnopq"


@pytest.fixture
async def fake() -> AsyncIterator[FakeS3]:
    async with fake_s3(buckets=(BUCKET,)) as server:
        yield server


def _config(fake: FakeS3, **changes: str) -> S3Config:
    fields = {
        "endpoint": fake.endpoint,
        "bucket": BUCKET,
        "access_key_id": fake.allowed.access_key_id,
        "secret_access_key": fake.allowed.secret_access_key,
    }
    return S3Config(**(fields | changes))


@pytest.fixture
async def store(fake: FakeS3) -> AsyncIterator[S3MediaStore]:
    async with S3MediaStore(_config(fake)) as media:
        yield media


def _assert_secret_absent(error: MediaStoreError, secret: str) -> None:
    for text in (str(error), repr(error), repr(error.args), str(error.detail), str(error.code)):
        assert secret not in text


KEYS = [
    media_key("t_1", "md_01J9ZQ"),
    "t_1/photos/2024/holiday at the beach.jpg",
    "t_ü/Ünïcødé 文件 — résumé.pdf",
    "t_1/odd chars/a+b=c&d?e#f%g!h'(i)*.bin",
]


async def test_round_trip_keeps_keys_and_bytes(fake: FakeS3, store: S3MediaStore) -> None:
    conforming: MediaStore = store  # the Protocol is satisfied
    contents = {key: f"content of {key}".encode() + bytes(range(256)) for key in KEYS}
    for key, content in contents.items():
        await conforming.put(key, content)
    for key, content in contents.items():
        assert await conforming.get(key) == content
        assert await conforming.exists(key) is True
    assert await fake.objects(BUCKET) == contents  # stored under exactly the keys given


async def test_an_object_is_stored_as_octet_stream(fake: FakeS3, store: S3MediaStore) -> None:
    content = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    await store.put("t_1/a b.png", content)
    async with fake.client() as s3:
        head = await s3.head_object(Bucket=BUCKET, Key="t_1/a b.png")
    assert (head["ContentType"], head["ContentLength"]) == ("application/octet-stream", len(content))


async def test_overwrite_and_empty_object(store: S3MediaStore) -> None:
    await store.put("t_1/x", b"first")
    await store.put("t_1/x", b"second")
    await store.put("t_1/empty", b"")
    assert await store.get("t_1/x") == b"second"
    assert await store.get("t_1/empty") == b""
    assert await store.exists("t_1/empty") is True


async def test_missing_key_is_none_and_false(store: S3MediaStore) -> None:
    assert await store.get("t_1/never stored") is None
    assert await store.exists("t_1/never stored") is False


async def test_ten_concurrent_puts(fake: FakeS3, store: S3MediaStore) -> None:
    contents = {f"t_1/concurrent/{n} é": bytes([n]) * (1000 * n + 1) for n in range(10)}
    async with asyncio.TaskGroup() as tasks:
        for key, content in contents.items():
            tasks.create_task(store.put(key, content))
    assert await fake.objects(BUCKET) == contents
    async with asyncio.TaskGroup() as tasks:
        reads = {key: tasks.create_task(store.get(key)) for key in contents}
    assert {key: read.result() for key, read in reads.items()} == contents


async def test_a_wrong_secret_is_signature_does_not_match(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, secret_access_key=WRONG_SECRET)) as store:
        with pytest.raises(MediaStoreError, match=r"SignatureDoesNotMatch.*SECRET_ACCESS_KEY") as put_error:
            await store.put("t_1/x", b"data")
        with pytest.raises(MediaStoreError, match="SignatureDoesNotMatch") as get_error:
            await store.get("t_1/x")
        with pytest.raises(MediaStoreError, match="403") as head_error:  # a HEAD answer has no body
            await store.exists("t_1/x")
    for error in (put_error.value, get_error.value, head_error.value):
        assert error.status == 403
        _assert_secret_absent(error, WRONG_SECRET)
        _assert_secret_absent(error, fake.allowed.secret_access_key)
    assert put_error.value.code == "SignatureDoesNotMatch"
    assert head_error.value.code is None
    assert await fake.objects(BUCKET) == {}


async def test_an_unknown_access_key(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, access_key_id="AKIAUNKNOWN")) as store:
        with pytest.raises(MediaStoreError, match=r"InvalidAccessKeyId.*ACCESS_KEY_ID") as error:
            await store.get("t_1/x")
    assert error.value.status == 403
    _assert_secret_absent(error.value, fake.allowed.secret_access_key)


async def test_a_user_without_permission_is_access_denied(fake: FakeS3) -> None:
    config = _config(
        fake,
        access_key_id=fake.unprivileged.access_key_id,
        secret_access_key=fake.unprivileged.secret_access_key,
    )
    async with S3MediaStore(config) as store:
        with pytest.raises(MediaStoreError, match=r"AccessDenied.*s3:GetObject") as error:
            await store.put("t_1/x", b"data")
    assert (error.value.status, error.value.code) == (403, "AccessDenied")
    _assert_secret_absent(error.value, fake.unprivileged.secret_access_key)
    assert await fake.objects(BUCKET) == {}


async def test_a_missing_bucket_is_an_error_not_a_missing_file(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, bucket="no-such-bucket")) as store:
        with pytest.raises(MediaStoreError, match=r"NoSuchBucket.*MOLTBOT_MEDIA_S3_BUCKET") as error:
            await store.get("t_1/x")
        with pytest.raises(MediaStoreError, match="NoSuchBucket"):
            await store.put("t_1/x", b"data")
        assert await store.exists("t_1/x") is False  # a HEAD answer cannot tell the two apart
    assert (error.value.status, error.value.code) == (404, "NoSuchBucket")


async def test_the_prefix_is_a_folder_in_the_bucket(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, prefix="prod/media")) as store:
        await store.put("t_1/a b", b"data")
        assert await store.get("t_1/a b") == b"data"
    assert await fake.objects(BUCKET) == {"prod/media/t_1/a b": b"data"}


async def test_a_dot_segment_key_is_refused_before_any_request(store: S3MediaStore) -> None:
    with pytest.raises(ValueError, match=r"'\.\.' segment"):
        await store.put("t_1/../t_2/x", b"data")


async def test_an_unreachable_endpoint_is_a_media_store_error() -> None:
    async with fake_s3() as gone:
        endpoint, credentials = gone.endpoint, gone.allowed
    config = S3Config(
        endpoint=endpoint,
        bucket=BUCKET,
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
    )
    async with S3MediaStore(config) as store:
        with pytest.raises(MediaStoreError, match=f"cannot reach {endpoint}") as error:
            await store.get("t_1/x")
    assert error.value.status is None
    _assert_secret_absent(error.value, credentials.secret_access_key)


async def test_a_store_never_used_closes_without_a_server() -> None:
    config = S3Config(
        endpoint="http://127.0.0.1:9", bucket=BUCKET, access_key_id="AKIA", secret_access_key="secret"
    )
    store = S3MediaStore(config)  # the client is made on first use, not here
    await store.aclose()


async def test_deleting_a_tenant_deletes_its_objects_only(store: S3MediaStore) -> None:
    for n in range(3):
        await store.put(f"t_gone/m{n}", b"erase me")
    await store.put("t_kept/m0", b"keep me")
    assert await store.delete_tenant("t_gone") == 3
    assert [await store.exists(f"t_gone/m{n}") for n in range(3)] == [False, False, False]
    assert await store.get("t_kept/m0") == b"keep me"
    assert await store.delete_tenant("t_gone") == 0


async def test_deleting_named_objects_leaves_the_others(store: S3MediaStore) -> None:
    for n in range(3):
        await store.put(f"t_old/m{n}", b"expired")
    assert await store.delete(["t_old/m0", "t_old/m2"]) == 2
    assert [await store.exists(f"t_old/m{n}") for n in range(3)] == [False, True, False]
    assert await store.delete([]) == 0
