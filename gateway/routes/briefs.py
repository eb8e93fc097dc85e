"""A conversation at a glance: ``GET /v1/conversations/{id}/summary``.

A short summary and the action items in it (``domain/briefs.py``), written by the inbox's
model when one is configured and the month's allowance is not used up (its tokens are
metered as usage, ``source_id`` ``brief:<conversation>:<last message>``), extractive
otherwise. Kept per last message: asking again before anything new is said costs nothing.
Each action item can become a follow-up (``POST /v1/conversations/{id}/follow-ups``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from litestar import Router, get
from litestar.di import Provide
from litestar.params import FromPath

from adapters.agent import spend
from domain import agent as policy
from domain import briefs, plans
from domain import events as ev
from domain.models import NO_TOOLS, OFFLINE_MODEL, ChatTurn, ModelRequest, ModelUnavailable, no_deltas
from gateway.auth import Caller
from gateway.brief_cache import BriefView
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.plan_limits import plan_catalog
from gateway.routes.inbox import MinSeq
from projections import agents_queries, inbox_queries, usage_queries

HISTORY = 200  # the latest messages a brief reads


@get("/conversations/{conversation_id:str}/summary")
async def conversation_brief(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], min_seq: MinSeq = None
) -> BriefView:
    """The conversation's summary and action items, as of its latest message."""
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.conversation(conn, who.tenant_id, conversation_id)
        if found is None:
            raise ApiError(404, "not_found", f"No conversation {conversation_id} in your inbox.", field="id")
        history = await inbox_queries.recent_messages(conn, conversation_id, HISTORY)
    if not history:
        return BriefView(conversation_id, "", (), None, None)
    key = (who.tenant_id, conversation_id, history[-1].message_id)
    kept = ctx.briefs.get(key)
    if kept is not None:
        return kept
    said = [briefs.Said(m.sender_name, m.text, m.sent_at) for m in history]
    written = await _by_model(ctx, who, found.channel, said, f"brief:{conversation_id}:{key[2]}")
    brief, model = written if written is not None else (briefs.extractive(said), None)
    view = BriefView(conversation_id, brief.summary, brief.action_items, key[2], model)
    ctx.briefs.put(key, view)
    return view


async def _by_model(
    ctx: GatewayContext, who: Caller, channel: str, said: list[briefs.Said], source_id: str
) -> tuple[briefs.Brief, str] | None:
    """The model's brief, metered; None without a model, past the allowance, or when the
    model fails or answers with something that is not a brief (extractive then)."""
    if ctx.models is None:
        return None
    async with ctx.tenant(who.tenant_id) as conn:
        agents = await agents_queries.all_agents(conn)
        spent = await usage_queries.plan_and_spend(conn, who.tenant_id, datetime.now(UTC))
    if not agents or not plans.ai_allowance_left(plan_catalog(ctx), spent):
        return None
    config = agents[0].config
    model = await ctx.models.model_for(config, who.tenant_id)
    if model.name == OFFLINE_MODEL:
        return None
    text = briefs.brief_request_text(said, channel, date.today())
    request = ModelRequest(
        model=plans.model_for_plan(plan_catalog(ctx).limits(spent.plan), config.model),
        system=briefs.BRIEF_SYSTEM,
        turns=(ChatTurn("user", text),),
        max_tokens=600,
    )
    try:
        reply = await model.complete(request, NO_TOOLS, no_deltas)
    except ModelUnavailable:
        return None
    cost = policy.charge(reply.model, reply.tokens_in, reply.tokens_out).cost_micros
    metrics: list[tuple[ev.UsageMetric, int]] = [
        ("tokens_in", reply.tokens_in), ("tokens_out", reply.tokens_out), ("cost_micros", cost),
    ]  # fmt: skip
    await ctx.store.append_many(
        spend.usage_events(who.tenant_id, source_id, metrics, actor=f"user:{who.user_id}")
    )
    brief = briefs.from_model(reply.text)
    return (brief, reply.model) if brief is not None else None


briefs_router = Router(
    path="/v1",
    route_handlers=[conversation_brief],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
