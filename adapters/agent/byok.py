"""Bring your own key: a tenant's own Anthropic API key, sealed in the vault like any
credential (never in the log, never in an answer), used instead of the deployment's."""

from __future__ import annotations

from adapters.postgres.database import Connection
from adapters.vault.cipher import Keyring
from adapters.vault.store import CredentialStore

KIND = "anthropic_api_key"


def vault_id(tenant_id: str) -> str:
    """The vault row of a tenant's own Anthropic key."""
    return f"byok_anthropic_{tenant_id}"


async def read_key(conn: Connection, keyring: Keyring, tenant_id: str) -> str | None:
    secret = await CredentialStore(conn, keyring).get(tenant_id, vault_id(tenant_id))
    return secret.get("api_key") if secret else None


async def store_key(conn: Connection, keyring: Keyring, tenant_id: str, api_key: str) -> None:
    await CredentialStore(conn, keyring).put(tenant_id, vault_id(tenant_id), KIND, {"api_key": api_key})


async def forget_key(conn: Connection, keyring: Keyring, tenant_id: str) -> bool:
    return await CredentialStore(conn, keyring).delete(vault_id(tenant_id))
