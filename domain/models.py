"""The language-model port: what the agent asks of a model, and what it gets back.

Adapters (``adapters/agent/``) implement :class:`Model` for Anthropic's Messages API and
for the built-in offline model. A model streams its text through ``on_delta`` as it is
produced and runs tools through a :class:`ToolRunner` until it has a final answer; every
tool call is recorded on the reply, so the run can say what it did.

The catalog (:data:`MODEL_PRICES`) names the models an agent may use and what each costs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import msgspec

from domain.events import AgentConfiguredData


class ChatTurn(msgspec.Struct, frozen=True):
    """One turn of the conversation as the model sees it."""

    role: Literal["user", "assistant"]
    text: str


class ToolSpec(msgspec.Struct, frozen=True):
    name: str
    description: str
    input_schema: dict[str, Any]  # JSON Schema of the tool's input object


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str  # the model id to ask for, e.g. "claude-sonnet-4-6"; the offline model ignores it
    system: str
    turns: tuple[ChatTurn, ...]  # oldest first; the last one is the user's
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024


class ToolCall(msgspec.Struct, frozen=True):
    """A tool the model used during a run, with what it returned (truncated)."""

    name: str
    input: dict[str, Any]
    output: str
    is_error: bool = False


class ModelReply(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    model: str  # the model that answered, as the provider names it
    tokens_in: int
    tokens_out: int
    tool_calls: tuple[ToolCall, ...] = ()
    offline: bool = False  # True for the built-in offline model: its replies are labelled


class ToolRunner(Protocol):
    def specs(self) -> tuple[ToolSpec, ...]: ...

    async def run(self, name: str, arguments: dict[str, Any]) -> str:
        """The tool's result as text; raise ``ToolFailed`` for an error the model should see."""
        ...


class _NoTools:
    """The tools of a call that needs none (a summary, a screening, a brief)."""

    def specs(self) -> tuple[ToolSpec, ...]:
        return ()

    async def run(self, name: str, arguments: dict[str, Any]) -> str:
        raise ToolFailed(f"no tool named {name!r} here")


NO_TOOLS: ToolRunner = _NoTools()


async def no_deltas(text: str) -> None:
    """Where the pieces of a reply nobody watches being written go."""


class ToolFailed(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


class ModelUnavailable(Exception):
    """The model could not answer (provider down, retries exhausted, timeout, bad key)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


OnDelta = Callable[[str], Awaitable[None]]


class ModelSource(Protocol):
    """Which model answers for an agent of a tenant (its own key, the deployment's, offline)."""

    async def model_for(self, config: AgentConfiguredData, tenant_id: str | None) -> Model: ...


class Model(Protocol):
    name: str  # what the run records as its model, e.g. "claude-sonnet-4-6" or "offline-1"

    async def complete(self, request: ModelRequest, tools: ToolRunner, on_delta: OnDelta) -> ModelReply:
        """Answer ``request``, streaming text through ``on_delta`` and running tools as needed."""
        ...


# --- the catalog: which models an agent may use, and their prices --------------------------

OFFLINE_MODEL = "offline-1"  # the built-in offline model: no provider, no cost


class Price(msgspec.Struct, frozen=True):
    """Micro-dollars per million tokens: $3 per MTok is 3_000_000."""

    input_per_mtok: int
    output_per_mtok: int


# One entry per model family. A provider's dated id (claude-sonnet-4-5-20250929) is its
# family: the API reports dated ids on replies, and they are priced as the family.
MODEL_PRICES: dict[str, Price] = {
    "claude-sonnet-4-6": Price(3_000_000, 15_000_000),
    "claude-sonnet-4-5": Price(3_000_000, 15_000_000),
    "claude-haiku-4-5": Price(1_000_000, 5_000_000),
    "claude-opus-4-1": Price(15_000_000, 75_000_000),
    OFFLINE_MODEL: Price(0, 0),
}
KNOWN_MODELS: tuple[str, ...] = tuple(MODEL_PRICES)
# What a model the catalog does not know is charged: never less than the dearest known one.
HIGHEST_PRICE = Price(
    max(p.input_per_mtok for p in MODEL_PRICES.values()),
    max(p.output_per_mtok for p in MODEL_PRICES.values()),
)
_DATE_DIGITS = 8  # the yyyymmdd suffix of a dated id


def model_family(model_id: str) -> str | None:
    """The catalog family of ``model_id`` (the id itself, or a dated id's family), or None."""
    if model_id in MODEL_PRICES:
        return model_id
    family, _, date = model_id.rpartition("-")
    dated = len(date) == _DATE_DIGITS and date.isascii() and date.isdigit()
    if dated and family in MODEL_PRICES and family != OFFLINE_MODEL:
        return family
    return None


def price_of(model_id: str) -> tuple[Price, bool]:
    """The price of ``model_id`` and whether the catalog knows it (if not: the highest price)."""
    family = model_family(model_id)
    return (HIGHEST_PRICE, False) if family is None else (MODEL_PRICES[family], True)
