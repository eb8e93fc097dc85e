"""Replies that grow in place, over the whole product: on Telegram, Slack and Discord (each
at its local fake, through the real SDK) an answering agent sends one message early and
edits it as the model writes — never more often than the channel's edit interval — and the
last edit is the full reply, recorded as ``message.edited``. A channel without edits (the
website chat) gets the finished reply once."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from adapters.agent.choice import ModelChoice
from adapters.agent.growing_reply import CURSOR
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.registry import capabilities_for
from domain.plans import Catalog
from tests.conftest import roomy_catalog
from tests.fakes.anthropic_api import FakeAnthropic, fake_anthropic, text
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_api import user as discord_user
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import ADA, FakeTelegram, private_chat
from tests.integration.conftest import Stack
from tests.integration.test_agent import _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _messages

# About five seconds of writing: 50 words, a tenth of a second apart.
REPLY = " ".join(f"word{n}" for n in range(1, 51)) + ". That is all."
SLOWLY = 0.1


@pytest.fixture
def plan_catalog() -> Catalog:
    return roomy_catalog()


@pytest.fixture
def endpoints(all_fakes_endpoints: ProviderEndpoints) -> ProviderEndpoints:
    return all_fakes_endpoints


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with fake_anthropic(otherwise=text(REPLY, delta_every=SLOWLY)) as server:
        yield server


@pytest.fixture
async def agent_models(fake: FakeAnthropic) -> AsyncIterator[ModelChoice]:
    models = ModelChoice("sk-test-key", base_url=fake.base_url)
    yield models
    await models.aclose()


async def _connected(api: httpx.AsyncClient, owner: dict[str, str], kind: str, body: dict[str, str]) -> str:
    """Connect a channel, switch its agent to ``auto`` and wait until it is connected."""
    connected = await api.post(f"/v1/channels/{kind}/connect", json=body, headers=_auth(owner))
    assert connected.status_code == 202, connected.text
    connection_id: str = connected.json()["connection_id"]
    answering = await api.patch(
        f"/v1/channels/{connection_id}", json={"agent_mode": "auto"}, headers=_auth(owner)
    )
    assert answering.status_code == 202, answering.text

    async def ready() -> bool:
        params = {"min_seq": answering.json()["seq"]}
        channels = (await api.get("/v1/channels", params=params, headers=_auth(owner))).json()
        return any(c["connection_id"] == connection_id and c["state"] == "connected" for c in channels)

    await _until(ready, f"the {kind} channel to be connected")
    return connection_id


def _assert_grew_in_place(edits: Sequence[dict[str, Any]], texts: Sequence[str], every: float) -> None:
    """Edits with the text so far and the cursor, each longer, at most one per ``every``
    seconds, the last one the full reply."""
    assert texts[-1] == REPLY
    growing = texts[:-1]
    assert len(growing) >= 2, texts  # it grew in several steps, not in one
    assert all(t.endswith(CURSOR) for t in growing)
    assert all(len(a) < len(b) for a, b in itertools.pairwise(growing))
    writing = len(REPLY.split()) * SLOWLY
    assert len(edits) <= writing / every + 2  # bounded by the interval, not by the deltas
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(edits)]
    assert min(gaps) >= every * 0.9, gaps  # the provider's limit held (a little clock slack)


async def _inbox_text(api: httpx.AsyncClient, owner: dict[str, str]) -> str | None:
    """The agent's reply as the inbox shows it, once it is the final text."""
    conversations = (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]
    for conversation in conversations:
        for message in await _messages(api, owner, conversation["conversation_id"]):
            if message["agent_run_id"] and message["text"] == REPLY and message["edited_at"]:
                return str(message["text"])
    return None


async def test_a_telegram_reply_grows_in_one_message(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram, assistant: None
) -> None:
    owner = await _signup(api, "grow-telegram@example.com")
    token = tg.add_bot("grow_bot", "Grow")
    await _connected(api, owner, "telegram", {"bot_token": token})
    tg.push_message(private_chat(ADA), ADA, "Tell me everything.")

    async def finished() -> bool:
        return bool(tg.edited) and tg.edited[-1]["text"] == REPLY

    await _until(finished, "the reply's final edit on Telegram", timeout=40)
    [sent] = tg.sent  # one message, edited: never a second one
    assert sent["text"].endswith(CURSOR) and sent["chat_id"] == ADA["id"]
    assert {e["message_id"] for e in tg.edited} == {sent["message_id"]}
    every = capabilities_for("telegram").edit_every
    _assert_grew_in_place(tg.edited, [sent["text"], *(e["text"] for e in tg.edited)], every)
    assert await _until(lambda: _inbox_text(api, owner), "the final text in the inbox") == REPLY


async def test_a_slack_reply_grows_in_one_message(
    api: httpx.AsyncClient, stack: Stack, slack_fake: FakeSlack, assistant: None
) -> None:
    owner = await _signup(api, "grow-slack@example.com")
    workspace = slack_fake.add_workspace("Growing Engines")
    direct = slack_fake.add_channel(workspace.team, "ada", im=True)
    body = {"bot_token": workspace.bot_token, "app_token": workspace.app_token}
    await _connected(api, owner, "slack", body)
    slack_fake.push_event(slack_fake.message(workspace.team, direct, "U0ADA", "Tell me everything."))

    async def finished() -> bool:
        return bool(slack_fake.updated) and slack_fake.updated[-1]["text"] == REPLY

    await _until(finished, "the reply's final edit on Slack", timeout=40)
    [sent] = slack_fake.sent
    assert {u["ts"] for u in slack_fake.updated} == {sent["ts"]}
    every = capabilities_for("slack").edit_every
    _assert_grew_in_place(slack_fake.updated, [sent["text"], *(u["text"] for u in slack_fake.updated)], every)
    assert await _until(lambda: _inbox_text(api, owner), "the final text in the inbox") == REPLY


async def test_a_discord_reply_in_a_server_grows_at_the_slower_group_pace(
    api: httpx.AsyncClient, stack: Stack, discord_fake: FakeDiscord, assistant: None
) -> None:
    owner = await _signup(api, "grow-discord@example.com")
    token = discord_fake.add_bot("grower", "Grower")
    general = discord_fake.add_guild("Growing Club", ["general"])["channels"][0]["id"]
    await _connected(api, owner, "discord", {"bot_token": token})
    bot = discord_fake.bot_user(token)
    ada = discord_user(4343, "ada", "Ada Lovelace")
    discord_fake.push_message(general, ada, f"<@{bot['id']}> tell me everything.", mentions=[bot])

    async def finished() -> bool:
        return bool(discord_fake.edited) and discord_fake.edited[-1]["content"] == REPLY

    await _until(finished, "the reply's final edit on Discord", timeout=40)
    [sent] = discord_fake.sent
    assert {e["message_id"] for e in discord_fake.edited} == {sent["message_id"]}
    every = capabilities_for("discord").group_edit_every  # a server channel is a group
    texts = [sent["content"], *(e["content"] for e in discord_fake.edited)]
    _assert_grew_in_place(discord_fake.edited, texts, every)
    assert await _until(lambda: _inbox_text(api, owner), "the final text in the inbox") == REPLY
