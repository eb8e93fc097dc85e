"""The integration tests' fixtures live in tests/conftest.py (shared with tests/e2e); the
helpers tests import by name are re-exported here, with the provider fakes a module asks
for by name (``tg``, ``slack_fake``, ``discord_fake``; ``all_fakes_endpoints`` for all three)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapters.channels.endpoints import ProviderEndpoints
from domain import events as ev
from domain import ids
from domain.envelope import Role
from gateway.auth import Caller, Tokens
from tests.conftest import REPO_ROOT, Stack
from tests.fakes.discord_api import FakeDiscord, fake_discord
from tests.fakes.slack_api import FakeSlack, fake_slack
from tests.fakes.telegram_api import FakeTelegram, fake_telegram

__all__ = ["REPO_ROOT", "Stack", "member_token", "preview_token", "send_drafts"]


def preview_token(widget: dict[str, Any]) -> str:
    """The visitor token of the owner's own "Try it" chat (``preview_url``'s fragment)."""
    return parse_qs(urlsplit(widget["preview_url"]).fragment)["preview"][0]


async def send_drafts(
    api: httpx.AsyncClient, headers: dict[str, str], want: int, *, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Wait until the inbox's conversations hold ``want`` drafts of the agent waiting for a
    person, and send each as written (``POST /v1/drafts/{id}/send``); the drafts sent."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        pending: list[dict[str, Any]] = []
        for conversation in (await api.get("/v1/conversations", headers=headers)).json()["items"]:
            path = f"/v1/conversations/{conversation['conversation_id']}/drafts"
            pending += (await api.get(path, headers=headers)).json()
        if len(pending) >= want:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(pending)} of {want} drafts")
        await asyncio.sleep(0.1)
    for draft in pending:
        sent = await api.post(f"/v1/drafts/{draft['draft_id']}/send", json={}, headers=headers)
        assert sent.status_code == 202, sent.text
    return pending


async def member_token(stack: Stack, key_file: Path, tenant_id: str, role: Role) -> str:
    """An access token of a new person added to ``tenant_id`` as ``role`` (a ``member.added``
    event, folded before this returns): every request reads the role from the read model."""
    user_id = ids.new_id(ids.USER)
    added = ev.new_event(
        ev.MemberAdded, tenant_id=tenant_id, aggregate_id=tenant_id, actor="user:test",
        data=ev.MemberAddedData(user_id=user_id, role=role),
    )  # fmt: skip
    await stack.store.append(added)
    await stack.wait_caught_up()
    return (
        Tokens.from_pem_file(key_file)
        .issue(Caller(user_id=user_id, tenant_id=tenant_id, role=role))
        .access_token
    )


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as server:
        yield server


@pytest.fixture
async def slack_fake() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as server:
        yield server


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with fake_discord() as server:
        yield server


@pytest.fixture
def all_fakes_endpoints(
    tg: FakeTelegram, slack_fake: FakeSlack, discord_fake: FakeDiscord
) -> ProviderEndpoints:
    """Telegram, Slack and Discord all pointed at their local fakes."""
    return ProviderEndpoints(
        telegram_api_base=tg.base_url,
        slack_api_base=slack_fake.api_base,
        discord_api_base=discord_fake.api_base,
        discord_gateway_url=discord_fake.gateway_url,
        discord_cdn_base=discord_fake.api_base.removesuffix("/api/v10"),
    )
