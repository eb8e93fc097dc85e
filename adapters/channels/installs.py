"""What a kind connected by OAuth ("Add to …") tells the gateway's install flow: where to
send the person (with the flow's ``state``), and what the code the provider returns installs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from adapters.channels.endpoints import ProviderEndpoints


class OAuthApp(Protocol):
    """The deployment's own app at the provider."""

    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    @property
    def signing_secret(self) -> str: ...
    @property
    def redirect_uri(self) -> str: ...


@dataclass(frozen=True)
class Installed:
    """An install's connection: its name, the secret to vault, the workspace and the app."""

    display_name: str
    secret: dict[str, str]
    team_id: str
    app_id: str | None = None


class Installer(Protocol):
    def authorize_url(self, app: OAuthApp, state: str) -> str: ...

    async def finish(self, app: OAuthApp, code: str, endpoints: ProviderEndpoints) -> Installed:
        """Exchange the code (InstallRejected, ProviderUnreachable)."""
        ...
