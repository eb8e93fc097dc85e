"""One provider client per connection, built from its vault credentials on first use and
dropped when they may have changed (a rotated or revoked token): the connectors' cache, and
:class:`ClientPerConnection`, the base of the connectors that send with one."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from adapters.channels.errors import TokenRejected
from domain.commands import EditMessage, SendMessage
from domain.connectors import SendRejected

Credentials = Callable[[str], Awaitable[Mapping[str, Any]]]  # connection id -> its opened secret
Client = TypeVar("Client")


class ConnectionClients(Generic[Client]):
    """``build`` makes a client from a connection's credentials (under a lock, once)."""

    def __init__(
        self, credentials: Credentials, build: Callable[[Mapping[str, Any]], Awaitable[Client]]
    ) -> None:
        self._credentials = credentials
        self._build = build
        self._clients: dict[str, Client] = {}
        self._lock = asyncio.Lock()

    async def get(self, connection_id: str) -> Client:
        """The connection's client, built from its credentials on first use."""
        client = self._clients.get(connection_id)
        if client is not None:
            return client
        async with self._lock:
            if connection_id not in self._clients:
                self._clients[connection_id] = await self._build(await self._credentials(connection_id))
            return self._clients[connection_id]

    def forget(self, connection_id: str) -> None:
        """Drop a cached client (its token was rotated or revoked): the next use reads it anew."""
        self._clients.pop(connection_id, None)

    def drain(self) -> list[Client]:
        """Every cached client, forgotten (to close them)."""
        clients, self._clients = list(self._clients.values()), {}
        return clients


def stored_token(credentials: Mapping[str, Any], *, missing: str) -> str:
    """The bot token in a connection's credentials; TokenRejected(``missing``) when there is none."""
    token = credentials.get("token")
    if not isinstance(token, str) or not token:
        raise TokenRejected(missing)
    return token


class ClientPerConnection(abc.ABC, Generic[Client]):
    """A connector's clients, one per connection: ``_new_client`` builds one from the
    connection's credentials (raising TokenRejected when they hold no usable token)."""

    def __init__(self, credentials: Credentials) -> None:
        self._clients = ConnectionClients(credentials, self._new_client)

    @abc.abstractmethod
    async def _new_client(self, credentials: Mapping[str, Any]) -> Client: ...

    async def client(self, connection_id: str) -> Client:
        """The connection's client, built from its credentials on first use."""
        return await self._clients.get(connection_id)

    def forget(self, connection_id: str) -> None:
        """Drop a cached client (its token was rotated or revoked): the next use reads it anew."""
        self._clients.forget(connection_id)

    async def sending_client(self, command: SendMessage | EditMessage) -> Client:
        """The client of a command's connection: one without a usable token rejects the send."""
        try:
            return await self.client(command.connection_id)
        except TokenRejected as exc:
            raise SendRejected("token_invalid", str(exc)) from None
