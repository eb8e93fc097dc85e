"""Plan limits as a new user meets them, over the whole product (plans.yaml as shipped):
the billing page's picture of the plan, a third channel, a device and a second agent
refused with 402 and the plan that would allow them, a model the plan does not include,
an operator moving the inbox to Pro (``moltbot tenants set-plan``) lifting them, and a
downgrade deleting nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.agent import spend
from adapters.channels.endpoints import ProviderEndpoints
from tests.conftest import REPO_ROOT, Stack
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.test_gateway import _auth, _signup


@pytest.fixture
def endpoints(all_fakes_endpoints: ProviderEndpoints) -> ProviderEndpoints:
    return all_fakes_endpoints  # Telegram at its local fake


async def _moltbot(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTBOT_")} | {
        "MOLTBOT_NATS_URL": stack.nats_url,
        "MOLTBOT_DATABASE_URL": stack.database_url,
        **stack.vault_environ(),
        "MOLTBOT_LOG_FORMAT": "json",
    }
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "moltbot", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _use(billing: dict[str, Any], limit: str) -> tuple[int | None, int, bool]:
    found = next(u for u in billing["limits"] if u["limit"] == limit)
    return found["allowed"], found["used"], found["over"]


async def _billing(api: httpx.AsyncClient, owner: dict[str, str]) -> dict[str, Any]:
    response = await api.get("/v1/billing", headers=_auth(owner))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_free_inbox_meets_its_limits_and_an_upgrade_lifts_them(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram
) -> None:
    owner = await _signup(api, "plans@example.com")
    billing = await _billing(api, owner)
    assert (billing["plan"], billing["billing"], billing["upgrade"]) == ("free", "off", "pro")
    assert _use(billing, "cloud_channels") == (2, 0, False)  # the website chat is not counted
    assert _use(billing, "bridge_channels") == (0, 0, False)
    assert billing["ai"]["allowance_micros"] == 2_000_000 and billing["history_days"] == 30
    assert [p["plan"] for p in billing["plans"]] == ["free", "pro", "team"]
    agents = (await api.get("/v1/agents", headers=_auth(owner))).json()
    assert [a["model"] for a in agents] == ["claude-haiku-4-5"]  # the Free plan's model

    for name in ("first_shop_bot", "second_shop_bot"):
        token = tg.add_bot(name, name)
        ok = await api.post("/v1/channels/telegram/connect", json={"bot_token": token}, headers=_auth(owner))
        assert ok.status_code == 202, ok.text
    third = await api.post(
        "/v1/channels/telegram/connect",
        json={"bot_token": tg.add_bot("third_bot", "Third")},
        headers=_auth(owner),
    )
    assert third.status_code == 402
    refused = third.json()
    assert {k: refused[k] for k in ("error", "limit", "used", "allowed", "plan", "upgrade")} == {
        "error": "plan_limit", "limit": "cloud_channels", "used": 2, "allowed": 2, "plan": "free",
        "upgrade": "pro",
    }  # fmt: skip
    assert refused["detail"] == "The Free plan allows 2 channels, and you have 2. Pro allows 10 channels."

    device = await api.post("/v1/devices/pairing-codes", headers=_auth(owner))
    assert (device.status_code, device.json()["limit"]) == (402, "bridge_channels")
    assert "no channels on your own devices" in device.json()["detail"]
    second_agent = await api.post("/v1/agents", json={"name": "Support"}, headers=_auth(owner))
    assert (second_agent.status_code, second_agent.json()["limit"]) == (402, "agents")
    agent_id = agents[0]["agent_id"]
    opus = await api.put(f"/v1/agents/{agent_id}", json={"model": "claude-opus-4-1"}, headers=_auth(owner))
    assert (opus.status_code, opus.json()["limit"], opus.json()["upgrade"]) == (402, "models", "pro")

    moved = await _moltbot(stack, "tenants", "set-plan", owner["tenant_id"], "pro")
    assert moved.returncode == 0, moved.stderr
    assert "is on Pro now (was Free)" in moved.stdout
    audit = (await api.get("/v1/audit", headers=_auth(owner))).json()["entries"]
    assert [(e["actor"], e["detail"]) for e in audit if e["action"] == "plan.changed"] == [
        ("operator:cli", {"from": "free", "to": "pro"})
    ]
    await stack.wait_caught_up()
    billing = await _billing(api, owner)
    assert (billing["plan"], billing["upgrade"]) == ("pro", "team")
    assert _use(billing, "cloud_channels") == (10, 2, False)
    third = await api.post(
        "/v1/channels/telegram/connect",
        json={"bot_token": tg.add_bot("third_bot2", "Third")},
        headers=_auth(owner),
    )
    assert third.status_code == 202, third.text
    assert (await api.post("/v1/devices/pairing-codes", headers=_auth(owner))).status_code == 201
    opus = await api.put(f"/v1/agents/{agent_id}", json={"model": "claude-opus-4-1"}, headers=_auth(owner))
    assert opus.status_code == 202, opus.text

    # Back to Free: nothing is deleted; the billing page says what is over, adding is refused.
    back = await _moltbot(stack, "tenants", "set-plan", owner["tenant_id"], "free")
    assert back.returncode == 0, back.stderr
    await stack.wait_caught_up()
    billing = await _billing(api, owner)
    assert _use(billing, "cloud_channels") == (2, 3, True)
    channels = (await api.get("/v1/channels", headers=_auth(owner))).json()
    assert sum(1 for c in channels if c["channel"] == "telegram") == 3
    fourth = await api.post(
        "/v1/channels/telegram/connect",
        json={"bot_token": tg.add_bot("fourth_bot", "Fourth")},
        headers=_auth(owner),
    )
    assert (fourth.status_code, fourth.json()["used"]) == (402, 3)


async def test_the_owner_is_told_when_the_allowance_is_used_up(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "plans-allowance@example.com")
    assert (await _billing(api, owner))["ai"]["paused_until"] is None
    spent = spend.usage_events(owner["tenant_id"], "preview_x", [("cost_micros", 2_000_000)], actor="test")
    await stack.store.append_many(spent)
    await stack.wait_caught_up()
    ai = (await _billing(api, owner))["ai"]
    assert ai["spent_this_month_micros"] == 2_000_000
    first_of_next_month = (datetime.now(UTC).date().replace(day=1) + timedelta(days=32)).replace(day=1)
    assert ai["paused_until"] == f"{first_of_next_month.isoformat()}T00:00:00+00:00"


async def test_an_operator_is_told_what_is_wrong(stack: Stack, api: httpx.AsyncClient) -> None:
    owner = await _signup(api, "plans-operator@example.com")
    unknown_plan = await _moltbot(stack, "tenants", "set-plan", owner["tenant_id"], "platinum")
    assert unknown_plan.returncode != 0 and "plans.yaml has: free, pro, team, byok" in unknown_plan.stderr
    unknown_inbox = await _moltbot(stack, "tenants", "set-plan", "t_01NOSUCHTENANT000000000000", "pro")
    assert unknown_inbox.returncode != 0 and "No inbox t_01NOSUCHTENANT000000000000" in unknown_inbox.stderr
    shown = await _moltbot(stack, "tenants", "show", owner["tenant_id"])
    assert shown.returncode == 0 and "Free (free)" in shown.stdout and "bridge_channels: 0" in shown.stdout
