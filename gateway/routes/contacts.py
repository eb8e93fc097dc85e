"""People across channels (``projections/contacts.py``).

- ``GET /v1/contacts?q=&limit=`` — contacts, the most recently heard from first; ``q`` in a
  name, phone number or e-mail address.
- ``GET /v1/contacts/suggestions?limit=`` — across the whole list: pairs of contacts sharing a
  phone number or an e-mail address, each pair once, the most recently heard from first.
- ``GET /v1/contacts/{id}`` — its identities on every channel, its conversations, the notes,
  and suggestions: other contacts sharing a phone number or an e-mail address.
- ``POST /v1/contacts/{id}/merge`` ``{"contact_id"}`` — that contact is this person too.
- ``POST /v1/contacts/{id}/split`` ``{"identity_id"}`` — that identity is someone else.
- ``PUT /v1/contacts/{id}/notes`` ``{"notes"}``.

Nothing is merged by itself: suggestions wait for a person.
"""

from __future__ import annotations

import msgspec
from litestar import Router, get, post, put
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody

from domain import events as ev
from domain import ids
from domain.contacts import CONTACT
from gateway.auth import Caller
from gateway.context import Ctx, GatewayContext, Who, caller
from gateway.errors import ApiError
from gateway.routes.inbox import Limit, MinSeq
from projections import contacts_queries
from projections.contacts_queries import Contact, ContactSummary, SuggestedPair

MAX_NOTES = 2000


class MergeBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    contact_id: str


class SplitBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    identity_id: str


class NotesBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    notes: str


class ContactAccepted(msgspec.Struct, frozen=True):
    contact_id: str
    event_id: str
    seq: int


async def _live(ctx: GatewayContext, who: Caller, contact_id: str, field: str = "id") -> None:
    async with ctx.tenant(who.tenant_id) as conn:
        if await contacts_queries.live_contact_id(conn, contact_id) is None:
            raise ApiError(404, "not_found", f"No contact {contact_id} in your inbox.", field=field)


async def _record(ctx: GatewayContext, event: ev.Event, contact_id: str) -> ContactAccepted:
    appended = await ctx.store.append(event)
    return ContactAccepted(contact_id, appended.event_id, appended.seq)


@get("/contacts")
async def list_contacts(
    ctx: Ctx,
    who: Who,
    q: FromQuery[str | None] = None,
    limit: Limit = 50,
    min_seq: MinSeq = None,
) -> list[ContactSummary]:
    """Your contacts, the most recently heard from first."""
    if q is not None and not 1 <= len(q.strip()) <= 100:
        raise ApiError(400, "invalid_request", "q is 1-100 characters.", field="q")
    await ctx.wait_for(min_seq, ("contacts",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await contacts_queries.contacts(conn, q=q.strip() if q else None, limit=limit)


@get("/contacts/suggestions")
async def list_suggestions(
    ctx: Ctx, who: Who, limit: Limit = 50, min_seq: MinSeq = None
) -> list[SuggestedPair]:
    """Contacts that may be the same person, two by two, and why; a merge settles a pair."""
    await ctx.wait_for(min_seq, ("contacts",), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        return await contacts_queries.suggested_pairs(conn, limit=limit)


@get("/contacts/{contact_id:str}")
async def get_contact(ctx: Ctx, who: Who, contact_id: FromPath[str], min_seq: MinSeq = None) -> Contact:
    """One person: their identities on every channel, conversations, notes and suggestions."""
    await ctx.wait_for(min_seq, ("contacts", "inbox"), who.tenant_id)
    async with ctx.tenant(who.tenant_id) as conn:
        found = await contacts_queries.contact(conn, contact_id)
    if found is None:
        raise ApiError(404, "not_found", f"No contact {contact_id} in your inbox.", field="id")
    return found


@post("/contacts/{contact_id:str}/merge", status_code=202)
async def merge_contact(
    ctx: Ctx, who: Who, contact_id: FromPath[str], data: JSONBody[MergeBody]
) -> ContactAccepted:
    """``contact_id`` of the body is this person too: its identities join this contact."""
    if data.contact_id == contact_id:
        raise ApiError(
            400, "invalid_request", "Name another contact to merge into this one.", field="contact_id"
        )
    await _live(ctx, who, contact_id)
    await _live(ctx, who, data.contact_id, field="contact_id")
    merged = ev.new_event(
        ev.ContactMerged, tenant_id=who.tenant_id, aggregate_id=contact_id, actor=f"user:{who.user_id}",
        data=ev.ContactMergedData(merged_contact_id=data.contact_id),
    )  # fmt: skip
    return await _record(ctx, merged, contact_id)


@post("/contacts/{contact_id:str}/split", status_code=202)
async def split_contact(
    ctx: Ctx, who: Who, contact_id: FromPath[str], data: JSONBody[SplitBody]
) -> ContactAccepted:
    """The identity is someone else: it leaves this contact as a contact of its own (the
    answer names it)."""
    async with ctx.tenant(who.tenant_id) as conn:
        found = await contacts_queries.contact(conn, contact_id)
    if found is None:
        raise ApiError(404, "not_found", f"No contact {contact_id} in your inbox.", field="id")
    if data.identity_id not in {i.identity_id for i in found.identities}:
        raise ApiError(
            404, "not_found", f"This contact has no identity {data.identity_id}.", field="identity_id"
        )
    if len(found.identities) == 1:
        raise ApiError(
            409, "only_identity", "This is the contact's only identity: there is nothing to split."
        )
    new_contact_id = ids.new_id(CONTACT)
    split = ev.new_event(
        ev.ContactSplit, tenant_id=who.tenant_id, aggregate_id=contact_id, actor=f"user:{who.user_id}",
        data=ev.ContactSplitData(identity_id=data.identity_id, new_contact_id=new_contact_id),
    )  # fmt: skip
    return await _record(ctx, split, new_contact_id)


@put("/contacts/{contact_id:str}/notes", status_code=202)
async def set_notes(
    ctx: Ctx, who: Who, contact_id: FromPath[str], data: JSONBody[NotesBody]
) -> ContactAccepted:
    """What you keep about this person (replacing what was there)."""
    notes = data.notes.strip()
    if len(notes) > MAX_NOTES:
        raise ApiError(400, "invalid_request", f"Notes are at most {MAX_NOTES} characters.", field="notes")
    await _live(ctx, who, contact_id)
    changed = ev.new_event(
        ev.ContactNotesSet, tenant_id=who.tenant_id, aggregate_id=contact_id, actor=f"user:{who.user_id}",
        data=ev.ContactNotesSetData(notes=notes),
    )  # fmt: skip
    return await _record(ctx, changed, contact_id)


contacts_router = Router(
    path="/v1",
    # Litestar's trie takes the literal /contacts/suggestions over /contacts/{contact_id} whatever
    # the order (tested); listed first all the same, as it reads
    route_handlers=[list_contacts, list_suggestions, get_contact, merge_contact, split_contact, set_notes],
    tags=["contacts"],
    dependencies={"who": Provide(caller)},
)
