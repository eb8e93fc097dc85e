"""Which agent answers a message: ``GET /v1/agents/routing`` and ``PUT /v1/agents/routing``.

The table is ordered rules, each naming an agent and the conditions a message must meet
(its connection, channel kind, conversation kind, sender, a keyword); the first rule a
message matches picks the agent, and a message no rule matches goes to the default agent
(the inbox's first). ``PUT`` replaces the whole table (one ``agent.routing_set``); each run
records the rule that chose its agent (``routed_by`` on ``agent.run_requested``).
"""

from __future__ import annotations

import msgspec
from litestar import Router, get, put
from litestar.di import Provide
from litestar.params import FromQuery, JSONBody

from adapters.channels.registry import KINDS
from domain import events as ev
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.agents import _may_configure
from gateway.routes.inbox import Accepted
from projections import agents_queries

MAX_RULES = 100
MAX_TEXT = 200  # characters of a name, sender id or keyword


class Routing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rules: list[ev.RoutingRule]


@get("/agents/routing")
async def get_routing(ctx: Ctx, who: Who, min_seq: FromQuery[int | None] = None) -> Routing:
    """The routing table, in order: the first rule a message matches picks its agent."""
    await ctx.wait_for(min_seq, ("agents",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return Routing(list(await agents_queries.routing(conn)))


@put("/agents/routing", status_code=202)
async def set_routing(ctx: Ctx, who: Who, data: JSONBody[Routing]) -> Accepted:
    """Replace the routing table (owner or admin)."""
    _may_configure(who, "change the routing")
    if len(data.rules) > MAX_RULES:
        raise ApiError(400, "invalid_request", f"At most {MAX_RULES} rules.", field="rules")
    async with ctx.tenant(who.tenant_id) as conn:
        agents = {agent.agent_id for agent in await agents_queries.agents(conn)}
    for place, rule in enumerate(data.rules):
        where = f"rules[{place}]"
        if rule.agent_id not in agents:
            raise ApiError(
                400, "invalid_request", f"{where}: no agent {rule.agent_id} in your inbox.", field="rules"
            )
        if rule.channel is not None and rule.channel not in KINDS:
            raise ApiError(
                400, "invalid_request", f"{where}: channel is one of {', '.join(KINDS)}.", field="rules"
            )
        texts = (rule.name, rule.sender_id, rule.keyword, rule.connection_id)
        if any(text is not None and not 0 < len(text.strip()) <= MAX_TEXT for text in texts):
            raise ApiError(
                400, "invalid_request", f"{where}: name, sender_id, keyword and connection_id are"
                f" 1-{MAX_TEXT} characters when given.", field="rules",
            )  # fmt: skip
    event = ev.new_event(
        ev.AgentRoutingSet, tenant_id=who.tenant_id, aggregate_id=who.tenant_id, actor=f"user:{who.user_id}",
        data=ev.AgentRoutingSetData(rules=tuple(data.rules)),
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return Accepted(appended.event_id, appended.seq)


routing_router = Router(
    path="/v1",
    route_handlers=[get_routing, set_routing],
    tags=["agents"],
    dependencies={"who": Provide(caller)},
)
