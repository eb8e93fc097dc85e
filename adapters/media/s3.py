"""Media in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph RGW), through aiobotocore.

Custom endpoints are addressed path-style, ``{endpoint}/{bucket}/{key}``, which every
S3-compatible server answers (virtual-hosted style needs DNS per bucket); AWS's own are
left to botocore. Checksums are sent only where S3 requires them: several S3-compatible
servers refuse botocore's default CRC32 headers. Errors are :class:`MediaStoreError` with
S3's status, ``Code`` and ``Message`` and a hint; never the secret access key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from adapters.closing import ClosesOnExit

_HINTS = {
    "NoSuchBucket": "the bucket does not exist: create it or fix MOLTBOT_MEDIA_S3_BUCKET",
    "AccessDenied": "the credentials may not use this bucket: grant s3:GetObject, PutObject, ListBucket",
    "InvalidAccessKeyId": "the server does not know MOLTBOT_MEDIA_S3_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "check MOLTBOT_MEDIA_S3_SECRET_ACCESS_KEY",
    "403": "refused: check the access key, its secret and its permissions on the bucket",  # HEAD: no code
}


class MediaStoreError(Exception):
    """The object store refused or failed a request; carries no credential."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status  # HTTP status, None when no answer came
        self.code = code  # S3 error code (``NoSuchBucket``, ``AccessDenied``, …); None for a bodiless answer
        self.detail = detail  # S3's human-readable message


class S3Config(msgspec.Struct, frozen=True):
    """Where the bucket is and how to sign for it.

    ``endpoint`` is the server's base URL without the bucket (``https://s3.eu-west-1.amazonaws.com``,
    ``http://127.0.0.1:9000``, ``https://<account>.r2.cloudflarestorage.com``); ``region`` is the
    one the signature is scoped to (R2 accepts ``auto``, MinIO and Ceph ``us-east-1`` by default).
    ``prefix`` is a folder every key is stored under (``media`` → ``media/<key>``).
    """

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    prefix: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"S3 endpoint must be an http(s) URL, got {self.endpoint!r}")
        if parts.query or parts.fragment:
            raise ValueError("S3 endpoint must not have a query or fragment")
        if not self.bucket or "/" in self.bucket:
            raise ValueError(f"S3 bucket must be a non-empty name without '/', got {self.bucket!r}")

    def __repr__(self) -> str:  # the default would print the secret into logs and tracebacks
        return (
            f"S3Config(endpoint={self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r}, "
            f"access_key_id={self.access_key_id!r}, secret_access_key='***', prefix={self.prefix!r})"
        )


def _client_config(endpoint: str) -> AioConfig:
    on_aws = (urlsplit(endpoint).hostname or "").endswith(".amazonaws.com")
    return AioConfig(
        s3={"addressing_style": "auto" if on_aws else "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10,
        read_timeout=30,
        warm_up_loader_caches=True,  # botocore's JSON models load in a thread, not on the event loop
    )


class S3MediaStore(ClosesOnExit):
    """:class:`~adapters.media.store.MediaStore` on an S3-compatible bucket.

    One S3 client (with its connection pool), opened on first use and closed by :meth:`aclose`.
    """

    def __init__(self, config: S3Config) -> None:
        self._config = config
        prefix = config.prefix.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        self._client: Any = None
        self._opening = asyncio.Lock()
        self._exits = contextlib.AsyncExitStack()

    async def aclose(self) -> None:
        self._client = None
        await self._exits.aclose()

    def object_key(self, key: str) -> str:
        """The key in the bucket: the configured prefix, then ``key``."""
        if not key or any(segment in {".", ".."} for segment in key.split("/")):
            # HTTP clients and proxies collapse dot segments, so such a key would name another object.
            raise ValueError(f"media key {key!r} is empty or has a '.' or '..' segment")
        return self._prefix + key

    async def put(self, key: str, content: bytes) -> None:
        where, s3 = self.object_key(key), await self._s3()  # a bad key fails before any I/O
        with self._errors("PUT", where):
            await s3.put_object(
                Bucket=self._config.bucket, Key=where, Body=content, ContentType="application/octet-stream"
            )

    async def get(self, key: str) -> bytes | None:
        where, s3 = self.object_key(key), await self._s3()
        try:
            with self._errors("GET", where):
                response = await s3.get_object(Bucket=self._config.bucket, Key=where)
                async with response["Body"] as body:
                    content: bytes = await body.read()
                    return content
        except MediaStoreError as error:
            if error.status == 404 and error.code in {None, "NoSuchKey"}:
                return None
            raise  # NoSuchBucket among them: a misconfiguration, not a missing file

    async def exists(self, key: str) -> bool:
        where, s3 = self.object_key(key), await self._s3()
        try:
            with self._errors("HEAD", where):
                await s3.head_object(Bucket=self._config.bucket, Key=where)
        except MediaStoreError as error:
            if error.status == 404:  # a HEAD answer has no body to tell NoSuchBucket apart
                return False
            raise
        return True

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete these objects, up to 1,000 a request (S3 does not say which existed)."""
        s3 = await self._s3()
        for start in range(0, len(keys), 1000):
            objects = [{"Key": self.object_key(key)} for key in keys[start : start + 1000]]
            with self._errors("DELETE", objects[0]["Key"]):
                await s3.delete_objects(
                    Bucket=self._config.bucket, Delete={"Objects": objects, "Quiet": True}
                )
        return len(keys)

    async def delete_tenant(self, tenant_id: str) -> int:
        """Delete every object under the tenant's prefix, a page (up to 1,000) at a time."""
        prefix, s3 = self.object_key(tenant_id) + "/", await self._s3()
        deleted = 0
        while True:
            with self._errors("LIST", prefix):
                page = await s3.list_objects_v2(Bucket=self._config.bucket, Prefix=prefix, MaxKeys=1000)
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                return deleted
            with self._errors("DELETE", prefix):
                await s3.delete_objects(Bucket=self._config.bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)

    async def _s3(self) -> Any:
        async with self._opening:  # concurrent first calls share one client
            if self._client is None:
                creating = get_session().create_client(
                    "s3",
                    endpoint_url=self._config.endpoint,
                    region_name=self._config.region,
                    aws_access_key_id=self._config.access_key_id,
                    aws_secret_access_key=self._config.secret_access_key,
                    config=_client_config(self._config.endpoint),
                )
                self._client = await self._exits.enter_async_context(creating)
            return self._client

    @contextlib.contextmanager
    def _errors(self, method: str, object_key: str) -> Iterator[None]:
        where = f"S3 {method} {self._config.bucket}/{object_key}"
        try:
            yield
        except ClientError as exc:
            error, metadata = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
            status = metadata.get("HTTPStatusCode")
            code = error.get("Code") or None
            code = None if code == str(status) else code  # botocore's stand-in for a bodiless answer
            detail = error.get("Message") or None
            reason = " ".join(part for part in (code, detail) if part) or "no error body"
            hint = _HINTS.get(code or str(status))
            message = f"{where}: {status} {reason}" + (f" ({hint})" if hint else "")
            raise MediaStoreError(message, status=status, code=code, detail=detail) from exc
        except EndpointUnreachable as exc:
            raise MediaStoreError(f"{where}: cannot reach {self._config.endpoint}: {exc}") from exc
        except BotoCoreError as exc:
            raise MediaStoreError(f"{where}: {type(exc).__name__}: {exc}") from exc
