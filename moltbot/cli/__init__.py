"""The ``moltbot`` command line.

Every command finds the servers through ``--data DIR`` (the folder ``moltbot up`` runs
in, default ``./.moltbot``) or ``MOLTBOT_NATS_URL`` / ``MOLTBOT_DATABASE_URL``.

One module per command group: ``run`` (``up`` and the single roles), ``inbox`` (the API
client commands), ``streams`` (with ``nats``), ``events``, ``vault``, ``projections``,
``tenants``, ``bridge``, ``mail`` (the outbox of account mail), ``migrate`` (moving in
from the self-hosted assistant);
``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from moltbot import client, logs, retries
from moltbot.cli import bridge, events, inbox, mail, migrate, projections, run, streams, tenants, vault
from moltbot.cli.common import CommandError
from moltbot.roles import GatewayStartError
from moltbot.settings import NoStackError, Settings
from moltbot.stack import StackAlreadyRunning

__all__ = ["CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moltbot",
        description="Moltbot Cloud: one AI assistant across all your messaging apps.",
        epilog="Servers are found through --data DIR (where `moltbot up` runs) or the"
        " MOLTBOT_NATS_URL and MOLTBOT_DATABASE_URL environment variables.",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data folder of the embedded stack (default: $MOLTBOT_DATA_DIR or ./.moltbot)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # the order `--help` lists them in
    for group in (run, inbox, migrate, streams, events, vault, projections, tenants, bridge, mail):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(os.environ, data_dir=args.data)
    except ValueError as exc:
        print(f"moltbot: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    retries.configure()
    try:
        exit_code: int = asyncio.run(args.handler(settings, args))
        return exit_code
    except KeyboardInterrupt:
        return 130
    except (CommandError, NoStackError, StackAlreadyRunning, client.ClientError, GatewayStartError) as exc:
        print(f"moltbot: {exc}", file=sys.stderr)
        return 1
