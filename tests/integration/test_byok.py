"""Bring your own key: a tenant's own Anthropic key is sealed in the vault, used for its
agent's runs (not the deployment's), never shown or logged, and forgetting it goes back
to the deployment's model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from adapters.agent.choice import ModelChoice
from tests.fakes.anthropic_api import FakeAnthropic, fake_anthropic, text
from tests.integration.conftest import Stack
from tests.integration.test_agent import _replies, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _visitor_says, _widget

OWN_KEY = "sk-ant-api03-tenant-own-key-0123456789abcdef"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with fake_anthropic() as server:
        yield server


@pytest.fixture
async def agent_models(fake: FakeAnthropic) -> AsyncIterator[ModelChoice]:
    models = ModelChoice(None, base_url=fake.base_url)  # the deployment has no key of its own
    yield models
    await models.aclose()


async def test_a_tenant_key_is_used_sealed_and_never_shown(
    api: httpx.AsyncClient, stack: Stack, fake: FakeAnthropic, assistant: None
) -> None:
    owner = await _signup(api, "byok@example.com")
    assert (
        await api.put("/v1/agents/own-key", json={"api_key": "short"}, headers=_auth(owner))
    ).status_code == 400
    stored = await api.put("/v1/agents/own-key", json={"api_key": OWN_KEY}, headers=_auth(owner))
    assert stored.status_code == 202, stored.text
    assert OWN_KEY not in stored.text

    async def byok_plan() -> dict[str, object] | None:
        status = (await api.get("/v1/agents/own-key", headers=_auth(owner))).json()
        return status if status["plan"] == "byok" else None

    status = await _until(byok_plan, "the plan to become byok")
    assert status == {"anthropic": True, "plan": "byok"}

    fake.add(text("Answered with your own key."))
    key = (await _widget(api, owner))["widget_key"]
    visitor = await _visitor_says(api, key, "Hello?")
    [reply] = await _until(lambda: _replies(api, owner, visitor["conversation_id"]), "the reply")
    assert reply["text"] == "Answered with your own key."
    [headers] = fake.headers
    assert OWN_KEY in (headers.get("x-api-key", "") + headers.get("authorization", ""))

    # The key is in no event and in no column in clear.
    log = [s async for s in stack.store.read(subject=f"ev.{owner['tenant_id']}.>")]
    assert all(OWN_KEY.encode() not in record.data for record in log)
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT * FROM vault.credentials")).fetchall()
    assert len(rows) == 1
    assert OWN_KEY.encode() not in json.dumps([[str(v) for v in row] for row in rows]).encode()

    forgotten = await api.delete("/v1/agents/own-key", headers=_auth(owner))
    assert forgotten.status_code == 202

    async def free_plan() -> dict[str, object] | None:
        status = (await api.get("/v1/agents/own-key", headers=_auth(owner))).json()
        return status if status["plan"] == "free" else None

    assert await _until(free_plan, "the plan to go back to free") == {"anthropic": False, "plan": "free"}
    await _visitor_says(api, key, "And now?", visitor_token=visitor["visitor_token"])
    # No key at all: the offline model answers, and only as a draft for the owner (it never
    # writes to a visitor by itself).
    [draft] = await _until(lambda: _drafts(api, owner, visitor["conversation_id"]), "the offline draft")
    assert (draft["reason"], draft["text"].startswith("Thanks for your message")) == ("offline_model", True)
    assert len(await _replies(api, owner, visitor["conversation_id"])) == 1
    assert len(fake.requests) == 1


async def _drafts(
    api: httpx.AsyncClient, owner: dict[str, str], conversation: str
) -> list[dict[str, object]]:
    response = await api.get(f"/v1/conversations/{conversation}/drafts", headers=_auth(owner))
    assert response.status_code == 200, response.text
    drafts: list[dict[str, object]] = response.json()
    return drafts
