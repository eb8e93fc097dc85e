"""A fake browser push service (RFC 8030), served on 127.0.0.1, and the browsers subscribed to it.

The product's real sender (pywebpush over aiohttp) posts to it. Each request is checked as a
push service and a browser would: the VAPID ``Authorization`` (RFC 8292: ``vapid t=<JWT>,k=<key>``
— the JWT signed with ES256 by the key the subscription was made with, ``aud`` the endpoint's
origin, ``exp`` at most 24 h ahead, ``sub`` a mailto: or https: contact), ``TTL`` present, and
the body encrypted with ``aes128gcm`` (RFC 8291) to the browser's key: the fake decrypts it
with the browser's private key and auth secret (``http_ece``), and records the JSON inside.

A device may be told to answer 410 (gone: the browser unsubscribed) or a status a few times
(e.g. 503 then 201); anything the checks refuse is answered 400/401/403 and recorded as a
refusal, never as a delivery.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.serving import read_body, serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One subscribed browser: its key pair and auth secret, as ``pushManager.subscribe`` makes them."""

    device_id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))
    answers: deque[int] = field(default_factory=deque)  # statuses to answer before 201

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the page, to post to the API."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64url(public), "auth": _b64url(self.auth)},
        }


@dataclass(frozen=True)
class Delivery:
    device_id: str
    payload: dict[str, Any]  # the decrypted JSON
    headers: dict[str, str]
    claims: dict[str, Any]  # the VAPID JWT's


class FakePushService:
    def __init__(self, application_server_key: str) -> None:
        self.application_server_key = application_server_key  # the only key its subscriptions accept
        self.base_url = ""
        self.browsers: dict[str, Browser] = {}
        self.deliveries: list[Delivery] = []
        self.refusals: list[tuple[str, int, str]] = []  # (device, status, why)
        self.requests = 0

    def browser(self) -> Browser:
        device_id = _b64url(os.urandom(9))
        made = Browser(device_id, f"{self.base_url}/push/{device_id}")
        self.browsers[device_id] = made
        return made

    def to(self, browser: Browser) -> list[dict[str, Any]]:
        """The payloads delivered to ``browser``, oldest first."""
        return [d.payload for d in self.deliveries if d.device_id == browser.device_id]

    # --- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.requests += 1
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        device_id = scope["path"].removeprefix("/push/")
        browser = self.browsers.get(device_id)
        if scope["method"] != "POST" or browser is None:
            await self._refuse(send, device_id, 404, "no such subscription")
            return
        if browser.answers:
            status = browser.answers.popleft()
            if status == 410:
                browser.answers.appendleft(410)  # gone stays gone
            await _respond(send, status, b"scripted")
            return
        try:
            claims = self._check_vapid(headers.get("authorization", ""))
        except ValueError as exc:
            await self._refuse(send, device_id, 401, str(exc))
            return
        if "ttl" not in headers or headers.get("content-encoding") != "aes128gcm":
            await self._refuse(send, device_id, 400, "TTL and Content-Encoding: aes128gcm are required")
            return
        try:
            plaintext = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
            payload = json.loads(plaintext)
        except Exception as exc:
            await self._refuse(send, device_id, 400, f"cannot decrypt: {exc!r}")
            return
        self.deliveries.append(Delivery(device_id, payload, headers, claims))
        await _respond(send, 201, b"")

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"Authorization is not vapid: {scheme!r}")
        parts = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = parts.get("t", ""), parts.get("k", "")
        if key != self.application_server_key:
            raise ValueError("k is not the key the subscription was made with")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64url_decode(key))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                public,
                algorithms=["ES256"],
                audience=self.base_url,
                options={"require": ["exp", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise ValueError(f"VAPID JWT refused: {exc}") from None
        if claims["exp"] > time.time() + 24 * 3600:
            raise ValueError("exp more than 24 hours ahead")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            raise ValueError("sub is not a mailto: or https: contact")
        return claims

    async def _refuse(self, send: Send, device_id: str, status: int, why: str) -> None:
        self.refusals.append((device_id, status, why))
        await _respond(send, status, why.encode())


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def fake_push_service(application_server_key: str) -> AsyncIterator[FakePushService]:
    service = FakePushService(application_server_key)
    async with serving(service, "push service") as port:
        service.base_url = f"http://127.0.0.1:{port}"
        yield service
