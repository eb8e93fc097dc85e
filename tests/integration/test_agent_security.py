"""The agent's limits, over the whole product with the built-in offline model: a visitor's
tools never reach another conversation unless the owner named them, unknown models are
refused, previews are for owners and admins within budget, metered and rate-limited, and a
flooded conversation gets a bounded number of runs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings, Orchestrator
from adapters.channels import registry as channel_registry
from adapters.nats.connection import connection
from adapters.nats.event_store import EventStore
from domain import events as ev
from domain.models import KNOWN_MODELS
from domain.plans import Catalog
from projections.agent_reads import AgentReads
from tests.conftest import roomy_catalog
from tests.integration.conftest import Stack, member_token, preview_token, send_drafts
from tests.integration.test_agent import _replies, _runs, _sse, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages, _visitor_says, _widget


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()  # these tests are about the agent's own guards; the plans': test_plan_limits.py


SECRET = "secretword42"
_FOUND = re.compile(r"found (\d+) matching")


async def _search_reply(api: httpx.AsyncClient, owner: dict[str, str], key: str, **visitor: str) -> int:
    """A visitor asks the offline model to search (``search: …``); how many hits it reported."""
    asked = await _visitor_says(api, key, f"search: {SECRET}", **visitor)
    path = f"/v1/conversations/{asked['conversation_id']}/drafts"

    async def answered() -> list[dict[str, Any]]:  # the offline model drafts for visitors
        drafts = (await api.get(path, headers=_auth(owner))).json()
        return [d for d in drafts if "I searched your history" in d["text"]]

    [reply] = await _until(answered, "the search reply")
    found = _FOUND.search(reply["text"])
    assert found, reply["text"]
    return int(found.group(1))


async def _secret_told_by_another_visitor(api: httpx.AsyncClient, owner: dict[str, str], key: str) -> None:
    told = await _visitor_says(api, key, f"My {SECRET} is on card 4242", name="Alice")
    await send_drafts(api, _auth(owner), 1)  # the owner sends the agent's draft, which quotes it
    await _until(lambda: _replies(api, owner, told["conversation_id"]), "the reply to Alice")


async def test_a_visitor_cannot_search_another_visitors_conversation(
    api: httpx.AsyncClient, stack: Stack, assistant: None
) -> None:
    owner = await _signup(api, "search-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    await _secret_told_by_another_visitor(api, owner, key)  # Alice's message, and the reply quoting it

    # A stranger with a new visitor token: only their own message matches, in their conversation.
    assert await _search_reply(api, owner, key, name="Mallory") == 1
    [run] = [r for r in await _runs(stack, owner["tenant_id"]) if r["tool_calls"]]
    assert [c["name"] for c in run["tool_calls"]] == ["search_history"]


async def test_a_sender_the_owner_named_searches_the_whole_inbox(
    api: httpx.AsyncClient, stack: Stack, assistant: None
) -> None:
    owner = await _signup(api, "trusted-shop@example.com")
    key = (await _widget(api, owner))["widget_key"]
    await _secret_told_by_another_visitor(api, owner, key)
    hello = await _visitor_says(api, key, "Hello, it is me, the owner's partner", name="Sam")
    conversation = hello["conversation_id"]
    await send_drafts(api, _auth(owner), 1)
    await _until(lambda: _replies(api, owner, conversation), "the reply to Sam")
    [sam] = [m for m in await _messages(api, owner, conversation) if m["direction"] == "in"]

    [agent] = (await api.get("/v1/agents", headers=_auth(owner))).json()
    rules = {"inbox_search_senders": [sam["sender_id"]]}
    named = await api.put(f"/v1/agents/{agent['agent_id']}", json={"rules": rules}, headers=_auth(owner))
    assert named.status_code == 202, named.text
    listed = await api.get("/v1/agents", params={"min_seq": named.json()["seq"]}, headers=_auth(owner))
    assert listed.json()[0]["rules"]["inbox_search_senders"] == [sam["sender_id"]]

    # Alice's message, the reply quoting it, and Sam's own question.
    assert await _search_reply(api, owner, key, visitor_token=hello["visitor_token"]) == 3
    # Naming Sam opened nothing to anyone else.
    assert await _search_reply(api, owner, key, name="Mallory") == 1

    bad = await api.put(
        f"/v1/agents/{agent['agent_id']}",
        json={"rules": {"inbox_search_senders": ["two words"]}},
        headers=_auth(owner),
    )
    assert (bad.status_code, bad.json()["field"]) == (400, "rules")


async def test_an_agent_uses_only_a_model_the_catalog_prices(api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "models-shop@example.com")
    [agent] = (await api.get("/v1/agents", params={"min_seq": owner["seq"]}, headers=_auth(owner))).json()
    path = f"/v1/agents/{agent['agent_id']}"
    refused = [
        await api.put(path, json={"model": "claude-opus-9"}, headers=_auth(owner)),
        await api.put(path, json={"model": "claude-opus-4-1-latest"}, headers=_auth(owner)),
        await api.post("/v1/agents", json={"model": "gpt-4o"}, headers=_auth(owner)),
        await api.post(
            f"{path}/test", json={"text": "hi", "config": {"model": "claude-x"}}, headers=_auth(owner)
        ),
    ]
    for response in refused:
        assert response.status_code == 400, response.text
        body = response.json()
        assert (body["error"], body["field"]) == ("invalid_request", "model")
        assert all(model in body["detail"] for model in KNOWN_MODELS)  # it says what to choose

    for model in ("claude-opus-4-1-20250805", "claude-sonnet-4-5-20250929", "offline-1", "claude-haiku-4-5"):
        accepted = await api.put(path, json={"model": model}, headers=_auth(owner))
        assert accepted.status_code == 202, (model, accepted.text)


async def _preview(api: httpx.AsyncClient, account: dict[str, str], agent_id: str) -> httpx.Response:
    return await api.post(
        f"/v1/agents/{agent_id}/test", json={"text": "what time is it?"}, headers=_auth(account)
    )


async def test_a_preview_is_for_owners_and_admins(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    owner = await _signup(api, "preview-roles@example.com")
    [agent] = (await api.get("/v1/agents", params={"min_seq": owner["seq"]}, headers=_auth(owner))).json()
    for role, status in (("member", 403), ("admin", 200)):
        token = await member_token(stack, tmp_path / "jwt.pem", owner["tenant_id"], role)  # type: ignore[arg-type]
        account = {"token": token}
        response = await _preview(api, account, agent["agent_id"])
        assert response.status_code == status, (role, response.text)
    assert response.headers["content-type"].startswith("text/event-stream")


async def test_a_preview_is_metered_and_stops_with_the_budget(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "preview-meter@example.com")
    [agent] = (await api.get("/v1/agents", params={"min_seq": owner["seq"]}, headers=_auth(owner))).json()
    before = await stack.store.last_seq()
    url = f"/v1/agents/{agent['agent_id']}/test"
    async with api.stream("POST", url, json={"text": "what time is it?"}, headers=_auth(owner)) as response:
        assert response.status_code == 200
        [*_, (name, done)] = await _sse(response)
    assert name == "done"

    log = stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
    recorded = [s.event async for s in log if s.seq > before]
    usage = {e.data.metric: e.data for e in recorded if isinstance(e, ev.UsageRecorded)}
    assert len(recorded) == len(usage) == 3  # usage only: nothing was sent
    assert (usage["tokens_in"].quantity, usage["tokens_out"].quantity) == (
        done["tokens_in"],
        done["tokens_out"],
    )
    assert usage["cost_micros"].quantity == 0  # the offline model is free
    assert len({u.source_id for u in usage.values()}) == 1
    assert str(usage["tokens_in"].source_id).startswith("preview_")
    seen = await api.get("/v1/usage", params={"min_seq": await stack.store.last_seq()}, headers=_auth(owner))
    metrics = {u["metric"]: u["quantity"] for u in seen.json()}
    assert metrics["tokens_in"] == done["tokens_in"] > 0
    assert metrics["tokens_out"] == done["tokens_out"] > 0

    spent = ev.new_event(
        ev.UsageRecorded, tenant_id=owner["tenant_id"], aggregate_id=owner["tenant_id"], actor="test",
        data=ev.UsageRecordedData(metric="cost_micros", quantity=2_000_000, source_id="earlier-runs"),
    )  # fmt: skip
    await stack.store.append(spent)
    await stack.wait_caught_up(names=["usage"])
    refused = await _preview(api, owner, agent["agent_id"])
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"] == "budget_exhausted"


async def test_previews_are_rate_limited_per_tenant(api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "preview-flood@example.com")
    [agent] = (await api.get("/v1/agents", params={"min_seq": owner["seq"]}, headers=_auth(owner))).json()
    answered = 0
    while (refused := await _preview(api, owner, agent["agent_id"])).status_code == 200 and answered < 21:
        answered += 1
    # The default limit is 10 a minute (a fixed window: one may end while the test runs).
    assert 10 <= answered <= 20
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    # Another inbox is not held back by this one.
    other = await _signup(api, "preview-calm@example.com")
    [theirs] = (await api.get("/v1/agents", params={"min_seq": other["seq"]}, headers=_auth(other))).json()
    assert (await _preview(api, other, theirs["agent_id"])).status_code == 200


async def test_a_flooded_conversation_gets_a_bounded_number_of_runs(
    api: httpx.AsyncClient, stack: Stack, agent_models: ModelChoice
) -> None:
    reads = AgentReads(stack.database_url)
    await reads.open()
    try:
        async with connection(stack.nats_url, name="test-agent") as nc:
            settings = AgentSettings(debounce=0.3, agent_runs_per_conversation=2)
            orchestrator = Orchestrator(
                nc,
                reads,
                agent_models,
                store=EventStore(nc, sealer=stack.store.sealer),
                settings=settings,
                agent_mode_for=channel_registry.agent_mode_for,
                catalog=roomy_catalog(),
            )
            running = asyncio.create_task(orchestrator.run())
            try:
                owner = await _signup(api, "flood-shop@example.com")
                widget = await _widget(api, owner)
                # The owner floods their own "Try it" chat, where the offline model answers.
                first = await _visitor_says(
                    api, widget["widget_key"], "one", visitor_token=preview_token(widget)
                )
                key = widget["widget_key"]
                token, conversation = first["visitor_token"], first["conversation_id"]
                for answered, text in ((1, "two"), (2, "three")):
                    await _until(
                        lambda n=answered: _has(n, _replies(api, owner, conversation)), f"reply {answered}"
                    )
                    await _visitor_says(api, key, text, visitor_token=token)

                async def limited() -> bool:
                    return orchestrator.decisions["rate_limited"] >= 1

                await _until(limited, "the third message to be rate-limited")
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
    finally:
        await reads.close()
    assert len(await _runs(stack, owner["tenant_id"])) == 2
    assert len(await _replies(api, owner, conversation)) == 2


async def _has(count: int, items: Any) -> bool:
    return len(await items) >= count
