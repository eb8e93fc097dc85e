"""Media in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph RGW).

Requests are signed with AWS Signature Version 4, computed here (:func:`sign_v4`) so no
SDK is needed: httpx sends them. URLs are path-style, ``{endpoint}/{bucket}/{key}``,
which every S3-compatible server answers (virtual-hosted style needs DNS per bucket).
Keys are URI-encoded as S3 expects: each ``/``-separated segment percent-encoded except
``A-Z a-z 0-9 - _ . ~``. The payload is always signed (``x-amz-content-sha256`` is the
hex SHA-256 of the body), so a body altered in transit is refused by the server.

Errors are :class:`MediaStoreError` with the HTTP status and, when the server sent an
XML error body, its ``Code`` and ``Message``; never the secret access key.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"  # with ASCII letters and digits, what SigV4 leaves unencoded
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ERROR_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")
_DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class MediaStoreError(Exception):
    """The object store refused or failed a request; carries no credential."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status  # HTTP status, None when no answer came
        self.code = code  # S3 error code (``NoSuchBucket``, ``SignatureDoesNotMatch``, …)
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
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
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


# --- Signature Version 4 ------------------------------------------------------------------


def uri_encode(text: str) -> str:
    """Percent-encode every UTF-8 byte except unreserved characters (``/`` included)."""
    return quote(text, safe=_UNRESERVED)


def encode_key(key: str) -> str:
    """An object key as it goes in a path: each segment encoded, the slashes kept."""
    return "/".join(uri_encode(segment) for segment in key.split("/"))


def _canonical_uri(path: str) -> str:
    # Decoded then re-encoded, so a URL given raw or already encoded signs the same way.
    return "/".join(uri_encode(unquote(segment)) for segment in (path or "/").split("/"))


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((uri_encode(unquote(name)), uri_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _host(url: str) -> str:
    """The Host header httpx sends for ``url``: no user info, no default port."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].lower()
    if parts.port is not None and parts.port == _DEFAULT_PORTS.get(parts.scheme):
        host = host.rpartition(":")[0]
    return host


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], payload_sha256: str
) -> tuple[str, str]:
    """The canonical request of SigV4 and its signed header list (``host;range;…``).

    ``headers`` are all the headers to sign; ``host`` is taken from the URL unless given.
    """
    parts = urlsplit(url)
    canonical: dict[str, str] = {"host": _host(url)}
    for name, value in headers.items():
        canonical[name.strip().lower()] = " ".join(value.split())
    names = sorted(canonical)
    signed_headers = ";".join(names)
    lines = [
        method.upper(),
        _canonical_uri(parts.path),
        _canonical_query(parts.query),
        "".join(f"{name}:{canonical[name]}\n" for name in names),
        signed_headers,
        payload_sha256,
    ]
    return "\n".join(lines), signed_headers


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """``HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")``."""
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_v4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    *,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str = "s3",
    now: datetime,
) -> dict[str, str]:
    """The headers that sign a request: ``x-amz-date``, ``x-amz-content-sha256``, ``Authorization``.

    Every header in ``headers`` is signed, with ``host`` (from the URL) and the two
    ``x-amz-*`` headers returned here; send exactly those values. ``now`` must be
    timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("sign_v4 needs a timezone-aware datetime")
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    to_sign = {
        name: value
        for name, value in headers.items()
        if name.lower() not in {"x-amz-date", "x-amz-content-sha256", "authorization"}
    }
    to_sign["x-amz-date"] = amz_date
    to_sign["x-amz-content-sha256"] = payload_sha256
    request, signed_headers = canonical_request(method, url, to_sign, payload_sha256)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_sha256,
        "Authorization": (
            f"{ALGORITHM} Credential={access_key_id}/{scope},"
            f"SignedHeaders={signed_headers},Signature={signature}"
        ),
    }


# --- the store -------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _s3_error(body: bytes) -> tuple[str | None, str | None]:
    """``Code`` and ``Message`` of an S3 XML error body (flat, so no XML parser is needed)."""
    text = body[:16_384].decode("utf-8", errors="replace")
    found = {name: html.unescape(value) for name, value in _ERROR_FIELD.findall(text)}
    return found.get("Code"), found.get("Message")


class S3MediaStore:
    """:class:`~adapters.media.store.MediaStore` on an S3-compatible bucket.

    Pass ``client`` to share a connection pool (it is then not closed by :meth:`aclose`).
    ``clock`` dates the signatures; servers refuse ones more than 15 minutes off.
    """

    def __init__(
        self,
        config: S3Config,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._client = client if client is not None else httpx.AsyncClient(timeout=_DEFAULT_TIMEOUT)
        self._owns_client = client is None
        self._clock = clock
        self._base = f"{config.endpoint.rstrip('/')}/{uri_encode(config.bucket)}/"
        prefix = config.prefix.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def object_key(self, key: str) -> str:
        """The key in the bucket: the configured prefix, then ``key``."""
        segments = key.split("/")
        if not key or any(segment in {".", ".."} for segment in segments):
            # HTTP clients and proxies collapse dot segments, so such a key would name another object.
            raise ValueError(f"media key {key!r} is empty or has a '.' or '..' segment")
        return self._prefix + key

    def url(self, key: str) -> str:
        return self._base + encode_key(self.object_key(key))

    async def put(self, key: str, content: bytes) -> None:
        response = await self._send("PUT", key, content, {"content-type": "application/octet-stream"})
        if response.status_code != 200:
            raise self._error("PUT", key, response)

    async def get(self, key: str) -> bytes | None:
        response = await self._send("GET", key)
        if response.status_code == 200:
            return response.content
        error = self._error("GET", key, response)
        if response.status_code == 404 and error.code in {None, "NoSuchKey"}:
            return None
        raise error  # NoSuchBucket among them: a misconfiguration, not a missing file

    async def exists(self, key: str) -> bool:
        response = await self._send("HEAD", key)
        if response.status_code == 200:
            return True
        if response.status_code == 404:  # a HEAD answer has no body to tell NoSuchBucket apart
            return False
        raise self._error("HEAD", key, response)

    async def _send(
        self, method: str, key: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        url = self.url(key)
        request_headers = dict(headers or {})
        request_headers |= sign_v4(
            method,
            url,
            request_headers,
            hashlib.sha256(body).hexdigest(),
            access_key_id=self._config.access_key_id,
            secret_access_key=self._config.secret_access_key,
            region=self._config.region,
            now=self._clock(),
        )
        try:
            return await self._client.request(
                method, url, content=body if method == "PUT" else None, headers=request_headers
            )
        except httpx.HTTPError as exc:
            raise MediaStoreError(f"S3 {method} {self._where(key)}: {type(exc).__name__}: {exc}") from exc

    def _where(self, key: str) -> str:
        return f"{self._config.bucket}/{self._prefix}{key}"

    def _error(self, method: str, key: str, response: httpx.Response) -> MediaStoreError:
        code, detail = _s3_error(response.content) if response.content else (None, None)
        reason = " ".join(part for part in (code, detail) if part) or response.reason_phrase
        return MediaStoreError(
            f"S3 {method} {self._where(key)}: {response.status_code} {reason}",
            status=response.status_code,
            code=code,
            detail=detail,
        )
