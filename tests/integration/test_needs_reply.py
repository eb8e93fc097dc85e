""" "Needs reply" over the real gateway and read models: a person's message nobody answered
waits (and counts on /v1/me) until the owner or the agent answers; bots, history and the
pairing gate's code do not change that; a snooze hides it until its time or until the
contact writes again; replays rebuild it identically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from domain import events as ev
from domain import ids
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.integration.conftest import Stack, preview_token
from tests.integration.test_agent import _decided, _replies, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _visitor_says, _widget


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


async def _waiting(api: httpx.AsyncClient, owner: dict[str, str], seq: int = 0) -> list[str]:
    params = {"needs_reply": "true", "min_seq": seq}
    response = await api.get("/v1/conversations", params=params, headers=_auth(owner))
    assert response.status_code == 200, response.text
    return [c["conversation_id"] for c in response.json()["items"]]


async def _count(api: httpx.AsyncClient, owner: dict[str, str]) -> int:
    count: int = (await api.get("/v1/me", headers=_auth(owner))).json()["needs_reply"]
    return count


async def _snooze(api: httpx.AsyncClient, owner: dict[str, str], conversation: str, until: str | None) -> Any:
    return await api.post(
        f"/v1/conversations/{conversation}/snooze", json={"until": until}, headers=_auth(owner)
    )


async def test_a_question_waits_until_someone_answers_and_a_snooze_hides_it_until_they_write(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await _signup(api, "waiting@example.com")
    key = (await _widget(api, owner))["widget_key"]
    asked = await _visitor_says(api, key, "Do you deliver on Sundays?")
    conversation, token = asked["conversation_id"], asked["visitor_token"]
    assert await _waiting(api, owner, asked["seq"]) == [conversation]
    shown = (await api.get(f"/v1/conversations/{conversation}", headers=_auth(owner))).json()
    assert shown["needs_reply"] is True and shown["awaiting_since"] is not None
    assert await _count(api, owner) == 1
    others = await api.get("/v1/conversations", params={"needs_reply": "false"}, headers=_auth(owner))
    assert conversation not in [c["conversation_id"] for c in others.json()["items"]]

    # The owner answers: nothing waits.
    answered = await api.post(
        "/v1/messages",
        json={"conversation_id": conversation, "text": "Yes, until noon."},
        headers=_auth(owner),
    )
    assert answered.status_code == 202, answered.text
    assert await _waiting(api, owner, answered.json()["seq"]) == []
    assert await _count(api, owner) == 0

    # They write again; a snooze hides it, and their next message brings it back.
    again = await _visitor_says(api, key, "And on holidays?", visitor_token=token)
    assert await _waiting(api, owner, again["seq"]) == [conversation]
    later = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    snoozed = await _snooze(api, owner, conversation, later)
    assert snoozed.status_code == 202, snoozed.text
    assert await _waiting(api, owner, snoozed.json()["seq"]) == []
    assert await _count(api, owner) == 0
    shown = (await api.get(f"/v1/conversations/{conversation}", headers=_auth(owner))).json()
    assert shown["snoozed_until"] is not None and shown["needs_reply"] is False
    nudge = await _visitor_says(api, key, "Hello?", visitor_token=token)
    assert await _waiting(api, owner, nudge["seq"]) == [conversation]

    # Snoozed and lifted again by hand.
    snoozed = await _snooze(api, owner, conversation, later)
    lifted = await _snooze(api, owner, conversation, None)
    assert lifted.status_code == 202 and snoozed.status_code == 202
    assert await _waiting(api, owner, lifted.json()["seq"]) == [conversation]

    # What to fix, said clearly.
    past = await _snooze(api, owner, conversation, (datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    assert (past.status_code, past.json()["field"]) == (400, "until")
    naive = await _snooze(api, owner, conversation, "2030-01-01T09:00:00")
    assert (naive.status_code, naive.json()["field"]) == (400, "until")
    far = await _snooze(api, owner, conversation, (datetime.now(UTC) + timedelta(days=400)).isoformat())
    assert far.status_code == 400
    assert (await _snooze(api, owner, "c_missing", later)).status_code == 404
    stranger = await _signup(api, "waiting-stranger@example.com")
    assert (await _snooze(api, stranger, conversation, later)).status_code == 404
    assert await _count(api, stranger) == 0
    await stack.verify_read_models()  # waits and snoozes replay identically


async def test_bots_history_and_the_pairing_code_change_nothing_and_the_agent_answering_does(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "waiting-agent@example.com")
    widget = await _widget(api, owner)
    key = widget["widget_key"]
    # The agent answers the owner's own "Try it" chat: nothing waits there.
    tried = await _visitor_says(api, key, "Are you open?", visitor_token=preview_token(widget))
    await _until(lambda: _replies(api, owner, tried["conversation_id"]), "the agent's answer")
    await _decided(stack, nc, tried["seq"])
    assert tried["conversation_id"] not in await _waiting(api, owner)

    # Under pairing, the code a stranger gets is no answer: their question still waits.
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    webchat = next(c["connection_id"] for c in channels if c["channel"] == "webchat")
    await api.patch(f"/v1/channels/{webchat}", json={"dm_policy": "pairing"}, headers=_auth(owner))
    stranger = await _visitor_says(api, key, "Can I book a table?")
    await _decided(stack, nc, stranger["seq"])
    assert stranger["conversation_id"] in await _waiting(api, owner)

    # A bot's message and history a channel brought in wait for nobody.
    tenant, actor = owner["tenant_id"], "connector:telegram:cn_t"
    for name, is_bot, backfill in (("Status bot", True, False), ("Old friend", False, True)):
        conversation = ids.new_id(ids.CONVERSATION)
        created = ev.new_event(
            ev.ConversationCreated, tenant_id=tenant, aggregate_id=conversation, actor=actor,
            data=ev.ConversationCreatedData(
                channel="telegram", connection_id="cn_t", kind="direct", title=name, external_id=name
            ),
        )  # fmt: skip
        received = ev.new_event(
            ev.MessageReceived, tenant_id=tenant, aggregate_id=conversation, actor=actor,
            data=ev.MessageReceivedData(
                message_id=ids.new_id(ids.MESSAGE), connection_id="cn_t", channel="telegram",
                provider_message_id=f"{name}-1", sender=ev.Sender(id=f"tg:{name}", name=name, is_bot=is_bot),
                text="ping", sent_at=datetime.now(UTC), backfill=backfill,
            ),
        )  # fmt: skip
        await stack.store.append_many([created, received])
    assert await _waiting(api, owner, await stack.store.last_seq()) == [stranger["conversation_id"]]
