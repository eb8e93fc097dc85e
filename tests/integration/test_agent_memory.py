"""Memory that stays honest, over the whole product with Anthropic at its local fake: facts
the agent proposes wait for the owner and only approved ones reach the model; a
conversation that outgrows the context gets a summary the model writes (recorded with its
usage), which later requests carry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings
from adapters.vault.cipher import Keyring
from domain import contacts, ids
from domain import events as ev
from domain.agent import SUMMARY_SYSTEM
from domain.briefs import BRIEF_SYSTEM
from domain.plans import Catalog
from moltbot.roles import run_agent
from tests.conftest import roomy_catalog
from tests.fakes.anthropic_api import FakeAnthropic, fake_anthropic, text, tool_use
from tests.integration.conftest import Stack, preview_token
from tests.integration.test_agent import _replies, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _visitor_says, _widget


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with fake_anthropic(otherwise=text("Lea asks about the shop's hours.")) as server:
        yield server


@pytest.fixture
async def agent_models(fake: FakeAnthropic) -> AsyncIterator[ModelChoice]:
    models = ModelChoice("sk-test-key", base_url=fake.base_url)
    yield models
    await models.aclose()


def _asked(request: dict[str, Any]) -> str:
    return json.dumps(request["messages"])


async def _facts(api: httpx.AsyncClient, owner: dict[str, str], status: str, seq: int = 0) -> list[Any]:
    response = await api.get(
        "/v1/memory/facts", params={"status": status, "min_seq": seq}, headers=_auth(owner)
    )
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()
    return found


async def test_a_fact_the_agent_proposes_reaches_it_only_once_approved(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, assistant: None
) -> None:
    fake.add(
        tool_use("remember", {"fact": "Lea is allergic to nuts"}, say="Good to know."),
        text("Noted, no nuts for you."),
    )
    owner = await _signup(api, "memory-shop@example.com")
    widget = await _widget(api, owner)
    key, token = widget["widget_key"], preview_token(widget)
    first = await _visitor_says(api, key, "Please remember I'm allergic to nuts.", visitor_token=token)
    conversation = first["conversation_id"]
    await _until(lambda: _replies(api, owner, conversation), "the agent's reply")
    [proposed] = await _until(lambda: _facts(api, owner, "proposed"), "the proposed fact")
    assert (proposed["text"], proposed["conversation_id"]) == ("Lea is allergic to nuts", conversation)
    assert proposed["run_id"]

    # Not approved yet: the next question does not carry it.
    second = await _visitor_says(api, key, "What cake do you have?", visitor_token=token)
    await _until(lambda: _has_replies(api, owner, conversation, 2), "the second reply")
    assert "<facts>" not in _asked(fake.requests[-1])

    # The owner approves it, reworded; the next request has it, delimited and labelled.
    approved = await api.post(
        f"/v1/memory/facts/{proposed['fact_id']}/approve",
        json={"text": "Lea is allergic to nuts and almonds"},
        headers=_auth(owner),
    )
    assert approved.status_code == 202, approved.text
    assert [f["text"] for f in await _facts(api, owner, "approved", approved.json()["seq"])] == [
        "Lea is allergic to nuts and almonds"
    ]
    await _visitor_says(api, key, "And cookies?", visitor_token=token)
    await _until(lambda: _has_replies(api, owner, conversation, 3), "the third reply")
    assert "<facts>" in _asked(fake.requests[-1]) and "nuts and almonds" in _asked(fake.requests[-1])
    assert "<facts>" in _system(fake.requests[-1])  # the system prompt says what the tags hold

    # Forgotten: gone from the next request; a fact written by the owner holds everywhere.
    forgotten = await api.delete(f"/v1/memory/facts/{proposed['fact_id']}", headers=_auth(owner))
    assert forgotten.status_code == 202
    mine = await api.post("/v1/memory/facts", json={"text": "We close at 6 pm."}, headers=_auth(owner))
    assert mine.status_code == 202, mine.text
    await _facts(api, owner, "approved", mine.json()["seq"])
    await _visitor_says(api, key, "When do you close?", visitor_token=token)
    await _until(lambda: _has_replies(api, owner, conversation, 4), "the fourth reply")
    asked = _asked(fake.requests[-1])
    assert "almonds" not in asked and "We close at 6 pm." in asked
    await stack.verify_read_models()  # proposals, approvals and forgetting replay identically
    assert second["seq"] > first["seq"]


async def _has_replies(api: httpx.AsyncClient, owner: dict[str, str], conversation: str, count: int) -> bool:
    return len(await _replies(api, owner, conversation)) >= count


async def test_bad_fact_requests_are_refused_with_what_to_fix(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "memory-errors@example.com")
    empty = await api.post("/v1/memory/facts", json={"text": "  "}, headers=_auth(owner))
    assert empty.status_code == 400 and empty.json()["field"] == "text"
    long = await api.post("/v1/memory/facts", json={"text": "x" * 301}, headers=_auth(owner))
    assert long.status_code == 400
    nowhere = await api.post(
        "/v1/memory/facts", json={"text": "ok", "conversation_id": "c_nope"}, headers=_auth(owner)
    )
    assert nowhere.status_code == 404 and nowhere.json()["field"] == "conversation_id"
    assert (
        await api.post("/v1/memory/facts/fa_nope/approve", json={}, headers=_auth(owner))
    ).status_code == 404
    assert (await api.delete("/v1/memory/facts/fa_nope", headers=_auth(owner))).status_code == 404
    stranger = await _signup(api, "memory-stranger@example.com")
    written = await api.post("/v1/memory/facts", json={"text": "Secret"}, headers=_auth(owner))
    fact_id = written.json()["fact_id"]
    assert (await api.delete(f"/v1/memory/facts/{fact_id}", headers=_auth(stranger))).status_code == 404


async def test_a_long_conversation_gets_a_summary_the_model_writes(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, agent_models: ModelChoice, keyring: Keyring
) -> None:
    # A context of 120 characters: after a few messages, the older ones need summarising.
    role = asyncio.create_task(
        run_agent(
            stack.roles, stack.database_url, agent_models, keyring=keyring,
            settings=AgentSettings(debounce=0.2, context_chars=120), catalog=roomy_catalog(),
        )
    )  # fmt: skip
    try:
        owner = await _signup(api, "summary-shop@example.com")
        widget = await _widget(api, owner)
        key, token = widget["widget_key"], preview_token(widget)
        asked = [
            "Hello, I am Lea and I would like to order a birthday cake.",
            "It is for my daughter, she turns seven on Saturday.",
            "Chocolate, please, and no nuts at all.",
        ]
        conversation = ""
        for count, question in enumerate(asked, start=1):
            said = await _visitor_says(api, key, question, visitor_token=token)
            conversation = said["conversation_id"]
            await _until(lambda n=count, c=conversation: _has_replies(api, owner, c, n), f"reply {count}")
    finally:
        role.cancel()
        await asyncio.gather(role, return_exceptions=True)
    summaries = [r for r in fake.requests if _system(r) == SUMMARY_SYSTEM]
    assert summaries, "the model was asked for a summary"
    assert "<message" in _asked(summaries[0]) and "birthday cake" in _asked(summaries[0])
    assert not summaries[0].get("tools")  # a summary call uses no tools
    recorded = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if isinstance(s.event, ev.ConversationSummarized | ev.UsageRecorded)
    ]
    [*_, summarized] = [e for e in recorded if isinstance(e, ev.ConversationSummarized)]
    assert summarized.data.model == "claude-sonnet-4-6"
    assert summarized.data.summary == "Lea asks about the shop's hours."
    usage = [e for e in recorded if isinstance(e, ev.UsageRecorded) and e.data.source_id.endswith(":summary")]
    assert {e.data.metric for e in usage} == {"tokens_in", "tokens_out", "cost_micros"}
    last_answer = next(r for r in reversed(fake.requests) if _system(r) != SUMMARY_SYSTEM)
    assert "<summary>" in _asked(last_answer) and "Lea asks about the shop's hours." in _asked(last_answer)


def _system(request: dict[str, Any]) -> str:
    system = request.get("system", "")
    if isinstance(system, list):
        return "".join(block.get("text", "") for block in system)
    return str(system)


async def test_a_brief_with_a_model_is_the_models_json_and_is_metered(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic
) -> None:
    owner = await _signup(api, "brief-model@example.com")
    key = (await _widget(api, owner))["widget_key"]
    said = await _visitor_says(api, key, "Hola, necesito la dirección para el viernes.")
    fake.add(
        text(
            '{"summary": "Lea needs the address by Friday.",'
            ' "action_items": [{"text": "Send Lea the address", "due": "2026-11-27"}]}'
        ),
        text("Sorry, I can't."),  # not a brief: the extractive one stands in
    )
    path = f"/v1/conversations/{said['conversation_id']}/summary"
    brief = (await api.get(path, params={"min_seq": said["seq"]}, headers=_auth(owner))).json()
    assert (brief["summary"], brief["model"]) == ("Lea needs the address by Friday.", "claude-sonnet-4-6")
    assert brief["action_items"] == [{"text": "Send Lea the address", "due": "2026-11-27"}]
    asked = fake.requests[-1]
    assert _system(asked) == BRIEF_SYSTEM and "<message" in _asked(asked) and not asked.get("tools")
    await stack.wait_caught_up(names=["usage"])  # the brief's cost, appended before it answered, folded
    usage = (await api.get("/v1/usage", headers=_auth(owner))).json()
    assert any(u["metric"] == "cost_micros" for u in usage)
    again = await _visitor_says(api, key, "Gracias.", visitor_token=said["visitor_token"])
    fallback = (await api.get(path, params={"min_seq": again["seq"]}, headers=_auth(owner))).json()
    assert fallback["model"] is None and "Visitor: Gracias." in fallback["summary"]


async def test_the_agent_knows_the_person_the_owners_notes_and_with_leave_their_other_channels(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, assistant: None
) -> None:
    owner = await _signup(api, "person-shop@example.com")
    widget = await _widget(api, owner)
    key, token = widget["widget_key"], preview_token(widget)
    first = await _visitor_says(api, key, "Hi, it's Lea again.", visitor_token=token)
    conversation = first["conversation_id"]
    await _until(lambda: _has_replies(api, owner, conversation, 1), "the first reply")
    here = (await api.get(f"/v1/conversations/{conversation}", headers=_auth(owner))).json()["contact_id"]
    assert here is not None and "<person>" not in _asked(fake.requests[-1])  # no notes yet

    # The same person on Telegram (merged by the owner), and the owner's notes on her.
    elsewhere = ids.new_id(ids.CONVERSATION)
    actor = "connector:telegram:cn_t"
    await stack.store.append_many([
        ev.new_event(
            ev.ConversationCreated, tenant_id=owner["tenant_id"], aggregate_id=elsewhere, actor=actor,
            data=ev.ConversationCreatedData(
                channel="telegram", connection_id="cn_t", kind="direct", title="Lea", external_id="99"
            ),
        ),
        ev.new_event(
            ev.MessageReceived, tenant_id=owner["tenant_id"], aggregate_id=elsewhere, actor=actor,
            data=ev.MessageReceivedData(
                message_id=ids.new_id(ids.MESSAGE), connection_id="cn_t", channel="telegram",
                provider_message_id="99-1", sender=ev.Sender(id="tg:99", name="Lea"),
                text="My order number is 4711.", sent_at=datetime.now(UTC),
            ),
        ),
        ev.new_event(  # what the agent kept of the earlier part of that conversation
            ev.ConversationSummarized, tenant_id=owner["tenant_id"], aggregate_id=elsewhere,
            actor="agent", data=ev.ConversationSummarizedData(
                summary="Lea: She ordered the blue kettle in May.", through_message_id="m_earlier",
                through_sent_at=datetime.now(UTC), messages=6,
            ),
        ),
    ])  # fmt: skip
    there = contacts.first_contact_id(contacts.identity_id("cn_t", "tg:99"))
    await stack.wait_caught_up()
    merged = await api.post(f"/v1/contacts/{here}/merge", json={"contact_id": there}, headers=_auth(owner))
    noted = await api.put(
        f"/v1/contacts/{here}/notes", json={"notes": "VIP, prefers email."}, headers=_auth(owner)
    )
    assert merged.status_code == noted.status_code == 202, merged.text
    await stack.wait_caught_up()
    await _visitor_says(api, key, "Any news?", visitor_token=token)
    await _until(lambda: _has_replies(api, owner, conversation, 2), "the second reply")
    asked = _asked(fake.requests[-1])
    assert "<person>" in asked and "VIP, prefers email." in asked
    assert "4711" not in asked and "kettle" not in asked  # other channels only where the owner allows it

    # Cross-channel memory on: what she said on Telegram reaches the agent too.
    agents = (await api.get("/v1/agents", headers=_auth(owner))).json()
    agent = agents[0]
    rules = {**agent["rules"], "cross_channel_memory": True}
    for dropped in ("auto_reply_outside_quiet",):
        rules.pop(dropped, None)
    changed = await api.put(f"/v1/agents/{agent['agent_id']}", json={"rules": rules}, headers=_auth(owner))
    assert changed.status_code == 202, changed.text
    await stack.wait_caught_up()
    await _visitor_says(api, key, "Did it ship?", visitor_token=token)
    await _until(lambda: _has_replies(api, owner, conversation, 3), "the third reply")
    asked = _asked(fake.requests[-1])
    assert "Latest in their conversation on telegram" in asked and "4711" in asked
    assert "Their conversation on telegram, in short: Lea: She ordered the blue kettle in May." in asked
