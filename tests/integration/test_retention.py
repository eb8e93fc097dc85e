"""Per-plan retention (adapters/vault/retention.py) over real servers: an inbox on Free keeps
30 days; a message recorded 40 days ago disappears from the inbox and its copy in the log
opens only as "[erased]", a message of today stays, the audit log counts what went, and a
second run the same day finds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from adapters.media.store import LocalMediaStore, media_key
from adapters.postgres import audit, tenancy
from adapters.postgres.database import connection as pg_connection
from adapters.vault.retention import apply_retention
from domain import events as ev
from domain import ids
from moltbot.settings import bundled_plans_file, load_catalog
from projections import rebuild as rebuild_ops
from projections.inbox import InboxProjection
from tests.integration.conftest import Stack


def _at(event: ev.Event, when: datetime) -> ev.Event:
    return msgspec.structs.replace(event, occurred_at=when)


def _photo(tenant_id: str, conversation_id: str, n: int, when: datetime) -> ev.Event:
    available = ev.new_event(
        ev.MediaAvailable, tenant_id=tenant_id, aggregate_id=conversation_id, actor="connector:webchat",
        data=ev.MediaAvailableData(
            message_id=f"m_ret{n}", media_id=f"md_ret{n}", sha256="0" * 64, mime="image/jpeg", size=5,
            storage_key=media_key(tenant_id, f"md_ret{n}"),
        ),
    )  # fmt: skip
    return _at(available, when)


async def test_what_the_plan_no_longer_keeps_is_erased(stack: Stack, tmp_path: Path) -> None:
    tenant_id, conversation_id, connection_id = ids.new_id(ids.TENANT), ids.new_id(ids.CONVERSATION), "cn_ret"
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    actor = "connector:webchat"

    def message(n: int, text: str, when: datetime) -> ev.Event:
        received = ev.new_event(
            ev.MessageReceived, tenant_id=tenant_id, aggregate_id=conversation_id, actor=actor,
            data=ev.MessageReceivedData(
                message_id=f"m_ret{n}", connection_id=connection_id, channel="webchat",
                provider_message_id=str(n), sender=ev.Sender(id="v1", name="Visitor"), text=text,
                sent_at=when,
            ),
        )  # fmt: skip
        return _at(received, when)

    created = ev.new_event(
        ev.TenantCreated, tenant_id=tenant_id, aggregate_id=tenant_id, actor="user:u_ret",
        data=ev.TenantCreatedData(name="Retained"),
    )  # fmt: skip
    conversation = ev.new_event(
        ev.ConversationCreated, tenant_id=tenant_id, aggregate_id=conversation_id, actor=actor,
        data=ev.ConversationCreatedData(
            channel="webchat", connection_id=connection_id, kind="direct", title="Visitor", external_id="v1"
        ),
    )  # fmt: skip
    events = [
        _at(created, old),
        _at(conversation, old),
        message(1, "an old secret-walnut-1931", old),
        message(2, "a fresh hello", now),
        _photo(tenant_id, conversation_id, 1, old),
        _photo(tenant_id, conversation_id, 2, now),
    ]
    media = LocalMediaStore(tmp_path / "media")
    for n in (1, 2):
        await media.put(media_key(tenant_id, f"md_ret{n}"), b"photo")
    async with stack.projections():
        await stack.store.append_many(events)
        await stack.wait_caught_up()
        pool = tenancy.pool(stack.database_url, max_size=2, confined=False)
        await pool.open()
        async with pool.connection() as conn:
            await audit.ensure_schema(conn)  # the gateway makes it; none runs here
        try:
            assert stack.store.sealer is not None
            catalog = load_catalog(bundled_plans_file())
            applied = await apply_retention(
                pool, stack.store, stack.store.sealer, stack.store.nc, catalog, now.date(), media
            )
            assert [(a.tenant_id, a.messages, a.media_files) for a in applied] == [(tenant_id, 1, 1)]
            assert await media.get(media_key(tenant_id, "md_ret1")) is None
            assert await media.get(media_key(tenant_id, "md_ret2")) == b"photo"
            assert applied[0].before == now.date() - timedelta(days=30)
            assert applied[0].data_keys == 1  # the day of the old events
            await stack.wait_caught_up()
            again = await apply_retention(
                pool, stack.store, stack.store.sealer, stack.store.nc, catalog, now.date(), media
            )
            assert again == []
        finally:
            await pool.close()

    async with pg_connection(stack.database_url) as conn:
        cur = await conn.execute("SELECT text FROM rm_inbox.messages WHERE tenant_id = %s", (tenant_id,))
        assert [row["text"] for row in await cur.fetchall()] == ["a fresh hello"]
        cur = await conn.execute(
            "SELECT detail FROM audit.entries WHERE tenant_id = %s AND action = 'retention.applied'",
            (tenant_id,),
        )
        [entry] = await cur.fetchall()
        assert (entry["detail"]["messages"], entry["detail"]["media_files"]) == (1, 1)
        cur = await conn.execute(
            "SELECT message_count FROM rm_inbox.conversations WHERE tenant_id = %s", (tenant_id,)
        )
        assert [row["message_count"] for row in await cur.fetchall()] == [1]
        cur = await conn.execute("SELECT media_id FROM rm_inbox.media WHERE tenant_id = %s", (tenant_id,))
        assert [row["media_id"] for row in await cur.fetchall()] == ["md_ret2"]
    copies = [record.data async for record in stack.store.read(subject=f"ev.{tenant_id}.>")]
    assert not any(b"secret-walnut" in data for data in copies)
    assert any(b"a fresh hello" in data for data in copies)
    assert any(b"[erased]" in data for data in copies)
    # A rebuild from the log comes to the same inbox.
    async with pg_connection(stack.database_url) as conn:
        verified = await rebuild_ops.verify(conn, InboxProjection(), stack.store)
        assert verified.identical, verified.differences
