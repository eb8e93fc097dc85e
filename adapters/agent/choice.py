"""Which model answers for an agent: Anthropic with the tenant's own key (BYOK, from the
vault) or the deployment's, unless the agent asks for the offline model; the built-in
offline model when there is no key at all."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from adapters.agent.offline import OfflineModel
from domain.events import AgentConfiguredData
from domain.models import OFFLINE_MODEL, Model, ModelSource

if TYPE_CHECKING:
    from adapters.agent.anthropic_model import AnthropicModel

TenantKey = Callable[[str], Awaitable[str | None]]  # a tenant's own Anthropic key, if it set one


class ModelChoice:
    """A ``domain.models.ModelSource``; one client per (key, model), reused."""

    def __init__(
        self, api_key: str | None, *, base_url: str | None = None, tenant_key: TenantKey | None = None
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._tenant_key = tenant_key
        self._offline = OfflineModel()
        self._anthropic: dict[tuple[str, str], AnthropicModel] = {}

    async def model_for(self, config: AgentConfiguredData, tenant_id: str | None) -> Model:
        own = await self._tenant_key(tenant_id) if self._tenant_key and tenant_id else None
        return self.pick(config, own)

    def pick(self, config: AgentConfiguredData, tenant_key: str | None) -> Model:
        key = tenant_key or self._api_key
        if config.model == OFFLINE_MODEL or not key:
            return self._offline
        slot = (hashlib.sha256(key.encode()).hexdigest(), config.model)  # never the key itself
        if slot not in self._anthropic:
            # Imported on first use: the SDK takes seconds to import, and a process that
            # never calls it (no key, or not the agent) restarts that much faster.
            from adapters.agent.anthropic_model import AnthropicModel

            self._anthropic[slot] = AnthropicModel(key, model=config.model, base_url=self._base_url)
        return self._anthropic[slot]

    def with_tenant_keys(self, tenant_key: TenantKey) -> ModelSource:
        """The same models, preferring each tenant's own key (the clients stay shared here)."""
        return _WithTenantKeys(self, tenant_key)

    async def aclose(self) -> None:
        for model in self._anthropic.values():
            await model.aclose()


class _WithTenantKeys:
    def __init__(self, choice: ModelChoice, tenant_key: TenantKey) -> None:
        self._choice = choice
        self._tenant_key = tenant_key

    async def model_for(self, config: AgentConfiguredData, tenant_id: str | None) -> Model:
        return self._choice.pick(config, await self._tenant_key(tenant_id) if tenant_id else None)
