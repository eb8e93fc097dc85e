"""``moltbot tenants``: an operator's look at an inbox's plan, and setting it by hand (the
way plans change when billing is off, as on the embedded default)."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import Any

from adapters.nats.connection import connection
from adapters.nats.event_store import EventStore
from adapters.postgres import audit, tenancy
from adapters.postgres.database import connection as pg_connection
from adapters.vault.retention import apply_retention
from adapters.vault.sealing import sealing
from domain import events as ev
from domain import plans
from moltbot.cli.common import CommandError, add, event_store, keyring
from moltbot.settings import Settings
from projections import tenants_queries


async def _current_plan(settings: Settings, tenant_id: str) -> str:
    _, database_url = settings.servers()
    async with pg_connection(database_url, application_name="moltbot-tenants") as conn:
        cur = await conn.execute("SELECT 1 FROM rm_tenants.tenants WHERE tenant_id = %s", (tenant_id,))
        if await cur.fetchone() is None:
            raise CommandError(f"No inbox {tenant_id} (its id starts with t_; `moltbot status` shows yours).")
        return await tenants_queries.plan(conn, tenant_id) or plans.DEFAULT_PLAN


async def cmd_set_plan(settings: Settings, args: argparse.Namespace) -> int:
    catalog = settings.catalog()
    if args.plan not in catalog.plans:
        raise CommandError(f"No plan {args.plan!r}; plans.yaml has: {', '.join(catalog.plans)}.")
    previous = await _current_plan(settings, args.tenant)
    spec = catalog.spec(args.plan)
    if previous == args.plan:
        print(f"{args.tenant} is on {spec.name} already.")
        return 0
    changed = ev.new_event(
        ev.PlanChanged, tenant_id=args.tenant, aggregate_id=args.tenant, actor="operator:cli",
        data=ev.PlanChangedData(plan=args.plan, previous_plan=previous),  # type: ignore[arg-type]
    )  # fmt: skip
    async with event_store(settings) as store:
        appended = await store.append(changed)
    _, database_url = settings.servers()
    async with pg_connection(database_url, application_name="moltbot-tenants") as conn:
        await audit.record(
            conn, args.tenant, "plan.changed", actor="operator:cli", target=args.tenant,
            detail={"from": previous, "to": args.plan},
        )  # fmt: skip
    print(
        f"{args.tenant} is on {spec.name} now (was {catalog.spec(previous).name}); event seq {appended.seq}."
    )
    return 0


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    catalog = settings.catalog()
    plan = await _current_plan(settings, args.tenant)
    spec = catalog.spec(plan)
    print(f"{args.tenant}: {spec.name} ({plan}), ${spec.monthly_price_cents / 100:.2f} a month")
    for name in spec.limits.__struct_fields__:
        value = getattr(spec.limits, name)
        print(f"  {name}: {'no limit' if value is None else value}")
    return 0


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    """Apply every inbox's history window now (the gateway does it once a day by itself)."""
    nats_url, database_url = settings.servers()
    today = date.fromisoformat(args.today) if args.today else datetime.now(UTC).date()
    pool = tenancy.pool(database_url, max_size=2, confined=False)
    await pool.open()
    try:
        async with (
            connection(nats_url, name="moltbot-retention") as nc,
            sealing(nc, database_url, keyring(settings)) as sealer,
        ):
            store = EventStore(nc, sealer=sealer)
            media = settings.media_store()
            try:
                applied = await apply_retention(pool, store, sealer, nc, settings.catalog(), today, media)
            finally:
                await media.aclose()
    finally:
        await pool.close()
    for one in applied:
        print(
            f"{one.tenant_id}: before {one.before}: {one.messages} messages, {one.media_files} media files,"
            f" {one.data_keys} days of keys"
        )
    print(f"Retention as of {today}: {len(applied)} inboxes had something older than their plan keeps.")
    return 0


def register(commands: Any) -> None:
    tenants = commands.add_parser("tenants", help="inboxes' plans (an operator's commands)").add_subparsers(
        dest="tenants_command", metavar="ACTION", required=True
    )
    set_plan = add(
        tenants,
        "set-plan",
        cmd_set_plan,
        "Put an inbox on a plan of plans.yaml (free, pro, team…), recorded as plan.changed. With"
        " Stripe billing on, paid plans normally follow the subscription instead.",
    )
    set_plan.add_argument("tenant", help="the inbox's id (t_…)")
    set_plan.add_argument("plan", help="the plan's key in plans.yaml")
    show = add(tenants, "show", cmd_show, "An inbox's plan and its limits.")
    show.add_argument("tenant", help="the inbox's id (t_…)")
    retention = add(
        tenants,
        "retention",
        cmd_retention,
        "Erase what each inbox's plan no longer keeps (history_days): the sealed personal fields of"
        " older days and the older messages. The gateway does it once a day by itself.",
    )
    retention.add_argument(
        "--today", metavar="YYYY-MM-DD", help="apply the windows as of this day (default: today, UTC)"
    )
