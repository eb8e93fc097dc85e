"""Away mode over the real gateway, read models, agent and the gateway's scheduler: while away,
each direct conversation on the chosen channels gets the away answer once (or a draft of it),
which does not count as a reply; the period runs out by itself at ``until`` (or the owner comes
back) and ``GET /v1/away`` and the digest tell what happened meanwhile; a replay rebuilds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from domain import events as ev
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.integration.conftest import Stack
from tests.integration.test_agent import _decided, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages, _visitor_says, _widget

MESSAGE = "I'm away until Monday and will answer then."


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


async def _away(api: httpx.AsyncClient, owner: dict[str, str], seconds: float, **body: Any) -> httpx.Response:
    until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    return await api.put("/v1/away", json={"until": until, **body}, headers=_auth(owner))


async def _off(api: httpx.AsyncClient, owner: dict[str, str]) -> dict[str, Any]:
    """The owner's website chat with the agent off: only the away answer writes there."""
    widget = await _widget(api, owner)
    changed = await api.patch(
        f"/v1/channels/{widget['connection_id']}", json={"agent_mode": "off"}, headers=_auth(owner)
    )
    assert changed.status_code == 202, changed.text
    return widget


def _notices(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["direction"] == "out"]


async def test_away_answers_each_conversation_once_and_runs_out_by_itself(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "away@example.com")
    widget = await _off(api, owner)
    key = widget["widget_key"]
    before = await _visitor_says(api, key, "Anyone there?")  # before the away period: no answer
    await _decided(stack, nc, before["seq"])
    went = await _away(api, owner, 6, message=MESSAGE, connection_ids=[widget["connection_id"]])
    assert went.status_code == 202, went.text
    state = (await api.get("/v1/away", params={"min_seq": went.json()["seq"]}, headers=_auth(owner))).json()
    assert state["on"] is True and state["away"]["message"] == MESSAGE
    assert state["away"]["connection_ids"] == [widget["connection_id"]]

    first = await _visitor_says(api, key, "Hello, is the shop open on Sunday?", name="Noor")
    again = await _visitor_says(api, key, "Hello??", visitor_token=first["visitor_token"])
    other = await _visitor_says(api, key, "Do you ship abroad?", name="Ravi")
    await _decided(stack, nc, other["seq"])
    await stack.wait_caught_up()

    async def noticed(conversation: str) -> list[dict[str, Any]]:
        return _notices(await _messages(api, owner, conversation))

    [notice] = await _until(lambda: noticed(first["conversation_id"]), "the away answer to Noor")
    assert notice["text"] == MESSAGE and notice["sender_name"] == "Moltbot"
    assert len(await _until(lambda: noticed(other["conversation_id"]), "the away answer to Ravi")) == 1
    await _decided(stack, nc, again["seq"])
    assert len(await noticed(first["conversation_id"])) == 1  # once per conversation, not per message
    assert await noticed(before["conversation_id"]) == []  # it wrote before: no answer now
    waiting = await api.get("/v1/conversations", params={"needs_reply": "true"}, headers=_auth(owner))
    assert {first["conversation_id"], other["conversation_id"]} <= {
        c["conversation_id"] for c in waiting.json()["items"]
    }  # the away answer is no reply

    async def back() -> dict[str, Any] | None:
        found: dict[str, Any] = (await api.get("/v1/away", headers=_auth(owner))).json()
        return found if found["away"]["ended_at"] else None

    over = await _until(back, "the away period to run out", timeout=20)
    assert over["on"] is False and over["away"]["ended_reason"] == "until"
    assert over["while_away"] == {"received": 3, "conversations": 2, "noticed": 2, "still_waiting": 2}
    ended = [
        s.event
        async for s in stack.store.read_events(subject=f"ev.{owner['tenant_id']}.>")
        if isinstance(s.event, ev.AwayEnded)
    ]
    assert len(ended) == 1  # once, though the scheduler ticked every second
    digest = (await api.get("/v1/digest", headers=_auth(owner))).json()
    assert digest["while_away"]["happened"]["received"] == 3
    assert digest["while_away"]["away"]["away_id"] == went.json()["away_id"]

    # Back: a new message gets no away answer.
    later = await _visitor_says(api, key, "Thanks!", name="Sam")
    await _decided(stack, nc, later["seq"])
    await stack.wait_caught_up()
    assert await noticed(later["conversation_id"]) == []
    await stack.verify_read_models()  # away periods and their answers replay identically


async def test_away_as_drafts_on_every_channel_until_the_owner_comes_back(
    api: httpx.AsyncClient, stack: Stack, nc: Client, assistant: None
) -> None:
    owner = await _signup(api, "away-drafts@example.com")
    key = (await _off(api, owner))["widget_key"]
    went = await _away(api, owner, 3600, mode="draft")  # the default message, every channel
    assert went.status_code == 202, went.text
    said = await _visitor_says(api, key, "Can I book a table?")
    await _decided(stack, nc, said["seq"])

    async def drafted() -> list[Any]:
        response = await api.get(f"/v1/conversations/{said['conversation_id']}/drafts", headers=_auth(owner))
        return [d for d in response.json() if d["status"] == "pending"]

    [draft] = await _until(drafted, "the away answer as a draft")
    assert draft["text"] == "I'm away at the moment and will answer when I'm back."
    assert _notices(await _messages(api, owner, said["conversation_id"])) == []  # nothing sent

    returned = await api.delete("/v1/away", headers=_auth(owner))
    assert returned.status_code == 202, returned.text
    state = (
        await api.get("/v1/away", params={"min_seq": returned.json()["seq"]}, headers=_auth(owner))
    ).json()
    assert (state["on"], state["away"]["ended_reason"]) == (False, "returned")
    twice = await api.delete("/v1/away", headers=_auth(owner))
    assert (twice.status_code, twice.json()["error"]) == (409, "not_away")


async def test_bad_away_periods_are_refused_with_what_to_fix(api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "away-bad@example.com")
    assert (await api.get("/v1/away", headers=_auth(owner))).json() == {
        "away": None,
        "on": False,
        "while_away": None,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"until": "2020-01-01T00:00:00Z"}, "until"),
        ({"until": "2026-12-01T00:00:00"}, "until"),  # no time zone
        ({"until": (datetime.now(UTC) + timedelta(days=2)).isoformat(), "message": "  "}, "message"),
        ({"until": (datetime.now(UTC) + timedelta(days=2)).isoformat(), "connection_ids": ["cn_nope"]},
         "connection_ids"),
    ]  # fmt: skip
    for body, field in cases:
        refused = await api.put("/v1/away", json=body, headers=_auth(owner))
        assert (refused.status_code, refused.json()["field"]) == (400, field), (body, refused.text)
    wrong_mode = await _away(api, owner, 60, mode="loud")
    assert wrong_mode.status_code == 400
