"""Agents: list, create (from a template), configure, and try one out.

A configuration change is one ``agent.configured`` event holding the whole
configuration (``202 {"agent_id","event_id","seq"}``). ``POST /v1/agents/{id}/test``
runs the agent on a sample message without sending anything, streaming the answer back
as Server-Sent Events (``delta`` events, then one ``done``) — the live preview of the
settings page. A preview is a model call like any run: owners and admins only, within
the plan's budget and a per-minute limit, and its tokens and cost are recorded as usage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Router, delete, get, post, put
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from adapters.agent import byok, spend
from adapters.agent.offline import estimate_tokens
from adapters.agent.tools import TOOLS
from adapters.vault.cipher import Keyring
from domain import agent as policy
from domain import events as ev
from domain import ids, plans, subjects
from domain.models import (
    KNOWN_MODELS,
    ChatTurn,
    ModelReply,
    ModelRequest,
    ModelUnavailable,
    ToolFailed,
    ToolSpec,
    model_family,
)
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.plan_limits import ensure_model, ensure_room, plan_catalog
from projections import agents_queries, tenants_queries, usage_queries
from projections.agents_queries import Agent

MAX_PROMPT = 8000
KNOWN_TOOLS = tuple(TOOLS)
MAX_SENDERS = 200  # ids in one sender list of the rules
MAX_SENDER_ID = 200  # characters of one sender id


class Rules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    channels: list[str] = []
    groups_require_mention: bool = True
    allowed_senders: list[str] = []
    quiet_hours: tuple[int, int] | None = None
    inbox_search_senders: list[str] = []  # whose questions may search the whole inbox
    cross_channel_memory: bool = False  # what the same person said on other channels, as context


class AgentBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An agent's whole configuration. On create, ``template`` fills what is left out."""

    name: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    rules: Rules | None = None
    enabled: bool | None = None
    template: str | None = None


class AgentAccepted(msgspec.Struct, frozen=True):
    agent_id: str
    event_id: str
    seq: int


class Template(msgspec.Struct, frozen=True):
    template: str
    name: str
    system_prompt: str
    tools: list[str]


class TestBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    config: AgentBody | None = None  # unsaved settings to preview


def _may_configure(who: Caller, action: str = "change agents") -> None:
    if who.role not in ("owner", "admin"):
        raise ApiError(403, "forbidden", f"Only the inbox's owner or an admin can {action}.")


def _sender_ids(values: list[str], name: str) -> tuple[str, ...]:
    """A rules list of sender ids (as the inbox shows them: ``sender_id``), checked."""
    ids_ = tuple(dict.fromkeys(v.strip() for v in values))
    if len(ids_) > MAX_SENDERS or not all(
        0 < len(v) <= MAX_SENDER_ID and v.isprintable() and " " not in v for v in ids_
    ):
        raise ApiError(
            400,
            "invalid_request",
            f"{name} is a list of at most {MAX_SENDERS} sender ids, as the inbox shows them"
            " (sender_id of a message).",
            field="rules",
        )
    return ids_


def _configuration(body: AgentBody, base: ev.AgentConfiguredData) -> ev.AgentConfiguredData:
    """``base`` with what ``body`` sets, validated field by field."""
    name = base.name if body.name is None else " ".join(body.name.split())
    if not 1 <= len(name) <= 60:
        raise ApiError(400, "invalid_request", "Give the agent a name of 1-60 characters.", field="name")
    model = base.model if body.model is None else body.model.strip()
    if model_family(model) is None:  # an unpriced model would escape the plan's budget
        raise ApiError(
            400,
            "invalid_request",
            f"Unknown model {model[:100]!r}; choose from {', '.join(KNOWN_MODELS)}"
            " (a dated id such as claude-sonnet-4-5-20250929 is its family).",
            field="model",
        )
    prompt = base.system_prompt if body.system_prompt is None else body.system_prompt.strip()
    if len(prompt) > MAX_PROMPT:
        raise ApiError(
            400,
            "invalid_request",
            f"Keep the instructions under {MAX_PROMPT} characters.",
            field="system_prompt",
        )
    tools = base.tools if body.tools is None else tuple(dict.fromkeys(body.tools))
    unknown = [t for t in tools if t not in KNOWN_TOOLS]
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"Unknown tool {unknown[0]!r}; choose from {', '.join(KNOWN_TOOLS)}.",
            field="tools",
        )
    rules = base.rules
    if body.rules is not None:
        quiet = body.rules.quiet_hours
        if quiet is not None and not all(0 <= h <= 23 for h in quiet):
            raise ApiError(
                400, "invalid_request", "quiet_hours are two hours 0-23, e.g. [22, 7].", field="rules"
            )
        if not all(subjects.is_token(c) for c in body.rules.channels):
            raise ApiError(
                400, "invalid_request", "channels are channel names such as telegram.", field="rules"
            )
        rules = ev.AgentRoutingRules(
            channels=tuple(body.rules.channels),
            groups_require_mention=body.rules.groups_require_mention,
            allowed_senders=_sender_ids(body.rules.allowed_senders, "allowed_senders"),
            quiet_hours=quiet,
            inbox_search_senders=_sender_ids(body.rules.inbox_search_senders, "inbox_search_senders"),
            cross_channel_memory=body.rules.cross_channel_memory,
        )
    return ev.AgentConfiguredData(
        name=name,
        model=model,
        system_prompt=prompt,
        tools=tools,
        rules=rules,
        enabled=base.enabled if body.enabled is None else body.enabled,
        template=base.template if body.template is None else body.template,
    )


def _template(name: str | None) -> ev.AgentConfiguredData:
    template = policy.TEMPLATES.get(name or "personal_assistant")
    if template is None:
        raise ApiError(
            400,
            "invalid_request",
            f"No template {name!r}; choose from {', '.join(policy.TEMPLATES)}.",
            field="template",
        )
    return template


async def _current(ctx: GatewayContext, who: Caller, agent_id: str) -> ev.AgentConfiguredData:
    async with ctx.tenant(who.tenant_id) as conn:
        config = await agents_queries.agent_configuration(conn, agent_id)
    if config is None:
        raise ApiError(404, "not_found", f"No agent {agent_id} in your inbox.", field="id")
    return config


async def _configure(
    ctx: GatewayContext, who: Caller, agent_id: str, config: ev.AgentConfiguredData
) -> AgentAccepted:
    event = ev.new_event(
        ev.AgentConfigured,
        tenant_id=who.tenant_id,
        aggregate_id=agent_id,
        actor=f"user:{who.user_id}",
        data=config,
    )
    appended = await ctx.store.append(event)
    return AgentAccepted(agent_id, appended.event_id, appended.seq)


@get("/agents")
async def list_agents(ctx: Ctx, who: Who, min_seq: FromQuery[int | None] = None) -> list[Agent]:
    await ctx.wait_for(min_seq, ("agents",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await agents_queries.agents(conn)


@get("/agents/templates")
async def list_templates() -> list[Template]:
    return [Template(key, t.name, t.system_prompt, list(t.tools)) for key, t in policy.TEMPLATES.items()]


@post("/agents", status_code=202)
async def create_agent(ctx: Ctx, who: Who, data: JSONBody[AgentBody]) -> AgentAccepted:
    """A new agent from a template (``personal_assistant`` unless given), adjusted by the body."""
    _may_configure(who)
    await ensure_room(ctx, who, "agents")
    config = await _within_plan(ctx, who, data, _configuration(data, _template(data.template)))
    return await _configure(ctx, who, ids.new_id(ids.AGENT), config)


@put("/agents/{agent_id:str}", status_code=202)
async def update_agent(
    ctx: Ctx, who: Who, agent_id: FromPath[str], data: JSONBody[AgentBody]
) -> AgentAccepted:
    """Change an agent; fields left out keep their value."""
    _may_configure(who)
    current = await _current(ctx, who, agent_id)
    base = _template(data.template) if data.template and data.template != current.template else current
    config = await _within_plan(ctx, who, data, _configuration(data, base))
    return await _configure(ctx, who, agent_id, config)


async def _within_plan(
    ctx: GatewayContext, who: Caller, body: AgentBody, config: ev.AgentConfiguredData
) -> ev.AgentConfiguredData:
    """A model chosen in ``body`` must be the plan's (402); one that comes from a template
    or an earlier plan is replaced by the plan's own."""
    if body.model is not None:
        await ensure_model(ctx, who, config.model)
        return config
    async with ctx.tenant(who.tenant_id) as conn:
        plan = await tenants_queries.plan(conn, who.tenant_id)
    model = plans.model_for_plan(plan_catalog(ctx).limits(plan), config.model)
    return config if model == config.model else msgspec.structs.replace(config, model=model)


class OwnKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    api_key: str


class OwnKeyStatus(msgspec.Struct, frozen=True):
    anthropic: bool  # whether the tenant set its own Anthropic key (the key is never shown)
    plan: str | None


async def _plan(ctx: GatewayContext, who: Caller) -> str:
    async with ctx.tenant(who.tenant_id) as conn:
        plan = await tenants_queries.plan(conn, who.tenant_id)
    return plan if plan is not None else "free"


async def _change_plan(ctx: GatewayContext, who: Caller, plan: ev.Plan) -> AgentAccepted | None:
    previous = await _plan(ctx, who)
    if previous == plan:
        return None
    event = ev.new_event(
        ev.PlanChanged, tenant_id=who.tenant_id, aggregate_id=who.tenant_id, actor=f"user:{who.user_id}",
        data=ev.PlanChangedData(plan=plan, previous_plan=previous),  # type: ignore[arg-type]
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return AgentAccepted("", appended.event_id, appended.seq)


def _vault(ctx: GatewayContext) -> Keyring:
    if ctx.keyring is None:
        raise ApiError(503, "vault_unavailable", "This gateway has no vault keys configured.")
    return ctx.keyring


@get("/agents/own-key")
async def own_key_status(ctx: Ctx, who: Who) -> OwnKeyStatus:
    """Whether your agents use your own Anthropic key (bring your own key)."""
    keyring = _vault(ctx)
    async with ctx.tenant(who.tenant_id) as conn:
        key = await byok.read_key(conn, keyring, who.tenant_id)
    return OwnKeyStatus(anthropic=key is not None, plan=await _plan(ctx, who))


@put("/agents/own-key", status_code=202)
async def set_own_key(ctx: Ctx, who: Who, data: JSONBody[OwnKey]) -> AgentAccepted:
    """Use your own Anthropic key for every agent of this inbox: your plan becomes BYOK (no
    platform budget). The key is kept encrypted and never shown again."""
    _may_configure(who)
    key = data.api_key.strip()
    if not (20 <= len(key) <= 300) or not key.isascii() or not key.isprintable() or " " in key:
        raise ApiError(
            400,
            "invalid_request",
            "Paste the whole API key from the Anthropic console (sk-ant-…).",
            field="api_key",
        )
    keyring = _vault(ctx)
    async with ctx.tenant(who.tenant_id) as conn:
        await byok.store_key(conn, keyring, who.tenant_id, key)
    changed = await _change_plan(ctx, who, "byok")
    return changed or AgentAccepted("", "", await ctx.store.last_seq())


@delete("/agents/own-key", status_code=202)
async def forget_own_key(ctx: Ctx, who: Who) -> AgentAccepted:
    """Stop using your own key: the deployment's model (within the free plan's budget) answers."""
    _may_configure(who)
    keyring = _vault(ctx)
    async with ctx.tenant(who.tenant_id) as conn:
        await byok.forget_key(conn, keyring, who.tenant_id)
    changed = await _change_plan(ctx, who, "free")
    return changed or AgentAccepted("", "", await ctx.store.last_seq())


class _PreviewTools:
    """The preview's tools: the registry's own (the clock is real); history search answers
    that a preview does not read your history."""

    def __init__(self, enabled: tuple[str, ...]) -> None:
        self._enabled = tuple(name for name in enabled if name in TOOLS)

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(TOOLS[name][0] for name in self._enabled)

    async def run(self, name: str, arguments: dict[str, Any]) -> str:
        if name not in self._enabled:
            raise ToolFailed(f"no tool named {name!r}")
        if name == "search_history":
            return "[] (a preview does not read your history)"
        return datetime.now(UTC).strftime("%A %d %B %Y, %H:%M UTC")


async def _within_budget(ctx: GatewayContext, who: Caller) -> None:
    """Refuse a preview once the plan's model budget for the month is used up (as runs are)."""
    async with ctx.tenant(who.tenant_id) as conn:
        spend = await usage_queries.plan_and_spend(conn, who.tenant_id, datetime.now(UTC))
    if not plans.ai_allowance_left(plan_catalog(ctx), spend):
        raise ApiError(
            402,
            "budget_exhausted",
            "This month's model budget is used up, so previews are paused until next month"
            " (or use your own Anthropic key: PUT /v1/agents/own-key).",
        )


async def _meter(
    ctx: GatewayContext, who: Caller, preview_id: str, model: str, tokens_in: int, tokens_out: int
) -> None:
    """Record a preview's tokens and cost as usage, as a run's are."""
    cost = policy.charge(model, tokens_in, tokens_out).cost_micros
    spend.warn_if_unpriced(model, cost, tenant_id=who.tenant_id, preview_id=preview_id)
    metrics: list[tuple[ev.UsageMetric, int]] = [
        ("tokens_in", tokens_in),
        ("tokens_out", tokens_out),
        ("cost_micros", cost),
    ]
    await ctx.store.append_many(
        spend.usage_events(who.tenant_id, preview_id, metrics, actor=f"user:{who.user_id}")
    )


@post("/agents/{agent_id:str}/test", status_code=200)
async def test_agent(
    ctx: Ctx, who: Who, agent_id: FromPath[str], data: JSONBody[TestBody]
) -> ServerSentEvent:
    """A dry run on a sample message, streamed back; nothing is sent. Owners and admins
    only, within the plan's budget and the previews-per-minute limit; the tokens and cost
    are recorded as usage (``usage.recorded``, ``source_id`` ``preview_…``)."""
    _may_configure(who, "try agents out")
    await ctx.limiter.check("preview_per_tenant", who.tenant_id, "Too many agent previews.")
    text = data.text.strip()
    if not 1 <= len(text) <= 4000:
        raise ApiError(400, "invalid_request", "Write a sample message of 1-4000 characters.", field="text")
    config = await _current(ctx, who, agent_id)
    if data.config is not None:
        config = await _within_plan(ctx, who, data.config, _configuration(data.config, config))
    else:
        config = await _within_plan(ctx, who, AgentBody(), config)
    if ctx.models is None:
        raise ApiError(503, "agent_unavailable", "No model is configured on this gateway.")
    await _within_budget(ctx, who)
    model = await ctx.models.model_for(config, who.tenant_id)
    tools = _PreviewTools(config.tools)
    request = ModelRequest(
        model=config.model, system=config.system_prompt, turns=(ChatTurn("user", text),), tools=tools.specs()
    )
    preview_id = ids.new_id("preview")

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        streamed: list[str] = []

        async def on_delta(delta: str) -> None:
            streamed.append(delta)
            await deltas.put(delta)

        async def answer() -> ModelReply:
            # The metering is shielded: a caller who leaves mid-answer cancels the model
            # call, not the record of what it used (estimated from what was streamed).
            try:
                reply = await model.complete(request, tools, on_delta)
            except asyncio.CancelledError:
                used_in = estimate_tokens(request.system + text)
                used_out = estimate_tokens("".join(streamed))
                await asyncio.shield(_meter(ctx, who, preview_id, model.name, used_in, used_out))
                raise
            finally:
                await deltas.put(None)
            await asyncio.shield(_meter(ctx, who, preview_id, reply.model, reply.tokens_in, reply.tokens_out))
            return reply

        answering = asyncio.create_task(answer())
        try:
            while (delta := await deltas.get()) is not None:
                yield ServerSentEventMessage(event="delta", data=json.dumps({"text": delta}))
            reply = await answering
        except ModelUnavailable as exc:
            yield ServerSentEventMessage(
                event="error", data=json.dumps({"error": exc.code, "detail": exc.reason})
            )
            return
        finally:
            answering.cancel()
        done = {
            "text": reply.text, "model": reply.model, "offline": reply.offline,
            "tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
            "tool_calls": [{"name": c.name, "input": c.input} for c in reply.tool_calls],
        }  # fmt: skip
        yield ServerSentEventMessage(event="done", data=json.dumps(done))

    return ServerSentEvent(stream(), headers={"Cache-Control": "no-store"})


agents_router = Router(
    path="/v1",
    route_handlers=[
        list_agents,
        list_templates,
        own_key_status,
        set_own_key,
        forget_own_key,
        create_agent,
        update_agent,
        test_agent,
    ],
    tags=["agents"],
    dependencies={"who": Provide(caller)},
)
