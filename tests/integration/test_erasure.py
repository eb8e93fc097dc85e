"""Deleting an inbox leaves nothing readable of it (docs/privacy.md), over the whole product:
messages from visitors, the agent's replies, a sealed channel credential and a media file.

Personal fields never reach the nats-server store in plaintext (a byte search of its whole
directory finds none of the inbox's unique texts, before or after); after
``DELETE /v1/tenant`` their sealed copies open only as "[erased]", the read models, search,
media and vault hold nothing of the inbox, its sign-ins end, a rebuild matches the live read
models, and the other inbox is untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.embedded.nats_server import NatsServer
from adapters.media.store import MediaStore, media_key
from adapters.postgres.database import connection as pg_connection
from projections import rebuild as rebuild_ops
from projections.registry import all_projections
from tests.conftest import roomy_catalog
from tests.fakes.telegram_api import ADA, FakeTelegram, private_chat
from tests.integration.conftest import Stack, send_drafts
from tests.integration.test_gateway import _auth
from tests.integration.test_webchat import _visitor_says, _widget

PASSWORD = "correct horse battery"


@pytest.fixture
def plan_catalog() -> Any:
    return roomy_catalog()


@pytest.fixture
def endpoints(tg: FakeTelegram) -> Any:
    from adapters.channels.endpoints import ProviderEndpoints

    return ProviderEndpoints(telegram_api_base=tg.base_url)


async def _account(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await api.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return {**body, "token": body["tokens"]["access_token"]}


def _store_holds(store_dir: Path, needle: bytes) -> list[str]:
    """Every file under the nats-server's store that holds ``needle``."""
    return [str(path) for path in store_dir.rglob("*") if path.is_file() and needle in path.read_bytes()]


async def _conversation_texts(
    api: httpx.AsyncClient, account: dict[str, Any], want: int, including: Sequence[str] = ()
) -> list[str]:
    """The texts of every conversation of the inbox, once there are ``want``, ``including``
    these (the agent's replies come from its own process: under a loaded machine, seconds)."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        listing = (await api.get("/v1/conversations", headers=_auth(account))).json()["items"]
        texts: list[str] = []
        for conversation in listing:
            page = await api.get(
                f"/v1/conversations/{conversation['conversation_id']}/messages", headers=_auth(account)
            )
            texts += [m["text"] for m in page.json()["items"]]
        if len(texts) >= want and set(including) <= set(texts):
            return texts
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {texts}")


async def test_deleting_an_inbox_leaves_nothing_of_it_readable(
    api: httpx.AsyncClient,
    assistant: None,
    stack: Stack,
    nats_server: NatsServer,
    media_store: MediaStore,
    tg: FakeTelegram,
) -> None:
    leaving = await _account(api, "leaving@example.com")
    staying = await _account(api, "staying@example.com")
    secrets = [f"erase-me-{n}-quartz-heron" for n in range(3)]
    kept = "keep-me-cobalt-lynx"
    leaving_key = (await _widget(api, leaving))["widget_key"]
    for text in secrets:
        await _visitor_says(api, leaving_key, text, name="Visitor Vesna")
    await _visitor_says(api, (await _widget(api, staying))["widget_key"], kept)
    # The agent drafts an answer to each visitor (the offline model quotes what it was asked),
    # and the owner sends one of them: the log holds the replies too.
    await _conversation_texts(api, leaving, len(secrets), including=secrets)
    [sent, *_] = await send_drafts(api, _auth(leaving), len(secrets))
    await _conversation_texts(api, leaving, len(secrets) + 3, including=[*secrets, sent["text"]])
    bot_token = tg.add_bot("leaving_bot", "Leaving")
    connected = await api.post(
        "/v1/channels/telegram/connect", json={"bot_token": bot_token}, headers=_auth(leaving)
    )
    assert connected.status_code == 202, connected.text
    # Someone writes on Telegram too, with a photo: the connector keeps it in the media store.
    secrets.append("erase-me-telegram-kestrel")
    tg.push_message(private_chat(ADA), ADA, caption=secrets[-1], photo=True, token=bot_token)
    await _conversation_texts(api, leaving, len(secrets), including=secrets)
    await media_store.put(media_key(leaving["tenant_id"], "m_photo"), b"a photo of erase-me-media-bytes")
    await stack.wait_caught_up()

    jetstream = nats_server.store_dir / "jetstream"
    for needle in [*secrets, "Visitor Vesna", "leaving@example.com", kept]:
        assert not _store_holds(jetstream, needle.encode()), f"{needle} is in plaintext in the store"
    tenant_token = f"S1:{leaving['tenant_id']}:".encode()
    assert _store_holds(jetstream, tenant_token)  # sealed, and still openable now:
    opened = [record.data async for record in stack.store.read(subject=f"ev.{leaving['tenant_id']}.>")]
    assert any(secrets[0].encode() in data for data in opened)

    wrong = await api.request(
        "DELETE", "/v1/tenant", json={"password": "not the password"}, headers=_auth(leaving)
    )
    assert wrong.status_code == 401
    erased = await api.request("DELETE", "/v1/tenant", json={"password": PASSWORD}, headers=_auth(leaving))
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert report["data_keys_shredded"] >= 1
    assert report["media_files"] == 2  # the Telegram photo and the one put there
    assert report["accounts_deleted"] == 1

    # Sign-in is over at once.
    assert (await api.get("/v1/me", headers=_auth(leaving))).status_code == 401
    login = await api.post("/v1/auth/login", json={"email": "leaving@example.com", "password": PASSWORD})
    assert login.status_code == 401
    # Every copy in the log opens only as "[erased]"; no plaintext anywhere in the store.
    reopened = [record.data async for record in stack.store.read(subject=f"ev.{leaving['tenant_id']}.>")]
    assert reopened
    assert not any(text.encode() in data for data in reopened for text in secrets)
    assert any(b"[erased]" in data for data in reopened)
    for needle in [*secrets, "Visitor Vesna", "leaving@example.com"]:
        assert not _store_holds(jetstream, needle.encode())
    # Nothing of it in the read models, the vault, the media store or the key table.
    tables = await stack.snapshot()
    leftovers = [
        name for name, rows in tables.items() if any(leaving["tenant_id"] in map(str, row) for row in rows)
    ]
    assert leftovers == []
    async with pg_connection(stack.database_url) as conn:
        for table in ("vault.credentials", "vault.data_keys", "audit.entries", "gateway.webchat_widgets"):
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s", (leaving["tenant_id"],)
            )
            assert (await cur.fetchone())["n"] == 0, table
        cur = await conn.execute(
            "SELECT count(*) AS n FROM gateway.credentials WHERE email = 'leaving@example.com'"
        )
        assert (await cur.fetchone())["n"] == 0
    assert await media_store.get(media_key(leaving["tenant_id"], "m_photo")) is None
    # Nothing new can be sealed for it, so nothing of it becomes readable again.
    refused = await _visitor_says_status(api, leaving_key, "after the end")
    assert refused >= 400
    # The other inbox is whole, and a rebuild of every read model matches the live ones.
    assert kept in await _conversation_texts(api, staying, 1)
    async with pg_connection(stack.database_url) as conn:
        for projection in all_projections():
            verified = await rebuild_ops.verify(conn, projection, stack.store)
            assert verified.identical, (projection.name, verified.differences)


async def _visitor_says_status(api: httpx.AsyncClient, key: str, text: str) -> int:
    response = await api.post(f"/v1/webchat/{key}/messages", json={"text": text})
    return response.status_code


async def test_deleting_an_account_erases_its_own_inbox_and_leaves_the_others(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    from adapters.mail.outbox import list_mail, outbox_folder, read_mail, text_body

    owner = await _account(api, "team-lead@example.com")
    member = await _account(api, "teammate@example.com")
    invited = await api.post(
        "/v1/members/invitations", json={"email": "teammate@example.com"}, headers=_auth(owner)
    )
    assert invited.status_code == 201
    for _ in range(100):
        mails = [m for m in list_mail(outbox_folder(tmp_path)) if m.kind == "invitation"]
        if mails:
            break
        await asyncio.sleep(0.05)
    text = text_body(read_mail(outbox_folder(tmp_path), mails[0].name))
    token = text.split("#invite=")[1].split()[0]
    joined = await api.post("/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD})
    assert joined.status_code == 200, joined.text

    stuck = await api.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=_auth(owner))
    assert stuck.status_code == 409  # the only owner of an inbox with someone else in it
    gone = await api.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=_auth(member))
    assert gone.status_code == 200, gone.text
    body = gone.json()
    assert [e["tenant_id"] for e in body["inboxes_erased"]] == [member["tenant_id"]]
    assert body["inboxes_left"] == [owner["tenant_id"]]
    people = (await api.get("/v1/members", headers=_auth(owner))).json()["members"]
    assert [p["user_id"] for p in people] == [owner["user_id"]]
    login = await api.post("/v1/auth/login", json={"email": "teammate@example.com", "password": PASSWORD})
    assert login.status_code == 401
