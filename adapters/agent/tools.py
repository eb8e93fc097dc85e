"""The tools an agent may use, as a registry: each tool is a name, a description, an input
schema and an async function. Adding one is adding an entry to ``TOOLS``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.agent import MAX_FACT_CHARS, MAX_FACTS_PER_RUN, SearchScope
from domain.models import ToolFailed, ToolSpec
from domain.reads import AgentReads


@dataclass(frozen=True)
class ToolContext:
    """What a tool may see: one tenant's data, through the confined reads, on behalf of the
    person being answered — their conversation, and the whole inbox only when ``scope``
    says so (``domain.agent.search_scope``: a sender the owner named)."""

    tenant_id: str
    conversation_id: str  # the conversation being answered
    sender_id: str  # who is being answered
    reads: AgentReads
    now: Callable[[], datetime]
    scope: SearchScope = "conversation"
    remembered: list[str] = field(default_factory=list)  # what ``remember`` proposed in this run


ToolFunction = Callable[[ToolContext, dict[str, Any]], Awaitable[str]]


async def _current_time(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    return ctx.now().astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC")


async def _search_history(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    query = str(arguments.get("query", "")).strip()
    if not query:
        raise ToolFailed("give a query: the words to look for")
    conversation_id = None if ctx.scope == "inbox" else ctx.conversation_id
    hits = await ctx.reads.search(ctx.tenant_id, query[:200], conversation_id=conversation_id)
    return json.dumps(
        [
            {
                "from": h.sender_name,
                "conversation": h.title,
                "at": h.sent_at.isoformat(),
                "text": h.text[:500],
            }
            for h in hits
        ]
    )


async def _remember(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    fact = " ".join(str(arguments.get("fact", "")).split())
    if not fact:
        raise ToolFailed("give the fact to remember, in one sentence")
    if len(ctx.remembered) >= MAX_FACTS_PER_RUN:
        raise ToolFailed(f"at most {MAX_FACTS_PER_RUN} facts per answer")
    ctx.remembered.append(fact[:MAX_FACT_CHARS])
    return "Noted: the owner will review it before it is remembered."


TOOLS: dict[str, tuple[ToolSpec, ToolFunction]] = {
    "current_time": (
        ToolSpec("current_time", "The current date and time (UTC).", {"type": "object", "properties": {}}),
        _current_time,
    ),
    "search_history": (
        ToolSpec(
            "search_history",
            "Search the messages of this conversation by words (the whole inbox only for people"
            " the owner allows); returns the best matches.",
            {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "words to find"}},
                "required": ["query"],
            },
        ),
        _search_history,
    ),
    "remember": (
        ToolSpec(
            "remember",
            "Propose a lasting fact about this person or the owner's business worth knowing in"
            " later conversations (a preference, a date, a promise). The owner approves it first;"
            " do not mention it in your answer.",
            {
                "type": "object",
                "properties": {"fact": {"type": "string", "description": "one short sentence"}},
                "required": ["fact"],
            },
        ),
        _remember,
    ),
}


class ToolBox:
    """The tools one agent has enabled, bound to one tenant (a ``domain.models.ToolRunner``)."""

    def __init__(self, enabled: tuple[str, ...], ctx: ToolContext) -> None:
        self._enabled = tuple(name for name in enabled if name in TOOLS)
        self._ctx = ctx

    @property
    def remembered(self) -> list[str]:
        """The facts ``remember`` proposed so far in this run."""
        return self._ctx.remembered

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(TOOLS[name][0] for name in self._enabled)

    async def run(self, name: str, arguments: dict[str, Any]) -> str:
        if name not in self._enabled:
            raise ToolFailed(f"no tool named {name!r} here")
        return await TOOLS[name][1](self._ctx, arguments)
