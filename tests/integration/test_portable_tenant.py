"""A tenant moved to another deployment, as an operator does it: `moltbot events export
--tenant` on the source, `moltbot events import --transfer-key` on the target. There the owner
signs in with the same password, the inbox reads as it did (sealed fields open under the
target's own keys), the website widget keeps its key and answers, the tenant's own Anthropic
key came along, and every read model equals a rebuild of the target's log."""

from __future__ import annotations

import asyncio
import contextlib
import re
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings
from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.connection import connect
from adapters.nats.event_store import EventStore
from adapters.nats.streams import StreamsFile, apply_streams
from adapters.postgres.database import provision_login_role
from adapters.vault.cipher import Keyring, format_key
from adapters.vault.sealing import sealing
from moltbot.roles import GatewayOptions, run_agent
from tests.conftest import (
    PRODUCT_PASSWORD,
    PRODUCT_ROLE,
    Stack,
    moltbot_cli,
    nats_access,
    nats_users,
    running_product,
    stop_roles,
)
from tests.integration.conftest import preview_token
from tests.integration.test_agent import _replies, _until
from tests.integration.test_gateway import _auth, _signup
from tests.integration.test_webchat import _visitor_says, _widget

OWN_KEY = "sk-ant-api03-moving-tenant-0123456789abcdef"
PASSWORD = "correct horse battery"  # as _signup signs up


@contextlib.asynccontextmanager
async def _another_deployment(
    tmp_path: Path, postgres: PostgresServer, spec: StreamsFile
) -> AsyncIterator[Stack]:
    """A second deployment: its own NATS server, database and vault key."""
    async with NatsServer(tmp_path / "nats-target", users=nats_users()) as server:
        name = f"t_{uuid.uuid4().hex[:12]}"
        database_url = await provision_login_role(postgres.url, name, PRODUCT_ROLE, PRODUCT_PASSWORD)
        key_id, key = Keyring.generate_key()
        keyring = Keyring({key_id: key}, key_id)
        nc = await connect(nats_access(server), name="tests-target")
        try:
            await apply_streams(nc, spec)
            async with sealing(nc, database_url, keyring) as sealer:
                yield Stack(
                    server.login_url(), database_url, EventStore(nc, sealer=sealer), spec,
                    nats=nats_access(server), keyring=keyring,
                )  # fmt: skip
        finally:
            await nc.close()
            await postgres.drop_database(name)


async def _inbox(api: httpx.AsyncClient, owner: dict[str, str]) -> list[tuple[Any, ...]]:
    """Every conversation of the owner with its messages' texts, oldest first."""
    shown = []
    for c in (await api.get("/v1/conversations", headers=_auth(owner))).json()["items"]:
        path = f"/v1/conversations/{c['conversation_id']}/messages"
        texts = [m["text"] for m in (await api.get(path, headers=_auth(owner))).json()["items"]]
        shown.append((c["conversation_id"], c["title"], c["channel"], sorted(texts)))
    return sorted(shown)


async def test_a_tenant_moved_to_another_deployment_signs_in_and_its_widget_answers(
    api: httpx.AsyncClient,
    stack: Stack,
    assistant: None,
    tmp_path: Path,
    postgres: PostgresServer,
    streams_spec: StreamsFile,
) -> None:
    owner = await _signup(api, "moving@example.com")
    stranger = await _signup(api, "staying@example.com")
    widget = await _widget(api, owner)
    tried = await _visitor_says(api, widget["widget_key"], "hello", visitor_token=preview_token(widget))
    await _until(lambda: _replies(api, owner, tried["conversation_id"]), "the agent's reply on the source")
    await _visitor_says(api, widget["widget_key"], "Do you ship to Lisbon?", name="Rita")
    own_key = await api.put("/v1/agents/own-key", json={"api_key": OWN_KEY}, headers=_auth(owner))
    assert own_key.status_code == 202, own_key.text
    await stack.wait_caught_up()
    before = await _inbox(api, owner)
    assert len(before) == 2

    bundle = tmp_path / "moving.jsonl"
    code, _, err = await moltbot_cli(
        stack, "events", "export", "--tenant", owner["tenant_id"], "-o", str(bundle)
    )
    assert code == 0, err
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    [transfer_key] = re.findall(r"--transfer-key (\S+)", err)
    content = bundle.read_bytes()
    assert content.startswith(b'{"carry":')
    # Secrets travel sealed under the transfer key; the other tenant does not travel at all.
    for secret in (OWN_KEY, PASSWORD, "Lisbon", stranger["tenant_id"], "staying@example.com"):
        assert secret.encode() not in content, secret

    async with _another_deployment(tmp_path, postgres, streams_spec) as target:
        code, _, err = await moltbot_cli(target, "events", "import", str(bundle), "--quiet")
        assert code == 1 and "pass --transfer-key" in err, err
        wrong = format_key(*Keyring.generate_key())
        code, _, err = await moltbot_cli(
            target, "events", "import", str(bundle), "--transfer-key", wrong, "--quiet"
        )
        assert code == 1 and "Imported nothing" in err, err
        assert await target.store.last_seq() == 0

        code, out, err = await moltbot_cli(
            target, "events", "import", str(bundle), "--transfer-key", transfer_key, "--quiet"
        )
        assert code == 0, err
        assert "Carried for tenant" in out and "1 sign-in, 1 website widget, 1 channel credential" in out, out
        imported = await target.store.last_seq()
        assert imported == len(content.splitlines()) - 1
        # Again (a retried import): nothing twice, no error.
        code, out, err = await moltbot_cli(
            target, "events", "import", str(bundle), "--transfer-key", transfer_key, "--quiet"
        )
        assert code == 0 and "Imported 0 events" in out, (out, err)
        assert await target.store.last_seq() == imported

        options = GatewayOptions(models=ModelChoice(None), keyring=target.keyring)
        async with running_product(target, tmp_path / "target-jwt.pem", options) as there:
            assert target.keyring is not None
            agent = asyncio.create_task(
                run_agent(
                    target.roles, target.database_url, ModelChoice(None), keyring=target.keyring,
                    settings=AgentSettings(debounce=0.3),
                )
            )  # fmt: skip
            try:
                signed_in = await there.post(
                    "/v1/auth/login", json={"email": "moving@example.com", "password": PASSWORD}
                )
                assert signed_in.status_code == 200, signed_in.text
                moved = owner | {"token": signed_in.json()["tokens"]["access_token"]}
                assert signed_in.json()["tenant_id"] == owner["tenant_id"]
                refused = await there.post(
                    "/v1/auth/login", json={"email": "staying@example.com", "password": PASSWORD}
                )
                assert refused.status_code == 401, refused.text

                await target.wait_caught_up()
                assert await _inbox(there, moved) == before  # texts open: the data keys came along
                status = (await there.get("/v1/agents/own-key", headers=_auth(moved))).json()
                assert status == {"anthropic": True, "plan": "byok"}
                # This deployment has no way out to Anthropic: back to the offline model.
                forgotten = await there.delete("/v1/agents/own-key", headers=_auth(moved))
                assert forgotten.status_code == 202, forgotten.text
                await _until(
                    lambda: _plan_is(there, moved, "free"), "the plan to go back to free on the target"
                )

                same = await _widget(there, moved)
                assert same["widget_key"] == widget["widget_key"]
                again = await _visitor_says(
                    there, widget["widget_key"], "still there?", visitor_token=preview_token(widget)
                )
                assert again["conversation_id"] == tried["conversation_id"]
                await _until(
                    lambda: _has(2, _replies(there, moved, tried["conversation_id"])),
                    "the agent's reply on the target",
                )
                await target.verify_read_models()
            finally:
                await stop_roles(agent)


async def _plan_is(api: httpx.AsyncClient, owner: dict[str, str], plan: str) -> bool:
    return bool((await api.get("/v1/agents/own-key", headers=_auth(owner))).json()["plan"] == plan)


async def _has(count: int, items: Any) -> Any:
    found = await items
    return found if len(found) >= count else None
