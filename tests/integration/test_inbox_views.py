"""The inbox's views of its conversations (over the real gateway and read models): one
conversation by id, pinned ones first (and the cursor keeping that order), filters by
channel, person and date, "mark unread", and each message's reactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from domain import events as ev
from domain import ids
from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup


async def _conversation(stack: Stack, tenant_id: str, title: str, channel: str, at: datetime) -> str:
    conversation_id, connection_id = ids.new_id(ids.CONVERSATION), f"cn_{channel}"
    actor = f"connector:{channel}:{connection_id}"
    created = ev.new_event(
        ev.ConversationCreated, tenant_id=tenant_id, aggregate_id=conversation_id, actor=actor,
        occurred_at=at,
        data=ev.ConversationCreatedData(
            channel=channel, connection_id=connection_id, kind="direct", title=title,
            external_id=title.lower(),
        ),
    )  # fmt: skip
    received = ev.new_event(
        ev.MessageReceived, tenant_id=tenant_id, aggregate_id=conversation_id, actor=actor,
        data=ev.MessageReceivedData(
            message_id=ids.new_id(ids.MESSAGE), connection_id=connection_id, channel=channel,
            provider_message_id=f"{title}-1", sender=ev.Sender(id=f"{channel}:{title}", name=title),
            text=f"Hello from {title}", sent_at=at,
        ),
    )  # fmt: skip
    await stack.store.append_many([created, received])
    return conversation_id


async def _titles(api: httpx.AsyncClient, owner: dict[str, str], **params: Any) -> list[str]:
    response = await api.get("/v1/conversations", params=params, headers=_auth(owner))
    assert response.status_code == 200, response.text
    return [c["title"] for c in response.json()["items"]]


async def test_pinned_first_filters_mark_unread_and_reactions(api: httpx.AsyncClient, stack: Stack) -> None:
    owner = await _signup(api, "views@example.com")
    tenant = owner["tenant_id"]
    now = datetime.now(UTC)
    ada = await _conversation(stack, tenant, "Ada Lovelace", "telegram", now - timedelta(days=10))
    await _conversation(stack, tenant, "Charles Babbage", "slack", now - timedelta(days=1))
    grace = await _conversation(stack, tenant, "Grace Hopper", "telegram", now)
    seq = str(await stack.store.last_seq())
    assert await _titles(api, owner, min_seq=seq) == ["Grace Hopper", "Charles Babbage", "Ada Lovelace"]

    # Pinned first, and the cursor keeps that order across pages.
    pinned = await api.patch(f"/v1/conversations/{ada}", json={"pinned": True}, headers=_auth(owner))
    assert pinned.status_code == 202
    seq = str(pinned.json()["seq"])
    assert await _titles(api, owner, min_seq=seq) == ["Ada Lovelace", "Grace Hopper", "Charles Babbage"]
    first = (await api.get("/v1/conversations", params={"limit": 1}, headers=_auth(owner))).json()
    rest = await _titles(api, owner, limit=5, cursor=first["next_cursor"])
    assert [c["title"] for c in first["items"]] + rest == ["Ada Lovelace", "Grace Hopper", "Charles Babbage"]
    assert await _titles(api, owner, pinned="true") == ["Ada Lovelace"]

    # Filters: channel, a person's name in the title (any case), active since a moment.
    assert await _titles(api, owner, channel="telegram") == ["Ada Lovelace", "Grace Hopper"]
    assert await _titles(api, owner, person="hopper") == ["Grace Hopper"]
    assert await _titles(api, owner, person="100%") == []  # a pattern character is just a character
    since = (now - timedelta(days=2)).isoformat()
    assert await _titles(api, owner, active_since=since) == ["Grace Hopper", "Charles Babbage"]
    naive = await api.get(
        "/v1/conversations", params={"active_since": "2026-01-01T00:00:00"}, headers=_auth(owner)
    )
    assert (naive.status_code, naive.json()["field"]) == (400, "active_since")

    # Mark unread, then read again.
    read = await api.patch(f"/v1/conversations/{grace}", json={"read": True}, headers=_auth(owner))
    shown = (
        await api.get(f"/v1/conversations/{grace}?min_seq={read.json()['seq']}", headers=_auth(owner))
    ).json()
    assert shown["unread_count"] == 0
    unread = await api.patch(f"/v1/conversations/{grace}", json={"read": False}, headers=_auth(owner))
    assert unread.status_code == 202
    path = f"/v1/conversations/{grace}?min_seq={unread.json()['seq']}"
    assert (await api.get(path, headers=_auth(owner))).json()["unread_count"] == 1

    # A message's reactions come with it.
    page = (await api.get(f"/v1/conversations/{grace}/messages", headers=_auth(owner))).json()
    [message] = page["items"]
    assert message["reactions"] == []
    reactions = [
        ev.new_event(
            ev.ReactionAdded,
            tenant_id=tenant,
            aggregate_id=grace,
            actor="connector:telegram",
            data=ev.ReactionData(message_id=message["message_id"], emoji=emoji, sender_id=who),
        )
        for emoji, who in (("👍", "telegram:grace"), ("👍", "telegram:ada"), ("🎉", "telegram:grace"))
    ]
    last = (await stack.store.append_many(reactions))[-1]
    page = (
        await api.get(f"/v1/conversations/{grace}/messages?min_seq={last.seq}", headers=_auth(owner))
    ).json()
    assert [(r["emoji"], r["sender_id"]) for r in page["items"][0]["reactions"]] == [
        ("👍", "telegram:grace"), ("👍", "telegram:ada"), ("🎉", "telegram:grace"),
    ]  # fmt: skip
