"""``moltbot streams`` (JetStream streams from streams.yaml, applied or exported as Kubernetes
resources for NACK) and ``moltbot nats`` (NATS users for a deployment)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from adapters.nats.connection import connection
from adapters.nats.errors import StreamConfigError
from adapters.nats.nack import NACK_ACCOUNT, NackError, nack_resources, render_nack
from adapters.nats.streams import apply_streams, load_streams_file, stream_states
from moltbot.cli.common import CommandError, add
from moltbot.roles import CONNECTOR_KINDS
from moltbot.settings import Settings
from projections.partitions import PartitionError, load_partitioning


async def cmd_streams_apply(settings: Settings, args: argparse.Namespace) -> int:
    spec = load_streams_file(settings.streams_file)
    nats_url, _ = settings.servers()
    async with connection(nats_url, name="moltbot-cli") as nc:
        reports = await apply_streams(nc, spec, replicas=args.replicas)
    for report in reports:
        print(report.line())
    return 1 if any(r.action == "drift" for r in reports) else 0


async def cmd_streams_ls(settings: Settings, args: argparse.Namespace) -> int:
    spec = load_streams_file(settings.streams_file)
    nats_url, _ = settings.servers()
    async with connection(nats_url, name="moltbot-cli") as nc:
        infos = await stream_states(nc, [s["name"] for s in spec.streams])
    print(
        f"{'STREAM':<10} {'MESSAGES':>10} {'BYTES':>12} {'FIRST':>8} {'LAST':>10} {'CONSUMERS':>9}  SUBJECTS"
    )
    for stream, info in zip(spec.streams, infos, strict=True):
        if "error" in info:
            print(f"{stream['name']:<10} missing — run `moltbot streams apply`")
            continue
        state = info["state"]
        print(
            f"{stream['name']:<10} {state['messages']:>10} {state['bytes']:>12} {state['first_seq']:>8}"
            f" {state['last_seq']:>10} {state['consumer_count']:>9}  {' '.join(info['config']['subjects'])}"
        )
    return 0


def export_command(args: argparse.Namespace) -> str:
    """The command line that makes this export (written at the top of the file)."""
    words = ["moltbot streams export --format", args.format]
    words += [f"--replicas {args.replicas}"] if args.replicas else []
    words += [f"--account {args.account}"] if args.account else []
    words += ["--partitioned"] if args.partitioned else []
    return " ".join(words)


async def cmd_streams_export(settings: Settings, args: argparse.Namespace) -> int:
    if args.replicas is not None and args.replicas < 1:
        raise CommandError("--replicas must be 1 or more")
    if args.account and not NACK_ACCOUNT.fullmatch(args.account):
        raise CommandError(f"--account {args.account!r}: a NACK account name has no '.', '*' or '>'")
    try:
        spec = load_streams_file(settings.streams_file)
        feed = load_partitioning(settings.streams_file).stream if args.partitioned else None
    except (StreamConfigError, PartitionError) as exc:
        raise CommandError(str(exc)) from None
    try:
        resources = nack_resources(spec, replicas=args.replicas, account=args.account, feed=feed)
    except NackError as exc:
        raise CommandError(str(exc)) from None
    text = render_nack(resources, export_command(args))
    if args.output:
        Path(args.output).write_text(text)
        print(f"Wrote {len(resources)} NACK resources to {args.output}.", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def cmd_nats_users(settings: Settings, args: argparse.Namespace) -> int:
    """A deployment's NATS users: passwords kept in DIR/credentials.json, and the nats-server
    authorization block (every role's permissions) in DIR/users.conf; both mode 0600. With
    ``--env-files``, also DIR/env/<role>.env (the login of one role, for its processes)."""
    from adapters.embedded.secrets import read_or_create_users, write_private
    from adapters.nats import permissions

    folder = Path(args.out)
    credentials = folder / "credentials.json"
    if args.rotate and credentials.exists():
        kept = json.loads(credentials.read_text()).get("users", {})
        kept = {role: password for role, password in kept.items() if role not in args.rotate}
        write_private(credentials, json.dumps({"users": kept}))
    users = read_or_create_users(credentials, permissions.roles(args.kinds or CONNECTOR_KINDS))
    write_private(folder / "users.conf", permissions.render_authorization(users))
    print(f"Wrote {folder / 'users.conf'} (include it in nats-server.conf) and {credentials}.")
    if args.env_files:
        for role, password in users.items():
            write_private(
                folder / "env" / f"{role}.env",
                f"MOLTBOT_NATS_USER={role}\nMOLTBOT_NATS_PASSWORD={password}\n",
            )
        print(f"Wrote {folder / 'env'}/<role>.env, one login per role (env_file, secretGenerator envs).")
    print("Give each role process MOLTBOT_NATS_USER=<role> and MOLTBOT_NATS_PASSWORD from the latter.")
    return 0


def register(commands: Any) -> None:
    streams = commands.add_parser("streams", help="JetStream streams from streams.yaml").add_subparsers(
        dest="streams_command", metavar="ACTION", required=True
    )
    apply_cmd = add(streams, "apply", cmd_streams_apply, "Create or update streams to match streams.yaml.")
    apply_cmd.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="set num_replicas of every stream (and its consumers) to N, e.g. 3 on a 3-node cluster;"
        " default: as streams.yaml says",
    )
    add(streams, "ls", cmd_streams_ls, "List streams with message counts and sequences.")
    export_cmd = add(
        streams,
        "export",
        cmd_streams_export,
        "Write streams.yaml as Kubernetes resources (multi-document YAML) for NACK, the JetStream"
        " controller: a Stream per stream, a Consumer per durable consumer, field for field (durations"
        " as Go durations, e.g. 168h0m0s). A field NACK cannot express stops the export, named.",
    )
    export_cmd.add_argument(
        "--format",
        choices=("nack",),
        default="nack",
        help="resource format: nack (jetstream.nats.io/v1beta2)",
    )
    export_cmd.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    export_cmd.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="set the replicas of every stream and consumer to N, as `streams apply --replicas` does"
        " (3 on a 3-node cluster); default: as streams.yaml says",
    )
    export_cmd.add_argument(
        "--account",
        metavar="NAME",
        help="the NACK Account resource (servers and admin credentials) every resource connects"
        " through; default: the controller's own connection",
    )
    export_cmd.add_argument(
        "--partitioned",
        action="store_true",
        help="also EVENTS_PARTITIONED, the feed of partitioned projection workers (streams.yaml's"
        " partitioned_projections; the first worker makes it when it is missing)",
    )

    nats_cmds = commands.add_parser("nats", help="NATS users for a deployment").add_subparsers(
        dest="nats_command", metavar="ACTION", required=True
    )
    users_cmd = add(
        nats_cmds,
        "users",
        cmd_nats_users,
        "Write a password per role (credentials.json) and the nats-server users block with each"
        " role's permissions (users.conf); existing passwords are kept unless rotated.",
    )
    users_cmd.add_argument("--out", required=True, metavar="DIR", help="folder to write both files to")
    users_cmd.add_argument(
        "--kinds", nargs="+", choices=CONNECTOR_KINDS, metavar="KIND", help="connector kinds (default: all)"
    )
    users_cmd.add_argument(
        "--rotate", action="append", default=[], metavar="ROLE", help="give ROLE a new password (repeatable)"
    )
    users_cmd.add_argument(
        "--env-files",
        action="store_true",
        help="also write DIR/env/<role>.env (MOLTBOT_NATS_USER and MOLTBOT_NATS_PASSWORD, mode 0600) for"
        " each role: a Compose env_file, a Kubernetes secretGenerator source",
    )
