"""People across channels, over the real gateway and read models: every sender becomes an
identity in a contact; the same phone number on WhatsApp and iMessage is suggested (never a
name alone, never another tenant's); merges, splits and notes are events, and replay
identically. Search keeps to one person's conversations when asked, and the contact list
suggests its pairs as a whole."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from domain import contacts, ids
from domain import events as ev
from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup


async def _says(
    stack: Stack, tenant: str, channel: str, sender: str, name: str, *, is_bot: bool = False,
    text: str = "Hello!", email: str | None = None,
) -> str:  # fmt: skip
    """A direct message from ``sender`` on ``channel``; its conversation's id."""
    connection, conversation = f"cn_{channel}_{tenant[-6:]}", ids.new_id(ids.CONVERSATION)
    actor = f"connector:{channel}:{connection}"
    created = ev.new_event(
        ev.ConversationCreated, tenant_id=tenant, aggregate_id=conversation, actor=actor,
        data=ev.ConversationCreatedData(
            channel=channel, connection_id=connection, kind="direct", title=name, external_id=sender
        ),
    )  # fmt: skip
    received = ev.new_event(
        ev.MessageReceived, tenant_id=tenant, aggregate_id=conversation, actor=actor,
        data=ev.MessageReceivedData(
            message_id=ids.new_id(ids.MESSAGE), connection_id=connection, channel=channel,
            provider_message_id=ids.new_id("p"), text=text, sent_at=datetime.now(UTC),
            sender=ev.Sender(id=sender, name=name, is_bot=is_bot, email=email),
        ),
    )  # fmt: skip
    await stack.store.append_many([created, received])
    return conversation


def _contact_of(tenant: str, channel: str, sender: str) -> str:
    return contacts.first_contact_id(contacts.identity_id(f"cn_{channel}_{tenant[-6:]}", sender))


async def _get(api: httpx.AsyncClient, owner: dict[str, str], path: str, seq: int = 0) -> Any:
    response = await api.get(path, params={"min_seq": seq}, headers=_auth(owner))
    return response.json() if response.status_code == 200 else response.status_code


async def test_identities_suggestions_merges_splits_and_notes(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "contacts@example.com")
    other = await _signup(api, "contacts-other@example.com")
    tenant = owner["tenant_id"]
    on_whatsapp = await _says(stack, tenant, "whatsapp", "wa:15551234567@s.whatsapp.net", "Ada")
    on_imessage = await _says(stack, tenant, "imessage", "imessage:+15551234567", "Ada L.")
    await _says(stack, tenant, "telegram", "tg:42", "Ada")  # the same name only: never suggested
    await _says(stack, tenant, "telegram", "tg:7", "Weather bot", is_bot=True)  # not a person
    await _says(
        stack, other["tenant_id"], "whatsapp", "wa:15551234567@s.whatsapp.net", "Ada"
    )  # another inbox
    seq = await stack.store.last_seq()
    whatsapp = _contact_of(tenant, "whatsapp", "wa:15551234567@s.whatsapp.net")
    imessage = _contact_of(tenant, "imessage", "imessage:+15551234567")

    listed = await _get(api, owner, "/v1/contacts", seq)
    assert sorted(c["display_name"] for c in listed) == ["Ada", "Ada", "Ada L."]
    found = await _get(api, owner, f"/v1/contacts/{whatsapp}", seq)
    assert [i["phone"] for i in found["identities"]] == ["+15551234567"]
    assert found["suggestions"] == [
        {"contact_id": imessage, "display_name": "Ada L.", "reason": "same phone +15551234567"}
    ]
    by_phone = await api.get("/v1/contacts", params={"q": "+1555"}, headers=_auth(owner))
    assert {c["contact_id"] for c in by_phone.json()} == {whatsapp, imessage}

    # Notes on both, then merged: one person on two channels, the notes kept.
    for contact_id, notes in ((whatsapp, "Prefers mornings."), (imessage, "Allergic to nuts.")):
        put = await api.put(f"/v1/contacts/{contact_id}/notes", json={"notes": notes}, headers=_auth(owner))
        assert put.status_code == 202, put.text
    merged = await api.post(
        f"/v1/contacts/{whatsapp}/merge", json={"contact_id": imessage}, headers=_auth(owner)
    )
    assert merged.status_code == 202, merged.text
    person = await _get(api, owner, f"/v1/contacts/{whatsapp}", merged.json()["seq"])
    assert sorted(i["channel"] for i in person["identities"]) == ["imessage", "whatsapp"]
    assert {c["conversation_id"] for c in person["conversations"]} == {on_whatsapp, on_imessage}
    assert person["notes"] == "Prefers mornings.\nAllergic to nuts." and person["suggestions"] == []
    assert await _get(api, owner, f"/v1/contacts/{imessage}") == 404  # merged away
    assert len(await _get(api, owner, "/v1/contacts")) == 2

    # Split again: the iMessage identity leaves as a contact of its own.
    identity = next(i["identity_id"] for i in person["identities"] if i["channel"] == "imessage")
    split = await api.post(
        f"/v1/contacts/{whatsapp}/split", json={"identity_id": identity}, headers=_auth(owner)
    )
    assert split.status_code == 202, split.text
    alone = await _get(api, owner, f"/v1/contacts/{split.json()['contact_id']}", split.json()["seq"])
    assert [i["identity_id"] for i in alone["identities"]] == [identity]
    only = await api.post(
        f"/v1/contacts/{whatsapp}/split", json={"identity_id": identity}, headers=_auth(owner)
    )
    assert only.status_code == 404  # not this contact's any more
    last = (await _get(api, owner, f"/v1/contacts/{whatsapp}"))["identities"][0]["identity_id"]
    lonely = await api.post(
        f"/v1/contacts/{whatsapp}/split", json={"identity_id": last}, headers=_auth(owner)
    )
    assert (lonely.status_code, lonely.json()["error"]) == (409, "only_identity")

    # Another inbox sees none of it, and cannot merge into it.
    assert await _get(api, other, f"/v1/contacts/{whatsapp}") == 404
    theirs = _contact_of(other["tenant_id"], "whatsapp", "wa:15551234567@s.whatsapp.net")
    foreign = await api.post(
        f"/v1/contacts/{theirs}/merge", json={"contact_id": whatsapp}, headers=_auth(other)
    )
    assert (foreign.status_code, foreign.json()["field"]) == (404, "contact_id")
    assert (await _get(api, other, f"/v1/contacts/{theirs}"))["suggestions"] == []
    same = await api.post(
        f"/v1/contacts/{whatsapp}/merge", json={"contact_id": whatsapp}, headers=_auth(owner)
    )
    assert same.status_code == 400
    long = await api.put(f"/v1/contacts/{whatsapp}/notes", json={"notes": "x" * 2001}, headers=_auth(owner))
    assert (long.status_code, long.json()["field"]) == (400, "notes")
    await stack.verify_read_models()  # identities, merges, splits and notes replay identically


async def test_the_same_e_mail_on_slack_and_teams_is_suggested_as_one_person(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "contacts-email@example.com")
    tenant = owner["tenant_id"]
    # The addresses as Slack's users.info and Teams' members API give them (the connectors
    # look them up: test_slack.py, test_teams.py); a name alone is never enough.
    await _says(stack, tenant, "slack", "slack:U0ADA", "ada", email="ada@example.com")
    await _says(stack, tenant, "teams", "teams:29:1ada", "Ada Lovelace", email="ada@example.com")
    await _says(stack, tenant, "teams", "teams:29:1bob", "Ada Lovelace", email="bob@example.com")
    seq = await stack.store.last_seq()
    slack = _contact_of(tenant, "slack", "slack:U0ADA")
    teams = _contact_of(tenant, "teams", "teams:29:1ada")
    found = await _get(api, owner, f"/v1/contacts/{slack}", seq)
    assert [i["email"] for i in found["identities"]] == ["ada@example.com"]
    assert found["suggestions"] == [
        {"contact_id": teams, "display_name": "Ada Lovelace", "reason": "same e-mail ada@example.com"}
    ]
    by_email = await api.get("/v1/contacts", params={"q": "ada@example"}, headers=_auth(owner))
    assert {c["contact_id"] for c in by_email.json()} == {slack, teams}
    await stack.verify_read_models()


async def _search(
    api: httpx.AsyncClient, owner: dict[str, str], q: str, contact_id: str, seq: int = 0
) -> httpx.Response:
    params: dict[str, Any] = {"q": q, "contact_id": contact_id, "min_seq": seq}
    return await api.get("/v1/search", params=params, headers=_auth(owner))


async def test_search_by_person_keeps_to_their_conversations(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "contacts-search@example.com")
    other = await _signup(api, "contacts-search-other@example.com")
    tenant = owner["tenant_id"]
    ada_sender, ada_phone_sender = "wa:15551230000@s.whatsapp.net", "imessage:+15551230000"
    on_whatsapp = await _says(stack, tenant, "whatsapp", ada_sender, "Ada", text="The invoice is paid")
    on_imessage = await _says(stack, tenant, "imessage", ada_phone_sender, "Ada L.", text="invoice sent")
    from_bob = await _says(stack, tenant, "telegram", "tg:99", "Bob", text="Where is my invoice?")
    seq = await stack.store.last_seq()
    ada = _contact_of(tenant, "whatsapp", ada_sender)
    ada_too = _contact_of(tenant, "imessage", ada_phone_sender)
    bob = _contact_of(tenant, "telegram", "tg:99")

    everyone = await api.get("/v1/search", params={"q": "invoice", "min_seq": seq}, headers=_auth(owner))
    assert {h["conversation_id"] for h in everyone.json()} == {on_whatsapp, on_imessage, from_bob}
    by_ada = await _search(api, owner, "invoice", ada, seq)
    assert [h["conversation_id"] for h in by_ada.json()] == [on_whatsapp]
    by_bob = await _search(api, owner, "invoice", bob)
    assert [(h["conversation_id"], h["sender_name"]) for h in by_bob.json()] == [(from_bob, "Bob")]
    assert (await _search(api, owner, "weather", ada)).json() == []  # theirs, but no such word

    # Merged: the person's search covers both channels; the contact merged away is gone.
    merged = await api.post(f"/v1/contacts/{ada}/merge", json={"contact_id": ada_too}, headers=_auth(owner))
    assert merged.status_code == 202, merged.text
    both = await _search(api, owner, "invoice", ada, merged.json()["seq"])
    assert {h["conversation_id"] for h in both.json()} == {on_whatsapp, on_imessage}
    for unknown in (ada_too, "ct_nobody"):
        missing = await _search(api, owner, "invoice", unknown)
        assert (missing.status_code, missing.json()["error"], missing.json()["field"]) == (
            404, "not_found", "contact_id",
        )  # fmt: skip
    foreign = await _search(api, other, "invoice", ada)  # another inbox's person
    assert (foreign.status_code, foreign.json()["field"]) == (404, "contact_id")
    too_long = await _search(api, owner, "invoice", "ct_" + "x" * 100)
    assert too_long.status_code == 400


async def test_suggestions_across_the_list(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "contacts-pairs@example.com")
    other = await _signup(api, "contacts-pairs-other@example.com")
    tenant = owner["tenant_id"]
    await _says(stack, tenant, "whatsapp", "wa:15551234567@s.whatsapp.net", "Ada")
    await _says(stack, tenant, "imessage", "imessage:+15551234567", "Ada L.")
    await _says(stack, tenant, "telegram", "tg:42", "Ada")  # the same name only: never suggested
    await _says(stack, tenant, "imessage", "imessage:grace@example.com", "Grace")
    await _says(stack, tenant, "imessage", "imessage:Grace@Example.com", "Grace H.")  # heard last
    # Another inbox hears the same phone number: never paired with this one's.
    await _says(stack, other["tenant_id"], "whatsapp", "wa:15551234567@s.whatsapp.net", "Ada")
    await _says(stack, other["tenant_id"], "signal", "signal:+15550000000", "Linus")
    seq = await stack.store.last_seq()
    whatsapp = _contact_of(tenant, "whatsapp", "wa:15551234567@s.whatsapp.net")
    imessage = _contact_of(tenant, "imessage", "imessage:+15551234567")
    grace = sorted(
        (_contact_of(tenant, "imessage", s), n)
        for s, n in (("imessage:grace@example.com", "Grace"), ("imessage:Grace@Example.com", "Grace H."))
    )
    ada = sorted([(whatsapp, "Ada"), (imessage, "Ada L.")])

    pairs = await _get(api, owner, "/v1/contacts/suggestions", seq)  # not a contact named "suggestions"
    assert pairs == [
        {"contact_id": grace[0][0], "display_name": grace[0][1], "other_contact_id": grace[1][0],
         "other_display_name": grace[1][1], "reason": "same e-mail grace@example.com"},
        {"contact_id": ada[0][0], "display_name": ada[0][1], "other_contact_id": ada[1][0],
         "other_display_name": ada[1][1], "reason": "same phone +15551234567"},
    ]  # fmt: skip
    one = await api.get("/v1/contacts/suggestions", params={"limit": 1}, headers=_auth(owner))
    assert [p["reason"] for p in one.json()] == ["same e-mail grace@example.com"]
    bad = await api.get("/v1/contacts/suggestions", params={"limit": 0}, headers=_auth(owner))
    assert bad.status_code == 400
    assert await _get(api, other, "/v1/contacts/suggestions") == []

    # Merged: that pair is settled, the other one stays.
    merged = await api.post(
        f"/v1/contacts/{whatsapp}/merge", json={"contact_id": imessage}, headers=_auth(owner)
    )
    assert merged.status_code == 202, merged.text
    after = await _get(api, owner, "/v1/contacts/suggestions", merged.json()["seq"])
    assert [(p["contact_id"], p["other_contact_id"]) for p in after] == [(grace[0][0], grace[1][0])]
