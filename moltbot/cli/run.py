"""Commands that run the product: ``up`` (servers and every role) or one role alone."""

from __future__ import annotations

import argparse
from typing import Any

from adapters.agent.choice import ModelChoice
from adapters.nats.streams import load_streams_file
from moltbot.cli.common import CommandError, add, keyring
from moltbot.roles import CONNECTOR_KINDS, agent_settings
from moltbot.settings import Settings
from moltbot.stack import StackConfigError, up


async def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    try:
        await up(settings, cluster=args.cluster)
    except StackConfigError as exc:
        raise CommandError(str(exc)) from None
    return 0


async def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_gateway

    nats_url, database_url = settings.servers()
    models = ModelChoice(settings.anthropic_api_key, base_url=settings.anthropic_base_url)
    await run_gateway(
        nats_url,
        database_url,
        key_file=settings.jwt_key_file,
        host=args.host,
        port=args.port or settings.gateway_port,
        **settings.gateway_options(models=models, keyring=keyring(settings), media=settings.media_store()),
    )
    return 0


async def cmd_agent(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_agent

    nats_url, database_url = settings.servers()
    models = ModelChoice(settings.anthropic_api_key, base_url=settings.anthropic_base_url)
    try:
        await run_agent(
            nats_url,
            database_url,
            models,
            keyring=keyring(settings),
            settings=agent_settings(settings),
        )
    finally:
        await models.aclose()
    return 0


async def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_outbox

    nats_url, _ = settings.servers()
    await run_outbox(nats_url)
    return 0


async def cmd_notifier(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_notifier

    nats_url, database_url = settings.servers()
    await run_notifier(
        nats_url, database_url, settings.push_config(), keyring=keyring(settings), catalog=settings.catalog(),
        mailer=settings.mailer(), inbox_url=settings.inbox_url(),
    )  # fmt: skip
    return 0


async def cmd_billing(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_billing

    config = settings.billing()
    if config is None:
        raise CommandError(
            "Billing is off: set MOLTBOT_STRIPE_SECRET_KEY, MOLTBOT_STRIPE_WEBHOOK_SECRET and"
            " MOLTBOT_STRIPE_PRICES to report AI overage to Stripe (docs/billing.md)."
        )
    await run_billing(
        settings.database(), config, catalog=settings.catalog(), interval=settings.billing_interval
    )
    return 0


async def cmd_connector(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import ChannelSettings, run_connectors

    nats_url, database_url = settings.servers()
    media_store = settings.media_store()
    channels = ChannelSettings(
        database_url,
        keyring(settings),
        endpoints=settings.endpoints,
        media=media_store,
    )
    await run_connectors(nats_url, load_streams_file(settings.streams_file), args.kinds, channels=channels)
    return 0


def register(commands: Any) -> None:
    up_cmd = add(
        commands,
        "up",
        cmd_up,
        "Start the whole product in the foreground: nats-server, PostgreSQL (both under the data"
        " folder unless MOLTBOT_NATS_URL / MOLTBOT_DATABASE_URL are set) and every role. Ctrl-C stops it.",
    )
    up_cmd.add_argument(
        "--cluster",
        type=int,
        choices=(1, 3),
        default=1,
        metavar="N",
        help="nats-servers to run: 1 (default) or 3, a cluster in <data>/nats-1..3 with every"
        " stream replicated on all three, so the stack survives losing any one of them",
    )

    gw = add(commands, "gateway", cmd_gateway, "Serve the HTTP API only (the servers must be running).")
    gw.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    gw.add_argument("--port", type=int, help="port (default $MOLTBOT_GATEWAY_PORT or 8000)")

    add(
        commands,
        "agent",
        cmd_agent,
        "Run the agent only: answers messages where your rules allow (Anthropic with"
        " MOLTBOT_ANTHROPIC_API_KEY, the built-in offline model without).",
    )
    add(commands, "outbox", cmd_outbox, "Run the outbox only: send requests become channel commands.")
    add(
        commands,
        "notifier",
        cmd_notifier,
        "Run the notifier only: browser push notifications for new messages, drafts, channels that"
        " need you and the AI allowance (the VAPID key: MOLTBOT_VAPID_PRIVATE_KEY or its key file).",
    )
    add(
        commands,
        "billing",
        cmd_billing,
        "Run the billing worker only: reports AI spend beyond paid plans' allowance to Stripe's"
        " meter (needs the MOLTBOT_STRIPE_* settings; every MOLTBOT_BILLING_INTERVAL seconds, 300).",
    )
    conn_cmd = add(
        commands, "connector", cmd_connector, "Run connectors only: they execute channel commands."
    )
    conn_cmd.add_argument(
        "kinds",
        nargs="+",
        choices=CONNECTOR_KINDS,
        metavar="KIND",
        help=f"one of: {', '.join(CONNECTOR_KINDS)}",
    )
