"""Opening a NATS connection with the options every role shares."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client

from adapters.nats.permissions import ADMIN, inbox_prefix

log = structlog.get_logger()


@dataclass(frozen=True)
class NatsLogin:
    """How one role signs in: a user and password, or a ``.creds`` file (JWT + NKey)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    creds_file: Path | None = None


@dataclass(frozen=True)
class NatsAccess:
    """Where the nats-servers are and how each role signs in to them.

    ``logins`` holds one login per role (the embedded stack's generated users);
    ``default`` is used for a role not in it (one user given to a deployment's process).
    """

    url: str
    logins: Mapping[str, NatsLogin] = field(default_factory=dict)
    default: NatsLogin | None = None
    tls_ca_file: Path | None = None  # a private CA for tls:// servers

    def login(self, role: str) -> NatsLogin | None:
        return self.logins.get(role, self.default)


NatsTarget = NatsAccess | str  # a bare URL: no credentials (or user:password@ in it)


class NatsSignInRefused(Exception):
    """The servers refuse this role's credentials: retrying cannot help, so it is no pause."""


def server_urls(url: str) -> list[str]:
    """The servers of a URL that may name several, comma-separated (one per cluster node)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def _sign_in(target: NatsTarget, role: str) -> tuple[str, dict[str, Any]]:
    """The URL and the nats-py options that sign ``role`` in; its replies come on its own inbox."""
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(role)}
    if isinstance(target, str):
        return target, options
    if target.tls_ca_file is not None:
        options["tls"] = ssl.create_default_context(cafile=str(target.tls_ca_file))
    login = target.login(role)
    if login is not None and login.creds_file is not None:
        options["user_credentials"] = str(login.creds_file)
    elif login is not None and login.user:
        options["user"] = login.user
        options["password"] = login.password or ""
    return target.url, options


async def connect(target: NatsTarget, *, name: str = "moltbot", role: str = ADMIN) -> Client:
    """Connect as ``role`` with unbounded reconnects: a nats-server restart is a pause, not an error.

    The URL may list a cluster's nodes, comma-separated; the client fails over between them.
    Credentials the servers refuse on the first connect raise :class:`NatsSignInRefused`.
    """
    url, sign_in = _sign_in(target, role)

    client: list[Client] = []
    refused = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        if not client and "authorization violation" in str(exc).lower():
            refused.set()
        elif "permissions violation" in str(exc).lower():
            log.error("nats_permission_denied", role=role, error=str(exc))
        else:
            log.warning("nats_error", error=str(exc) or repr(exc))  # a timeout says nothing by str()

    async def on_disconnected() -> None:
        if client and not (client[0].is_closed or client[0].is_draining):
            log.warning("nats_disconnected", name=name)

    async def on_reconnected() -> None:
        log.info("nats_reconnected")

    connecting = asyncio.ensure_future(
        nats.connect(
            servers=server_urls(url),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            **sign_in,
        )
    )
    refusal = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, refusal}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        refusal.cancel()
        if not connecting.done():
            connecting.cancel()
    if not connecting.done() or connecting.cancelled():
        login = target.login(role) if isinstance(target, NatsAccess) else None
        user = login.user if login is not None and login.user else "(from the URL or none)"
        raise NatsSignInRefused(
            f"NATS refused the {role} role's sign-in as user {user}: check MOLTBOT_NATS_USER /"
            " MOLTBOT_NATS_PASSWORD (or the data folder's nats/credentials.json)"
        )
    nc = connecting.result()
    client.append(nc)
    return nc


@asynccontextmanager
async def connection(
    target: NatsTarget, *, name: str = "moltbot", role: str = ADMIN
) -> AsyncIterator[Client]:
    nc = await connect(target, name=name, role=role)
    try:
        yield nc
    finally:
        # close, not drain: nats-py's drain waits up to 30 s for subscriptions and swallows
        # a cancellation meanwhile. Nothing is lost: every append was acked before this
        # point, and unacked deliveries are redelivered to the next consumer.
        await nc.close()
