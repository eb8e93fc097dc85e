"""Per-plan retention (docs/privacy.md): once a day, what each inbox's plan no longer keeps
(``history_days`` in plans.yaml) is erased the way a deleted inbox is — its data keys of the
days before the window are deleted, so those days' personal fields read "[erased]" in every
copy of the log; the media files of the messages sent before the window are deleted;
``retention.applied`` makes the inbox read model drop those messages; the audit log records
how many went.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from adapters.media.store import MediaStore
from adapters.postgres import audit
from adapters.vault.sealing import Sealer, announce_shredded
from domain import events as ev
from domain.plans import DEFAULT_PLAN, Catalog
from domain.ports import EventStore

log = structlog.get_logger()

ACTOR = "retention"


class Applied(msgspec.Struct, frozen=True):
    tenant_id: str
    before: date
    messages: int  # messages sent before the window, dropped from the inbox
    media_files: int  # their files, deleted from the media store
    data_keys: int  # days of sealed personal fields made unreadable
    seq: int


async def apply_retention(
    pool: AsyncConnectionPool[Any],
    store: EventStore,
    sealer: Sealer,
    nc: Client,
    catalog: Catalog,
    today: date,
    media: MediaStore | None,
) -> list[Applied]:
    """Apply every inbox's window as of ``today`` (idempotent: a second run the same day
    finds nothing older left). ``pool`` acts as the database's owner (every tenant)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT tenant_id, plan FROM rm_tenants.tenants ORDER BY tenant_id")
        tenants = [(row["tenant_id"], row["plan"]) for row in await cur.fetchall()]
    applied: list[Applied] = []
    for tenant_id, plan in tenants:
        spec = catalog.plans.get(plan) or catalog.plans.get(DEFAULT_PLAN)
        days = spec.limits.history_days if spec is not None else None
        if not days:
            continue
        before = today - timedelta(days=days)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM rm_inbox.messages WHERE tenant_id = %s"
                " AND sent_at < (%s::date)::timestamptz",
                (tenant_id, before),
            )
            found = await cur.fetchone()
            cur = await conn.execute(
                "SELECT m.storage_key FROM rm_inbox.media m JOIN rm_inbox.messages x USING (message_id)"
                " WHERE x.tenant_id = %s AND x.sent_at < (%s::date)::timestamptz",
                (tenant_id, before),
            )
            files = [row["storage_key"] for row in await cur.fetchall()]
        messages = int(found["n"]) if found else 0
        shredded = await sealer.keys.shred_before(tenant_id, before)
        if not messages and not shredded:
            continue
        deleted = await media.delete(files) if media is not None and files else 0
        if shredded:
            await announce_shredded(nc, tenant_id)
        event = ev.new_event(
            ev.RetentionApplied, tenant_id=tenant_id, aggregate_id=tenant_id, actor=ACTOR,
            data=ev.RetentionAppliedData(before=before, history_days=days, data_keys_shredded=shredded),
        )  # fmt: skip
        appended = await store.append(event)
        async with pool.connection() as conn:
            await audit.record(
                conn, tenant_id, "retention.applied", actor=ACTOR, target=tenant_id,
                detail={
                    "before": before.isoformat(), "messages": messages, "media_files": deleted,
                    "data_keys": shredded,
                },
            )  # fmt: skip
        log.info(
            "retention_applied", tenant_id=tenant_id, before=str(before), messages=messages,
            media_files=deleted, keys=shredded,
        )  # fmt: skip
        applied.append(Applied(tenant_id, before, messages, deleted, shredded, appended.seq))
    return applied
