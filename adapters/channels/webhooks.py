"""What a kind's webhook gets from the gateway: the connection a delivery names (or the
connections of a workspace, for an app-wide Request URL), the event store, media and
endpoints. The gateway implements :class:`Hooks`; a kind's ``webhook.py`` uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from adapters.channels.endpoints import ProviderEndpoints
    from adapters.media.store import MediaStore
    from domain.ports import EventStore


class HookTarget(msgspec.Struct, frozen=True, kw_only=True):
    """A connection a provider posts to: its tenant, opened credentials, and the workspace
    (and app, for an OAuth install) it was connected for, where the provider has them."""

    connection_id: str
    tenant_id: str
    secret: dict[str, str]
    team_id: str | None = None
    app_id: str | None = None


class Hooks(Protocol):
    store: EventStore
    media: MediaStore | None
    endpoints: ProviderEndpoints

    def app_signing_secret(self, kind: str) -> str | None:
        """The signing secret of the deployment's own app of ``kind`` (None: no app)."""
        ...

    async def target(self, kind: str, connection_id: str) -> HookTarget:
        """The connection (NotConnected when there is none of this kind)."""
        ...

    async def targets_in(self, kind: str, app_id: str, team_id: str) -> list[HookTarget]:
        """The live connections installed for a workspace of an app, newest first."""
        ...

    async def remember_workspace(self, connection_id: str, team_id: str) -> None:
        """Record the workspace of a connection recorded before workspaces were."""
        ...
