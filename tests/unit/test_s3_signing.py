"""AWS Signature Version 4 as adapters/media/s3.py computes it, checked against the worked
examples of the Amazon S3 API reference ("Signature Calculations for the Authorization
Header: Transferring Payload in a Single Chunk"): GET Object, PUT Object and
ListObjects, with the canonical request and string to sign of the GET example asserted
line by line. Also: how keys and URLs are encoded, and that the secret never shows."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.media.s3 import (
    EMPTY_SHA256,
    S3Config,
    S3MediaStore,
    canonical_request,
    encode_key,
    sign_v4,
    signing_key,
)

# The example credentials and date of the AWS documentation.
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_DATE = datetime(2013, 5, 24, tzinfo=UTC)
HOST = "https://examplebucket.s3.amazonaws.com"
CREDENTIALS = {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1"}


def _signature(headers: dict[str, str]) -> str:
    return headers["Authorization"].rpartition("Signature=")[2]


def test_empty_payload_hash() -> None:
    assert EMPTY_SHA256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_aws_example_get_object_step_by_step() -> None:
    """GET /test.txt with ``Range: bytes=0-9``: each intermediate value of the documentation."""
    headers = {
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    request, signed_headers = canonical_request("GET", f"{HOST}/test.txt", headers, EMPTY_SHA256)
    assert request == (
        "GET\n"
        "/test.txt\n"
        "\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "range:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n"
        "\n"
        "host;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert signed_headers == "host;range;x-amz-content-sha256;x-amz-date"
    request_hash = hashlib.sha256(request.encode()).hexdigest()
    assert request_hash == "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"

    string_to_sign = f"AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n{request_hash}"
    # The signing key, derived here by hand rather than through signing_key().
    key = ("AWS4" + SECRET).encode()
    for part in ("20130524", "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    assert signing_key(SECRET, "20130524", "us-east-1", "s3") == key
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_aws_example_get_object_through_sign_v4() -> None:
    added = sign_v4(
        "GET", f"{HOST}/test.txt", {"Range": "bytes=0-9"}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS
    )
    assert added == {
        "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": EMPTY_SHA256,
        "Authorization": (
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        ),
    }


def test_aws_example_put_object() -> None:
    """PUT /test$file.text ("$" encoded as %24), a Date and a storage-class header, a signed body."""
    body = b"Welcome to Amazon S3."
    body_sha256 = hashlib.sha256(body).hexdigest()
    assert body_sha256 == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"}
    added = sign_v4("PUT", f"{HOST}/test$file.text", headers, body_sha256, now=EXAMPLE_DATE, **CREDENTIALS)
    assert (
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        in added["Authorization"]
    )
    assert _signature(added) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_aws_example_list_objects_sorts_the_query() -> None:
    """GET /?max-keys=2&prefix=J; the query given in the other order signs the same."""
    for url in (f"{HOST}/?max-keys=2&prefix=J", f"{HOST}/?prefix=J&max-keys=2"):
        added = sign_v4("GET", url, {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS)
        assert _signature(added) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_a_raw_and_an_encoded_url_sign_the_same() -> None:
    raw = sign_v4("PUT", "http://h/b/a b/é!.jpg", {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS)
    encoded = sign_v4(
        "PUT", "http://h/b/a%20b/%C3%A9%21.jpg", {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS
    )
    assert raw == encoded
    request, _ = canonical_request("PUT", "http://h/b/a b/é!.jpg", {}, EMPTY_SHA256)
    assert request.splitlines()[1] == "/b/a%20b/%C3%A9%21.jpg"


def test_host_keeps_a_port_but_not_the_default_one() -> None:
    request, _ = canonical_request("GET", "http://127.0.0.1:9000/b/k", {}, EMPTY_SHA256)
    assert "host:127.0.0.1:9000\n" in request
    for url in ("https://S3.example.com:443/b/k", "https://s3.example.com/b/k"):
        request, _ = canonical_request("GET", url, {}, EMPTY_SHA256)
        assert "host:s3.example.com\n" in request


def test_header_names_are_lowercased_sorted_and_values_trimmed() -> None:
    request, signed = canonical_request(
        "get", "http://h/b/k", {"X-Amz-Meta-B": "  two   spaces ", "Content-Type": "text/plain"}, EMPTY_SHA256
    )
    assert signed == "content-type;host;x-amz-meta-b"
    assert request.splitlines()[:6] == [
        "GET",
        "/b/k",
        "",
        "content-type:text/plain",
        "host:h",
        "x-amz-meta-b:two spaces",
    ]


def test_the_signature_depends_on_each_input() -> None:
    base = sign_v4("GET", "http://h/b/k", {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS)
    variants = [
        sign_v4("GET", "http://h/b/k2", {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS),
        sign_v4("PUT", "http://h/b/k", {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS),
        sign_v4("GET", "http://h/b/k", {}, "0" * 64, now=EXAMPLE_DATE, **CREDENTIALS),
        sign_v4(
            "GET", "http://h/b/k", {}, EMPTY_SHA256, now=EXAMPLE_DATE + timedelta(seconds=1), **CREDENTIALS
        ),
        sign_v4(
            "GET",
            "http://h/b/k",
            {},
            EMPTY_SHA256,
            now=EXAMPLE_DATE,
            **(CREDENTIALS | {"region": "eu-west-1"}),
        ),
        sign_v4(
            "GET",
            "http://h/b/k",
            {},
            EMPTY_SHA256,
            now=EXAMPLE_DATE,
            **(CREDENTIALS | {"secret_access_key": "x"}),
        ),
    ]
    assert len({_signature(base), *(_signature(v) for v in variants)}) == 1 + len(variants)


def test_now_must_be_timezone_aware_and_is_taken_in_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_v4("GET", "http://h/b/k", {}, EMPTY_SHA256, now=datetime(2013, 5, 24), **CREDENTIALS)
    paris = datetime(2013, 5, 24, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert sign_v4(
        "GET", f"{HOST}/test.txt", {"Range": "bytes=0-9"}, EMPTY_SHA256, now=paris, **CREDENTIALS
    ) == (
        sign_v4(
            "GET", f"{HOST}/test.txt", {"Range": "bytes=0-9"}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS
        )
    )


def test_the_secret_is_not_in_the_signed_headers() -> None:
    added = sign_v4("GET", "http://h/b/k", {}, EMPTY_SHA256, now=EXAMPLE_DATE, **CREDENTIALS)
    assert all(SECRET not in value for value in added.values())


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("t_1/m_1", "t_1/m_1"),
        ("a b/c", "a%20b/c"),
        ("ünï/文件.png", "%C3%BCn%C3%AF/%E6%96%87%E4%BB%B6.png"),
        ("x+y=z&w?#%", "x%2By%3Dz%26w%3F%23%25"),
        ("keep-_.~", "keep-_.~"),
        ("a//b/", "a//b/"),
    ],
)
def test_keys_are_encoded_per_segment(key: str, encoded: str) -> None:
    assert encode_key(key) == encoded


async def test_store_urls_are_path_style_under_the_prefix() -> None:
    config = S3Config(
        endpoint="https://s3.eu-west-1.amazonaws.com/",
        bucket="moltbot-media",
        region="eu-west-1",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET,
        prefix="/prod/",
    )
    async with S3MediaStore(config) as store:
        assert store.object_key("t_1/a b.jpg") == "prod/t_1/a b.jpg"
        assert (
            store.url("t_1/a b.jpg") == "https://s3.eu-west-1.amazonaws.com/moltbot-media/prod/t_1/a%20b.jpg"
        )
        for bad in ("", "../t_2/x", "t_1/./x", "t_1/.."):
            with pytest.raises(ValueError, match="segment"):
                store.url(bad)


def test_the_config_hides_its_secret_and_checks_the_endpoint() -> None:
    config = S3Config(
        endpoint="http://127.0.0.1:9000",
        bucket="media",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET,
    )
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert ACCESS_KEY_ID in repr(config)
    assert config.region == "us-east-1"
    assert config.prefix == ""
    with pytest.raises(ValueError, match="http"):
        S3Config(endpoint="s3.amazonaws.com", bucket="media", access_key_id="a", secret_access_key="s")
    with pytest.raises(ValueError, match="bucket"):
        S3Config(endpoint="http://h", bucket="a/b", access_key_id="a", secret_access_key="s")
