"""The agent's drafts and its pauses, from the inbox.

- ``GET /v1/conversations/{id}/drafts`` — what the agent proposes to send there, newest
  first (``?all=true``: sent and discarded ones too).
- ``POST /v1/drafts/{id}/send`` ``{"text"?}`` — send it, as written or edited: a
  ``message.send_requested`` naming the draft, through the normal outbox.
- ``DELETE /v1/drafts/{id}`` — discard it (``message.draft_discarded``).
- ``POST /v1/conversations/{id}/agent/resume`` — the agent answers again before its
  pause (a person's reply: ``conversation.agent_paused``) runs out.

A draft is settled once: sending or discarding a settled one is a ``409 draft_settled``.
"""

from __future__ import annotations

import msgspec
from litestar import Router, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from domain import events as ev
from domain import ids
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import Accepted, MinSeq
from gateway.routes.messages import MAX_TEXT, SendAccepted, _recipient, send_accepted
from projections import inbox_queries
from projections.inbox_queries import Draft


class DraftSend(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str | None = None  # the edited text; without it, the draft as the agent wrote it


async def _pending(ctx: GatewayContext, who: Caller, draft_id: str) -> Draft:
    async with ctx.tenant(who.tenant_id) as conn:
        found = await inbox_queries.draft(conn, who.tenant_id, draft_id)
    if found is None:
        raise ApiError(404, "not_found", f"No draft {draft_id} in your inbox.", field="id")
    if found.status != "pending":
        raise ApiError(409, "draft_settled", f"This draft was {found.status} already.", field="id")
    return found


@get("/conversations/{conversation_id:str}/drafts")
async def list_drafts(
    ctx: Ctx, who: Who, conversation_id: FromPath[str], all: FromQuery[bool] = False, min_seq: MinSeq = None
) -> list[Draft]:
    """The agent's drafts in a conversation, newest first: those waiting for you, or ``all``."""
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        if await inbox_queries.conversation(conn, who.tenant_id, conversation_id) is None:
            raise ApiError(404, "not_found", f"No conversation {conversation_id} in your inbox.", field="id")
        return await inbox_queries.drafts(conn, who.tenant_id, conversation_id, pending=not all)


@post("/drafts/{draft_id:str}/send", status_code=202)
async def send_draft(ctx: Ctx, who: Who, draft_id: FromPath[str], data: JSONBody[DraftSend]) -> SendAccepted:
    """Send the agent's draft, as written or with your ``text``, through its channel."""
    draft = await _pending(ctx, who, draft_id)
    text = (data.text if data.text is not None else draft.text).strip()
    if not text or len(text) > MAX_TEXT:
        raise ApiError(400, "invalid_request", f"Write 1-{MAX_TEXT} characters to send.", field="text")
    to = await _recipient(ctx, who, draft.conversation_id)
    conversation = to.conversation
    event = ev.new_event(
        ev.MessageSendRequested,
        tenant_id=who.tenant_id,
        aggregate_id=conversation.conversation_id,
        actor=f"user:{who.user_id}",
        data=ev.MessageSendRequestedData(
            # Named by the draft: sending it twice (a retry, two tabs) is one message.
            message_id=ids.stable_id(ids.MESSAGE, f"draft:{draft.draft_id}"),
            connection_id=conversation.connection_id,
            channel=conversation.channel,
            to=conversation.external_id,
            text=text,
            sender=ev.Sender(id=f"user:{who.user_id}", name=to.sender_name),
            reply_to_message_id=draft.reply_to_message_id,
            agent_run_id=draft.run_id,
            draft_id=draft.draft_id,
        ),
    )
    return await send_accepted(ctx, event)


@delete("/drafts/{draft_id:str}", status_code=202)
async def discard_draft(ctx: Ctx, who: Who, draft_id: FromPath[str]) -> Accepted:
    """Discard the agent's draft: nothing is sent."""
    draft = await _pending(ctx, who, draft_id)
    event = ev.new_event(
        ev.MessageDraftDiscarded, tenant_id=who.tenant_id, aggregate_id=draft.conversation_id,
        actor=f"user:{who.user_id}", data=ev.MessageDraftDiscardedData(draft_id=draft.draft_id),
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return Accepted(appended.event_id, appended.seq)


@post("/conversations/{conversation_id:str}/agent/resume", status_code=202)
async def resume_agent(ctx: Ctx, who: Who, conversation_id: FromPath[str]) -> Accepted:
    """The agent answers again in this conversation, before its pause runs out."""
    await _recipient(ctx, who, conversation_id, sending=False)  # 404 for a conversation not in your inbox
    event = ev.new_event(
        ev.ConversationAgentResumed, tenant_id=who.tenant_id, aggregate_id=conversation_id,
        actor=f"user:{who.user_id}", data=ev.ConversationAgentResumedData(reason="owner"),
    )  # fmt: skip
    appended = await ctx.store.append(event)
    return Accepted(appended.event_id, appended.seq)


drafts_router = Router(
    path="/v1",
    route_handlers=[list_drafts, send_draft, discard_draft, resume_agent],
    tags=["inbox"],
    dependencies={"who": Provide(caller)},
)
