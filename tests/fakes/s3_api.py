"""A fake S3: moto's server on a free port of 127.0.0.1, with moto's IAM authentication on.

moto answers the S3 REST API (path-style ``/<bucket>/<key>``), so the store's real SDK is
exercised. With authentication on (``/moto-api/reset-auth`` 0), moto recomputes every
request's SigV4 signature with the IAM user's secret: an unknown access key is
``InvalidAccessKeyId``, a wrong secret ``SignatureDoesNotMatch``, a user without a policy
``AccessDenied``. moto keeps its state per process, so the fake resets it when it starts
and restores the authentication setting when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

_SETUP_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_ALLOW_S3 = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class FakeS3:
    """moto's endpoint, a user allowed everything on S3 and one allowed nothing."""

    endpoint: str
    region: str
    allowed: Credentials
    unprivileged: Credentials

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        """An S3 client with the allowed user's credentials, to look at what was stored."""
        async with get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.allowed.access_key_id,
            aws_secret_access_key=self.allowed.secret_access_key,
        ) as s3:
            yield s3

    async def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in ``bucket``, by key."""
        async with self.client() as s3:
            listed = await s3.list_objects_v2(Bucket=bucket)
            found = {}
            for entry in listed.get("Contents", []):
                response = await s3.get_object(Bucket=bucket, Key=entry["Key"])
                async with response["Body"] as body:
                    found[entry["Key"]] = await body.read()
            return found


async def _create_user(iam: Any, name: str, policy: str | None) -> Credentials:
    await iam.create_user(UserName=name)
    if policy is not None:
        await iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=policy)
    key = (await iam.create_access_key(UserName=name))["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


async def _set_up(endpoint: str, region: str, buckets: Iterable[str]) -> tuple[Credentials, Credentials]:
    session = get_session()
    async with (
        session.create_client("iam", endpoint_url=endpoint, region_name=region, **_SETUP_CREDENTIALS) as iam,
        session.create_client("s3", endpoint_url=endpoint, region_name=region, **_SETUP_CREDENTIALS) as s3,
    ):
        located = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        for bucket in buckets:
            await s3.create_bucket(Bucket=bucket, **located)
        allowed = await _create_user(iam, "moltbot-media", _ALLOW_S3)
        unprivileged = await _create_user(iam, "no-permissions", None)
    return allowed, unprivileged


@contextlib.asynccontextmanager
async def fake_s3(*, region: str = "us-east-1", buckets: Iterable[str] = ("media",)) -> AsyncIterator[FakeS3]:
    """Serve moto on a free port of 127.0.0.1 for the block's duration, ``buckets`` created."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    await asyncio.to_thread(server.start)
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        async with httpx.AsyncClient(base_url=endpoint) as moto_api:
            (await moto_api.post("/moto-api/reset")).raise_for_status()
            switched = await moto_api.post("/moto-api/reset-auth", content=b"inf")  # set up unauthenticated
            previous = str(switched.raise_for_status().json()["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])
            allowed, unprivileged = await _set_up(endpoint, region, buckets)
            (await moto_api.post("/moto-api/reset-auth", content=b"0")).raise_for_status()
            try:
                yield FakeS3(endpoint, region, allowed, unprivileged)
            finally:
                await moto_api.post("/moto-api/reset-auth", content=previous.encode())
    finally:
        await asyncio.to_thread(server.stop)
