"""``moltbot projections``: the read models built from the log — their status, rebuild,
verify, and running their workers alone."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, Protocol, TypeVar

from adapters.nats.streams import load_streams_file
from adapters.postgres.database import Connection
from adapters.postgres.database import connection as pg_connection
from domain.ports import EventStore
from moltbot.cli.common import CommandError, add, event_store, keyring, progress_bar, projection
from moltbot.settings import Settings
from projections import rebuild as rebuild_ops
from projections.base import Projection
from projections.partitions import Assignment, PartitionError, load_partitioning
from projections.registry import all_projections
from projections.worker import DEFAULT_BATCH

Report = TypeVar("Report", covariant=True)


async def cmd_projections_status(settings: Settings, args: argparse.Namespace) -> int:
    _, database_url = settings.servers()
    async with event_store(settings) as store, pg_connection(database_url) as conn:
        rows = [await rebuild_ops.status(conn, p, store) for p in all_projections()]
    print(
        f"{'READ MODEL':<12} {'VERSION':>7} {'CHECKPOINT':>11} {'STREAM LAST':>11} {'LAG':>8}"
        f"  {'RUNNING':<20} CONSUMER"
    )
    for row in rows:
        version = row["version"] if row["version"] is not None else "-"
        note = "" if row["version"] in (None, row["code_version"]) else f"  (code is v{row['code_version']})"
        print(
            f"{row['projection']:<12} {version!s:>7} {row['checkpoint']:>11} {row['stream_last_seq']:>11}"
            f" {row['lag']:>8}  {row['running']:<20} {row['consumer']}{note}"
        )
        if row["buckets"]:
            b = row["buckets"]
            print(f"{'':<12} {b['count']} buckets, applied up to {b['lowest']} … {b['highest']}")
    return 0


class _Replay(Protocol[Report]):
    """A replay of the log into a copy of a read model (rebuild_ops.rebuild or verify)."""

    async def __call__(
        self, conn: Connection, projection: Projection, store: EventStore, *, progress: rebuild_ops.Progress
    ) -> Report: ...


async def _replay_with_progress(
    settings: Settings, read_model: Projection, replay: _Replay[Report], action: str
) -> Report:
    """Run ``replay`` on ``read_model`` with a progress bar labelled ``action``."""
    _, database_url = settings.servers()
    bar, progress = progress_bar(f"{action} {read_model.name}")
    with bar:
        async with event_store(settings) as store, pg_connection(database_url) as conn:
            return await replay(conn, read_model, store, progress=progress)


async def cmd_projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    report = await _replay_with_progress(settings, projection(args.name), rebuild_ops.rebuild, "rebuild")
    rate = report.events / report.seconds if report.seconds else 0.0
    print(
        f"Rebuilt {report.projection} v{report.version} from {report.events} events up to seq"
        f" {report.last_seq} in {report.seconds:.1f}s ({rate:,.0f} events/s) and swapped it in."
    )
    return 0


async def cmd_projections_verify(settings: Settings, args: argparse.Namespace) -> int:
    read_model = projection(args.name)
    report = await _replay_with_progress(settings, read_model, rebuild_ops.verify, "verify")
    if report.identical:
        print(f"{read_model.name}: identical to a rebuild from the log (up to seq {report.last_seq}).")
        return 0
    print(f"{read_model.name}: DIFFERS from a rebuild from the log (up to seq {report.last_seq}):")
    for diff in report.differences:
        print(
            f"  {diff.table}: {diff.only_in_live} rows only in live, {diff.only_in_rebuilt} only in rebuild"
        )
        for line in diff.sample:
            print(f"    {line}")
    print(f"Repair with `moltbot projections rebuild {read_model.name}`.")
    return 2


async def cmd_projections_run(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_projections

    nats_url, database_url = settings.servers()
    projections = [projection(name) for name in args.names] if args.names else list(all_projections())
    spec = load_streams_file(settings.streams_file)
    partitioning = None
    if args.partitions:
        try:
            partitioning = load_partitioning(settings.streams_file)
            Assignment(args.partitions, args.partition, partitioning.buckets)
        except PartitionError as exc:
            raise CommandError(str(exc)) from None
    elif args.partition:
        raise CommandError("--partition K needs --partitions N")
    try:
        await run_projections(
            nats_url,
            database_url,
            spec,
            projections,
            batch_size=args.batch_size,
            partitioning=partitioning,
            partitions=args.partitions,
            partition=args.partition,
            keyring=keyring(settings),
        )
    except* PartitionError as failures:
        raise CommandError(str(failures.exceptions[0])) from None
    await asyncio.Event().wait()
    return 0


def register(commands: Any) -> None:
    projections = commands.add_parser("projections", help="read models built from the log").add_subparsers(
        dest="projections_command", metavar="ACTION", required=True
    )
    names = ", ".join(p.name for p in all_projections())
    add(
        projections,
        "status",
        cmd_projections_status,
        "Checkpoint, stream position and lag of each read model.",
    )
    rb = add(
        projections,
        "rebuild",
        cmd_projections_rebuild,
        "Replay the log into a new copy of a read model beside the live one, then swap it in.",
    )
    rb.add_argument("name", help=f"read model: {names}")
    vf = add(
        projections,
        "verify",
        cmd_projections_verify,
        "Rebuild a read model into scratch and compare it row for row with the live one.",
    )
    vf.add_argument("name", help=f"read model: {names}")
    run = add(projections, "run", cmd_projections_run, "Run projection workers only (no embedded servers).")
    run.add_argument("names", nargs="*", help=f"read models to run (default: all of {names})")
    run.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help=f"events per transaction (default {DEFAULT_BATCH})",
    )
    run.add_argument(
        "--partitions",
        type=int,
        default=0,
        metavar="N",
        help="run as one of N partition workers instead of the single worker: tenants are hashed"
        " into the fixed buckets of the EVENTS_PARTITIONED stream (created on first use, see"
        " streams.yaml) and this process folds buckets b with b %% N == K. Start N processes,"
        " K = 0..N-1; N may change between runs. Default: one worker reads all of EVENTS",
    )
    run.add_argument(
        "--partition",
        type=int,
        default=0,
        metavar="K",
        help="which of the N partition workers this is, 0..N-1 (default 0)",
    )
