"""S3MediaStore against a fake S3 on 127.0.0.1 (tests/fakes/s3_api.py) that verifies each
request's SigV4 signature and body hash with its own implementation of the algorithm.

Round trips keep keys with slashes, spaces and non-ASCII intact; a missing object is
None / False but a missing bucket is an error; a wrong secret, a skewed clock, a wrong
region or a server failure raise MediaStoreError naming S3's error code and never the
secret; the fake itself refuses a tampered body or a tampered signature."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapters.media.s3 import MediaStoreError, S3Config, S3MediaStore, sign_v4
from adapters.media.store import MediaStore, media_key
from tests.fakes.s3_api import FakeS3, fake_s3

ACCESS_KEY_ID = "AKIAMOLTBOTTEST00001"
SECRET = "s3cr3t/Key+WithSymbols/0123456789abcdefXYZ"
WRONG_SECRET = "not-the-s3cr3t/0123456789abcdefghijklmnopq"
BUCKET = "media"


@pytest.fixture
async def fake() -> AsyncIterator[FakeS3]:
    async with fake_s3(ACCESS_KEY_ID, SECRET) as server:
        yield server


def _config(fake: FakeS3, **changes: str) -> S3Config:
    fields = {
        "endpoint": fake.endpoint,
        "bucket": BUCKET,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET,
    }
    return S3Config(**(fields | changes))


@pytest.fixture
async def store(fake: FakeS3) -> AsyncIterator[S3MediaStore]:
    async with S3MediaStore(_config(fake)) as media:
        yield media


def _assert_secret_absent(error: MediaStoreError, secret: str = SECRET) -> None:
    for text in (str(error), repr(error), repr(error.args), str(error.detail), str(error.code)):
        assert secret not in text
        assert secret.split("/")[0] not in text


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
    assert fake.objects[BUCKET] == contents  # stored under exactly the keys given, decoded
    paths = {r.raw_path for r in fake.requests if r.method == "PUT"}
    assert f"/{BUCKET}/t_1/photos/2024/holiday%20at%20the%20beach.jpg" in paths
    assert (
        f"/{BUCKET}/t_%C3%BC/%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E6%96%87%E4%BB%B6%20%E2%80%94%20r%C3%A9sum%C3%A9.pdf"
        in paths
    )
    assert f"/{BUCKET}/t_1/odd%20chars/a%2Bb%3Dc%26d%3Fe%23f%25g%21h%27%28i%29%2A.bin" in paths


async def test_overwrite_and_empty_object(fake: FakeS3, store: S3MediaStore) -> None:
    await store.put("t_1/x", b"first")
    await store.put("t_1/x", b"second")
    await store.put("t_1/empty", b"")
    assert await store.get("t_1/x") == b"second"
    assert await store.get("t_1/empty") == b""
    assert await store.exists("t_1/empty") is True


async def test_missing_key_is_none_and_false(fake: FakeS3, store: S3MediaStore) -> None:
    assert await store.get("t_1/never stored") is None
    assert await store.exists("t_1/never stored") is False
    assert [(r.method, r.status, r.error) for r in fake.requests] == [
        ("GET", 404, "NoSuchKey"),
        ("HEAD", 404, "NoSuchKey"),
    ]
    assert all(r.signature_valid for r in fake.requests)


async def test_the_fake_saw_signed_requests(fake: FakeS3, store: S3MediaStore) -> None:
    content = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    await store.put("t_1/a b.png", content)
    await store.get("t_1/a b.png")
    await store.exists("t_1/a b.png")
    assert [r.method for r in fake.requests] == ["PUT", "GET", "HEAD"]
    today = datetime.now(UTC).strftime("%Y%m%d")
    for seen in fake.requests:
        assert seen.signature_valid
        assert seen.status == 200
        authorization = seen.headers["authorization"]
        assert authorization.startswith(
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{today}/us-east-1/s3/aws4_request,SignedHeaders="
        )
        signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
        assert {"host", "x-amz-content-sha256", "x-amz-date"} <= set(signed)
        assert seen.headers["x-amz-content-sha256"] == hashlib.sha256(seen.body).hexdigest()
        assert SECRET not in str(seen.headers)
    put = fake.requests[0]
    assert put.body == content
    assert put.headers["content-type"] == "application/octet-stream"
    assert "content-type" in put.headers["authorization"]


async def test_ten_concurrent_puts(fake: FakeS3, store: S3MediaStore) -> None:
    contents = {f"t_1/concurrent/{n} é": bytes([n]) * (1000 * n + 1) for n in range(10)}
    async with asyncio.TaskGroup() as tasks:
        for key, content in contents.items():
            tasks.create_task(store.put(key, content))
    assert fake.objects[BUCKET] == contents
    assert len(fake.requests) == 10
    assert all(r.signature_valid and r.status == 200 for r in fake.requests)
    async with asyncio.TaskGroup() as tasks:
        reads = {key: tasks.create_task(store.get(key)) for key in contents}
    assert {key: read.result() for key, read in reads.items()} == contents


async def test_a_wrong_secret_is_signature_does_not_match(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, secret_access_key=WRONG_SECRET)) as store:
        with pytest.raises(MediaStoreError, match="SignatureDoesNotMatch") as put_error:
            await store.put("t_1/x", b"data")
        with pytest.raises(MediaStoreError, match="SignatureDoesNotMatch") as get_error:
            await store.get("t_1/x")
        with pytest.raises(MediaStoreError) as head_error:  # a HEAD answer has no body: status only
            await store.exists("t_1/x")
    for error in (put_error.value, get_error.value, head_error.value):
        assert error.status == 403
        _assert_secret_absent(error, WRONG_SECRET)
        _assert_secret_absent(error, SECRET)
    assert put_error.value.code == "SignatureDoesNotMatch"
    assert head_error.value.code is None
    assert fake.objects[BUCKET] == {}
    assert not any(r.signature_valid for r in fake.requests)


async def test_an_unknown_access_key(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, access_key_id="AKIAUNKNOWN")) as store:
        with pytest.raises(MediaStoreError, match="InvalidAccessKeyId") as error:
            await store.get("t_1/x")
    _assert_secret_absent(error.value)


async def test_a_missing_bucket_is_an_error_not_a_missing_file(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, bucket="no-such-bucket")) as store:
        with pytest.raises(MediaStoreError, match="NoSuchBucket") as error:
            await store.get("t_1/x")
        with pytest.raises(MediaStoreError, match="NoSuchBucket"):
            await store.put("t_1/x", b"data")
    assert error.value.status == 404


async def test_the_prefix_is_a_folder_in_the_bucket(fake: FakeS3) -> None:
    async with S3MediaStore(_config(fake, prefix="prod/media")) as store:
        await store.put("t_1/a b", b"data")
        assert await store.get("t_1/a b") == b"data"
    assert fake.objects[BUCKET] == {"prod/media/t_1/a b": b"data"}


async def test_a_skewed_clock_and_a_wrong_region_are_refused(fake: FakeS3) -> None:
    def late() -> datetime:
        return datetime.now(UTC) - timedelta(hours=1)

    async with S3MediaStore(_config(fake), clock=late) as store:
        with pytest.raises(MediaStoreError, match="RequestTimeTooSkewed"):
            await store.put("t_1/x", b"data")
    async with S3MediaStore(_config(fake, region="eu-west-1")) as store:
        with pytest.raises(MediaStoreError, match="AuthorizationHeaderMalformed"):
            await store.put("t_1/x", b"data")


async def test_server_errors_carry_the_s3_code(fake: FakeS3, store: S3MediaStore) -> None:
    fake.fail(503, "SlowDown", "Please reduce your request rate.", times=2)
    with pytest.raises(MediaStoreError, match="SlowDown Please reduce your request rate") as error:
        await store.put("t_1/x", b"data")
    assert (error.value.status, error.value.code) == (503, "SlowDown")
    with pytest.raises(MediaStoreError, match="503"):
        await store.exists("t_1/x")
    await store.put("t_1/x", b"data")  # the failures are used up
    assert await store.get("t_1/x") == b"data"


async def test_an_unreachable_endpoint_is_a_media_store_error() -> None:
    async with fake_s3(ACCESS_KEY_ID, SECRET) as gone:
        endpoint = gone.endpoint
    config = S3Config(endpoint=endpoint, bucket=BUCKET, access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET)
    async with S3MediaStore(config) as store:
        with pytest.raises(MediaStoreError, match="ConnectError") as error:
            await store.get("t_1/x")
    _assert_secret_absent(error.value)


async def test_a_shared_client_is_left_open(fake: FakeS3) -> None:
    async with httpx.AsyncClient() as client:
        async with S3MediaStore(_config(fake), client=client) as store:
            await store.put("t_1/x", b"data")
        assert not client.is_closed


# --- the fake's own checks, with requests built by hand --------------------------------


def _signed_put(
    fake: FakeS3, key: str, declared: bytes, *, secret: str = SECRET
) -> tuple[str, dict[str, str]]:
    url = f"{fake.endpoint}/{BUCKET}/{key}"
    headers = {"content-type": "application/octet-stream"}
    headers |= sign_v4(
        "PUT",
        url,
        headers,
        hashlib.sha256(declared).hexdigest(),
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=secret,
        region="us-east-1",
        now=datetime.now(UTC),
    )
    return url, headers


async def test_the_fake_refuses_a_body_that_does_not_match_its_hash(fake: FakeS3) -> None:
    url, headers = _signed_put(fake, "t_1/x", b"the signed body")
    async with httpx.AsyncClient() as client:
        response = await client.put(url, content=b"a tampered body", headers=headers)
    assert response.status_code == 400
    assert "<Code>XAmzContentSHA256Mismatch</Code>" in response.text
    assert fake.objects[BUCKET] == {}


async def test_the_fake_refuses_a_tampered_hash_header_or_signature(fake: FakeS3) -> None:
    tampered_body = b"a tampered body"
    url, headers = _signed_put(fake, "t_1/x", b"the signed body")
    async with httpx.AsyncClient() as client:
        rehashed = headers | {"x-amz-content-sha256": hashlib.sha256(tampered_body).hexdigest()}
        response = await client.put(url, content=tampered_body, headers=rehashed)
        assert response.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
        assert "<CanonicalRequest>PUT\n/media/t_1/x\n" in response.text

        other_key = await client.put(
            url.replace("t_1/x", "t_1/y"), content=b"the signed body", headers=headers
        )
        assert other_key.status_code == 403

        unsigned = await client.put(
            url, content=b"the signed body", headers=headers | {"x-amz-acl": "public-read"}
        )
        assert unsigned.status_code == 403
        assert "not signed" in unsigned.text

        anonymous = await client.get(url)
        assert anonymous.status_code == 403
        assert "<Code>AccessDenied</Code>" in anonymous.text

        good = await client.put(url, content=b"the signed body", headers=headers)
        assert good.status_code == 200
    assert fake.objects[BUCKET] == {"t_1/x": b"the signed body"}
