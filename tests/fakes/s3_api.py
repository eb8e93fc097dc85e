"""A fake S3 (path-style: ``/<bucket>/<key>``), served on 127.0.0.1.

It checks requests the way S3 does, with its own implementation of AWS Signature
Version 4 (nothing imported from ``adapters``), so a signing bug in the client shows up
as S3's own refusal rather than passing against a copy of the same code:

- no ``Authorization`` → 403 ``AccessDenied``; an unknown access key → 403
  ``InvalidAccessKeyId``; a credential scope for another day, region or service, or an
  unsigned ``host`` / ``x-amz-*`` header → 400 ``AuthorizationHeaderMalformed`` / 403
  ``AccessDenied``; ``x-amz-date`` more than 15 minutes off → 403 ``RequestTimeTooSkewed``;
- the canonical request is rebuilt from what arrived (method, path decoded then
  re-encoded per segment, sorted query, the signed headers' values) and the signature
  recomputed: a difference → 403 ``SignatureDoesNotMatch`` (with the ``StringToSign`` and
  ``CanonicalRequest`` S3 also returns);
- then the body's SHA-256 against ``x-amz-content-sha256`` → 400
  ``XAmzContentSHA256Mismatch``.

Objects live in memory per bucket (``objects[bucket][key]``); PUT, GET, HEAD and DELETE
of an object are answered, a missing object is 404 ``NoSuchKey`` and a missing bucket
404 ``NoSuchBucket`` (HEAD answers carry no body, as S3's do). ``requests`` records
every request with whether its signature held; :meth:`FakeS3.fail` scripts errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

import uvicorn

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

MAX_SKEW = timedelta(minutes=15)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_UNRESERVED_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


@dataclass
class SeenRequest:
    method: str
    raw_path: str  # as it arrived, still percent-encoded
    bucket: str | None
    key: str | None  # decoded
    headers: dict[str, str]
    body: bytes
    signature_valid: bool  # the Authorization header held for the fake's credentials
    status: int = 0
    error: str | None = None  # the S3 error code answered, if any


@dataclass
class _Failure:
    status: int
    code: str
    message: str
    times: int


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


# --- SigV4, written independently of adapters/media/s3.py -------------------------------


def _aws_encode(text: str) -> str:
    """Percent-encode each UTF-8 byte outside the unreserved set, upper-case hex."""
    return "".join(chr(b) if b in _UNRESERVED_BYTES else f"%{b:02X}" for b in text.encode("utf-8"))


def _canonical_path(raw_path: str) -> str:
    if not raw_path:
        return "/"
    return "/".join(_aws_encode(unquote(piece)) for piece in raw_path.split("/"))


def _canonical_query_string(raw_query: str) -> str:
    params: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            params.append((_aws_encode(unquote(name)), _aws_encode(unquote(value))))
    params.sort()
    return "&".join(f"{name}={value}" for name, value in params)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@dataclass
class _Verified:
    canonical_request: str
    string_to_sign: str
    expected: str
    given: str


def _verify_signature(
    method: str,
    raw_path: str,
    raw_query: str,
    header_values: dict[str, list[str]],
    signed_names: list[str],
    credential_scope: str,
    amz_date: str,
    given_signature: str,
    secret: str,
) -> _Verified:
    canonical_headers = ""
    for name in signed_names:
        value = ",".join(" ".join(v.split()) for v in header_values.get(name, []))
        canonical_headers += f"{name}:{value}\n"
    payload_hash = header_values["x-amz-content-sha256"][0]
    canonical = (
        f"{method}\n{_canonical_path(raw_path)}\n{_canonical_query_string(raw_query)}\n"
        f"{canonical_headers}\n{';'.join(signed_names)}\n{payload_hash}"
    )
    string_to_sign = (
        f"AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n"
        f"{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    )
    day, region, service, terminator = credential_scope.split("/")
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), region), service), terminator)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return _Verified(canonical, string_to_sign, expected, given_signature)


# --- the server -------------------------------------------------------------------------


class FakeS3:
    """Buckets, objects and credentials of a fake S3, and what it was asked."""

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        *,
        region: str = "us-east-1",
        buckets: Iterable[str] = ("media",),
    ) -> None:
        self.endpoint = ""
        self.region = region
        self.credentials: dict[str, str] = {access_key_id: secret_access_key}
        self.objects: dict[str, dict[str, bytes]] = {bucket: {} for bucket in buckets}
        self.requests: list[SeenRequest] = []
        self._failures: list[_Failure] = []

    def create_bucket(self, bucket: str) -> None:
        self.objects.setdefault(bucket, {})

    def fail(
        self, status: int, code: str, message: str = "Please reduce your request rate.", *, times: int = 1
    ) -> None:
        """Answer the next ``times`` authenticated requests with this error."""
        self._failures.append(_Failure(status, code, message, times))

    # --- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        method = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        raw_query = scope.get("query_string", b"").decode("latin-1")
        header_values: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            header_values.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        bucket, _, encoded_key = raw_path.lstrip("/").partition("/")
        seen = SeenRequest(
            method=method,
            raw_path=raw_path,
            bucket=unquote(bucket) or None,
            key=unquote(encoded_key) or None,
            headers={name: ",".join(values) for name, values in header_values.items()},
            body=body,
            signature_valid=False,
        )
        self.requests.append(seen)
        try:
            self._authenticate(method, raw_path, raw_query, header_values, body, seen)
            status, headers, answer = self._handle(method, seen)
        except S3Error as exc:
            seen.status, seen.error = exc.status, exc.code
            await _error(send, exc, resource=raw_path, with_body=method != "HEAD")
            return
        seen.status = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    def _authenticate(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        header_values: dict[str, list[str]],
        body: bytes,
        seen: SeenRequest,
    ) -> None:
        authorization = header_values.get("authorization", [""])[0]
        if not authorization:
            raise S3Error(403, "AccessDenied", "Access Denied")
        match = _AUTH.match(authorization.strip())
        if match is None:
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed.")
        access_key_id, _, credential_scope = match["credential"].partition("/")
        secret = self.credentials.get(access_key_id)
        if secret is None:
            raise S3Error(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
                AWSAccessKeyId=access_key_id,
            )
        amz_date = header_values.get("x-amz-date", [""])[0]
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise S3Error(
                403, "AccessDenied", "AWS authentication requires a valid x-amz-date header"
            ) from None
        scope_parts = credential_scope.split("/")
        if len(scope_parts) != 4 or scope_parts[0] != amz_date[:8]:
            raise S3Error(400, "AuthorizationHeaderMalformed", "The credential scope is malformed.")
        if scope_parts[1] != self.region:
            raise S3Error(
                400,
                "AuthorizationHeaderMalformed",
                f"the region '{scope_parts[1]}' is wrong; expecting '{self.region}'",
                Region=self.region,
            )
        if scope_parts[2] != "s3" or scope_parts[3] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed", "The credential scope is malformed.")
        now = datetime.now(UTC)
        if abs(now - signed_at) > MAX_SKEW:
            raise S3Error(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
                RequestTime=amz_date,
                ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        signed_names = match["signed"].split(";")
        if signed_names != sorted(set(signed_names)) or "host" not in signed_names:
            raise S3Error(400, "AuthorizationHeaderMalformed", "SignedHeaders must be sorted and name host.")
        unsigned = sorted(n for n in header_values if n.startswith("x-amz-") and n not in signed_names)
        if unsigned:
            raise S3Error(
                403,
                "AccessDenied",
                f"There were headers present in the request which were not signed: {', '.join(unsigned)}",
            )
        payload_hash = header_values.get("x-amz-content-sha256", [""])[0]
        if not payload_hash:
            raise S3Error(
                400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
            )
        if payload_hash != "UNSIGNED-PAYLOAD" and not _SHA256_HEX.match(payload_hash):
            raise S3Error(
                400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256"
            )
        verified = _verify_signature(
            method,
            raw_path,
            raw_query,
            header_values,
            signed_names,
            credential_scope,
            amz_date,
            match["signature"],
            secret,
        )
        if not hmac.compare_digest(verified.expected, verified.given):
            raise S3Error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
                AWSAccessKeyId=access_key_id,
                StringToSign=verified.string_to_sign,
                SignatureProvided=verified.given,
                CanonicalRequest=verified.canonical_request,
            )
        seen.signature_valid = True
        if payload_hash != "UNSIGNED-PAYLOAD":
            computed = hashlib.sha256(body).hexdigest()
            if computed != payload_hash:
                raise S3Error(
                    400,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    ClientComputedContentSHA256=payload_hash,
                    S3ComputedContentSHA256=computed,
                )

    def _handle(self, method: str, seen: SeenRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        for failure in self._failures:
            if failure.times > 0:
                failure.times -= 1
                raise S3Error(failure.status, failure.code, failure.message)
        if seen.bucket is None or seen.key is None:
            raise S3Error(501, "NotImplemented", "Only object operations are implemented by the fake.")
        bucket = self.objects.get(seen.bucket)
        if bucket is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=seen.bucket)
        if method == "PUT":
            bucket[seen.key] = seen.body
            return 200, [(b"etag", _etag(seen.body)), (b"content-length", b"0")], b""
        if method in {"GET", "HEAD"}:
            content = bucket.get(seen.key)
            if content is None:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=seen.key)
            headers = [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(content)).encode()),
                (b"etag", _etag(content)),
            ]
            return 200, headers, content if method == "GET" else b""
        if method == "DELETE":
            bucket.pop(seen.key, None)
            return 204, [], b""
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")


def _etag(content: bytes) -> bytes:
    return f'"{hashlib.md5(content).hexdigest()}"'.encode()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _error(send: Send, error: S3Error, *, resource: str, with_body: bool) -> None:
    fields = {"Code": error.code, "Message": error.message, **error.extra, "Resource": resource}
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(
        f"<{name}>{escape(value)}</{name}>" for name, value in fields.items()
    )
    body = (xml + "<RequestId>FAKE0000000000000000</RequestId></Error>").encode()
    headers = [(b"content-type", b"application/xml"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body if with_body else b""})


@contextlib.asynccontextmanager
async def fake_s3(
    access_key_id: str,
    secret_access_key: str,
    *,
    region: str = "us-east-1",
    buckets: Iterable[str] = ("media",),
) -> AsyncIterator[FakeS3]:
    """Serve a :class:`FakeS3` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeS3(access_key_id, secret_access_key, region=region, buckets=buckets)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    fake.endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = uvicorn.Config(
        fake, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the fake S3 stopped while starting")
            await asyncio.sleep(0.01)
        yield fake
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        listener.close()
