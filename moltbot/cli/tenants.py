"""``moltbot tenants``: an operator's look at an inbox's plan, and setting it by hand (the
way plans change when billing is off, as on the embedded default)."""

from __future__ import annotations

import argparse
from typing import Any

from adapters.postgres import audit
from adapters.postgres.database import connection as pg_connection
from domain import events as ev
from domain import plans
from moltbot.cli.common import CommandError, add, event_store
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
