"""Leaving for good (docs/privacy.md): erasing an inbox, deleting an account.

Erasing an inbox: its data keys are deleted (and every process told to drop them), so its
personal fields in the log — every stream, block file and backup — read "[erased]" from
then on; ``tenant.erased`` makes every read model drop its rows; its media files, vault
credentials, widgets, webhooks, audit entries and the accounts of people who belong to no
other inbox are deleted. It returns once the read models have it: the inbox's sign-ins end
at once. The routes (``DELETE /v1/tenant``, ``DELETE /v1/me``) check the password first.
"""

from __future__ import annotations

import msgspec
import structlog

from adapters.postgres import erasure
from adapters.vault.sealing import announce_shredded
from domain import events as ev
from gateway.auth import Caller
from gateway.context import GatewayContext
from gateway.errors import ApiError

log = structlog.get_logger()


class Erased(msgspec.Struct, frozen=True):
    tenant_id: str
    data_keys_shredded: int
    media_files: int
    accounts_deleted: int
    seq: int


class AccountDeleted(msgspec.Struct, frozen=True):
    user_id: str
    inboxes_erased: list[Erased]
    inboxes_left: list[str]


async def erase_tenant(ctx: GatewayContext, tenant_id: str, actor: str, reason: str) -> Erased:
    """Erase one inbox (see the module); callable once the caller may."""
    if ctx.owner_pool is None:
        raise ApiError(503, "erasure_unavailable", "This gateway cannot erase inboxes (no database owner).")
    async with ctx.owner_pool.connection() as conn:
        if await erasure.paying(conn, tenant_id):
            raise ApiError(
                409,
                "subscription_active",
                "This inbox has a paid subscription: cancel it in Manage billing, then delete the inbox.",
            )
        members = await erasure.people(conn, tenant_id)
    shredded = 0
    if ctx.sealer is not None:
        shredded = await ctx.sealer.keys.shred_tenant(tenant_id)
        await announce_shredded(ctx.store.nc, tenant_id)
    erased = ev.new_event(
        ev.TenantErased, tenant_id=tenant_id, aggregate_id=tenant_id, actor=actor,
        data=ev.TenantErasedData(reason=reason, data_keys_shredded=shredded),  # type: ignore[arg-type]
    )  # fmt: skip
    appended = await ctx.store.append(erased)
    media = await ctx.media.delete_tenant(tenant_id) if ctx.media is not None else 0
    async with ctx.owner_pool.connection() as conn, conn.transaction():
        forgotten = await erasure.forget_tenant(conn, tenant_id, members)
    await ctx.wait_for(appended.seq, ("tenants", "inbox", "connections"), tenant_id)
    log.info(
        "tenant_erased", tenant_id=tenant_id, data_keys=shredded, media_files=media,
        accounts=forgotten.accounts, rows=forgotten.rows,
    )  # fmt: skip
    return Erased(tenant_id, shredded, media, forgotten.accounts, appended.seq)


async def delete_account(ctx: GatewayContext, who: Caller) -> AccountDeleted:
    """Delete the caller's account: the inboxes only they are in are erased, the others are
    left; an inbox where they are the only owner beside other people must be handed over first."""
    if ctx.owner_pool is None:
        raise ApiError(503, "erasure_unavailable", "This gateway cannot delete accounts (no database owner).")
    async with ctx.owner_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.tenant_id, m.role, (SELECT count(*) FROM rm_tenants.members o WHERE o.tenant_id ="
            " m.tenant_id) AS people, (SELECT count(*) FROM rm_tenants.members o WHERE o.tenant_id ="
            " m.tenant_id AND o.role = 'owner') AS owners FROM rm_tenants.members m WHERE m.user_id = %s",
            (who.user_id,),
        )
        inboxes = await cur.fetchall()
    stuck = [
        row["tenant_id"]
        for row in inboxes
        if row["people"] > 1 and row["role"] == "owner" and row["owners"] == 1
    ]
    if stuck:
        raise ApiError(
            409,
            "last_owner",
            f"You are the only owner of an inbox with other people ({', '.join(stuck)}): make someone"
            " else an owner there, or delete that inbox, then delete your account.",
        )
    erased, left = [], []
    actor = f"user:{who.user_id}"
    for row in inboxes:
        if row["people"] == 1:
            erased.append(await erase_tenant(ctx, row["tenant_id"], actor, "account_deleted"))
        else:
            removed = ev.new_event(
                ev.MemberRemoved, tenant_id=row["tenant_id"], aggregate_id=row["tenant_id"], actor=actor,
                data=ev.MemberRemovedData(user_id=who.user_id),
            )  # fmt: skip
            appended = await ctx.store.append(removed)
            await ctx.wait_for(appended.seq, ("tenants",), row["tenant_id"])
            left.append(row["tenant_id"])
    async with ctx.owner_pool.connection() as conn, conn.transaction():
        await erasure.forget_account(conn, who.user_id)
    log.info("account_deleted", user_id=who.user_id, erased=len(erased), left=len(left))
    return AccountDeleted(who.user_id, erased, left)
