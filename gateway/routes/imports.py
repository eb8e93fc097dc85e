"""History brought in from elsewhere, in batches (``domain/imports.py``); owners only.

- ``POST /v1/imports`` ``{"source": "openclaw"|"export", "source_key", "label"?}`` — the
  import's id: the same source key gives the same id, so a rerun continues the import.
- ``POST /v1/imports/{import_id}/batches`` ``{"conversations": [...], "messages": [...]}``
  (``?min_seq=`` the ``seq`` of the batch before, so the check below sees it) — stores the
  conversations and messages the inbox does not have yet, and says how many of each were
  new and how many it had already. A message names its conversation by key: one in the
  same batch or an earlier one.

``moltbot migrate`` is the client of these routes; docs/migrate.md says what is carried.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
from litestar import Router, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from domain import events as ev
from domain import imports
from domain.imports import ImportBatch, ImportedConversation, ImportStart
from gateway.auth import Caller
from gateway.context import Ctx, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import MinSeq
from projections import inbox_queries

_IMPORT_ID = re.compile(r"^im_[0-9A-Z]{26}$")


class ImportStarted(msgspec.Struct, frozen=True):
    import_id: str
    source: str
    source_key: str
    label: str


class Counts(msgspec.Struct, frozen=True):
    conversations: int = 0
    messages: int = 0


class BatchStored(msgspec.Struct, frozen=True):
    stored: Counts  # new to the inbox
    already: Counts  # there from an earlier run (or earlier in this one)
    usage_records: int  # token counts of imported answers (never a cost)
    seq: int  # the log's sequence after the batch: ?min_seq= of the next one


def _owners_only(who: Caller) -> None:
    if who.role != "owner":
        raise ApiError(403, "forbidden", "Only the inbox's owners can import history.")


@post("/imports", status_code=201)
async def start_import(who: Who, data: JSONBody[ImportStart]) -> ImportStarted:
    """The id of an import of ``source_key`` (the same one again for a rerun)."""
    _owners_only(who)
    import_id = imports.import_id(who.tenant_id, data.source, data.source_key)
    return ImportStarted(import_id, data.source, data.source_key, data.label)


@post("/imports/{import_id:str}/batches", status_code=200)
async def import_batch(
    ctx: Ctx, who: Who, import_id: FromPath[str], data: JSONBody[ImportBatch], min_seq: MinSeq = None
) -> BatchStored:
    """Store what the inbox lacks of one batch of conversations and messages."""
    _owners_only(who)
    if not _IMPORT_ID.match(import_id):
        raise ApiError(
            404, "not_found", "No such import: start one with POST /v1/imports.", field="import_id"
        )
    await ctx.wait_for(min_seq, ("inbox",), who.tenant_id)
    tenant = who.tenant_id
    in_batch = {conversation.key: conversation for conversation in data.conversations}
    wanted = {imports.conversation_id(import_id, key): key for key in in_batch}
    for message in data.messages:
        wanted.setdefault(imports.conversation_id(import_id, message.conversation), message.conversation)
    lines = {imports.message_id(import_id, m.line): m for m in reversed(data.messages)}  # the first wins
    async with ctx.tenant(tenant) as conn:
        known = await inbox_queries.known_conversations(conn, list(wanted))
        stored = await inbox_queries.stored_messages(conn, list(lines))
    by_key = {wanted[cid]: _as_imported(wanted[cid], row) for cid, row in known.items()} | in_batch
    for index, message in enumerate(data.messages):
        if message.conversation not in by_key:
            raise ApiError(
                400, "invalid_request",
                f"messages[{index}] names conversation {message.conversation!r}, which is neither in this"
                " batch nor imported before: send it in `conversations` first.",
                field=f"messages[{index}].conversation",
            )  # fmt: skip
    new_conversations = [
        c for c in data.conversations if imports.conversation_id(import_id, c.key) not in known
    ]
    events: list[ev.Event] = list(
        imports.conversation_events(tenant, import_id, new_conversations, at=datetime.now(UTC))
    )
    fresh = [m for mid, m in lines.items() if mid not in stored]
    for message in sorted(fresh, key=lambda m: m.sent_at):
        events += imports.message_events(tenant, import_id, message, by_key[message.conversation])
    appended = await ctx.store.append_many(events)
    seq = max((a.seq for a in appended), default=0) or await ctx.store.last_seq()
    return BatchStored(
        stored=Counts(len(new_conversations), len(fresh)),
        already=Counts(len(data.conversations) - len(new_conversations), len(lines) - len(fresh)),
        usage_records=sum(isinstance(event, ev.UsageRecorded) for event in events),
        seq=seq,
    )


def _as_imported(key: str, row: inbox_queries.KnownConversation) -> ImportedConversation:
    return ImportedConversation(
        key=key, channel=row.channel, kind=row.kind, peer=row.external_id, title=row.title
    )


imports_router = Router(
    path="/v1",
    route_handlers=[start_import, import_batch],
    dependencies={"who": Provide(caller)},
    tags=["imports"],
)
