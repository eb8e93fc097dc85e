"""Which model answers for an agent: Anthropic when the deployment has a key (and the
agent does not ask for the offline model), the built-in offline model otherwise."""

from __future__ import annotations

from adapters.agent.anthropic_model import AnthropicModel
from adapters.agent.offline import OFFLINE_MODEL, OfflineModel
from domain.events import AgentConfiguredData
from domain.models import Model


class ModelChoice:
    """Callable as ``choose(agent_config) -> Model``; one client per model id, reused."""

    def __init__(self, api_key: str | None, *, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._offline = OfflineModel()
        self._anthropic: dict[str, AnthropicModel] = {}

    def __call__(self, config: AgentConfiguredData) -> Model:
        if not self._api_key or config.model == OFFLINE_MODEL:
            return self._offline
        if config.model not in self._anthropic:
            self._anthropic[config.model] = AnthropicModel(
                self._api_key, model=config.model, base_url=self._base_url
            )
        return self._anthropic[config.model]

    async def aclose(self) -> None:
        for model in self._anthropic.values():
            await model.aclose()
