"""``moltbot events``: read, export and import the event log."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from adapters.nats.connection import connection
from adapters.nats.event_store import EventStore as NatsEventStore
from adapters.nats.log_rewrite import COPY, PARTITIONED, LogRewrite, RewriteError, RewritePlan
from adapters.postgres.database import connection as pg_connection
from adapters.vault.cipher import Keyring
from adapters.vault.sealing import sealing, unsealed_fields
from domain.errors import DomainError
from domain.ports import EventStore, StoredRecord
from gateway import tenant_carry
from gateway.tenant_carry import CarryError, TenantCarry
from moltbot import event_files
from moltbot.cli.common import CommandError, add, event_store, event_subject, keyring, progress_bar
from moltbot.settings import Settings
from projections.partitions import feed_replaced


async def cmd_events_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    lines = path.read_bytes().splitlines()
    carry = _carry(lines, args.transfer_key)
    async with event_store(settings) as store:
        if carry is not None:  # before the events: their sealed fields need the tenant's keys
            await _restore(settings, *carry)
        events = lines[1:] if carry else lines
        with tqdm(total=len(events), unit="ev", desc="import", file=sys.stderr, disable=args.quiet) as bar:
            report = await event_files.import_events(
                store, events, skip_invalid=args.skip_invalid, progress=bar.update
            )
    for error in report.invalid[:50]:
        print(f"{path}:{error}", file=sys.stderr)
    if len(report.invalid) > 50:
        print(f"... and {len(report.invalid) - 50} more invalid lines", file=sys.stderr)
    if report.invalid and not args.skip_invalid:
        print(
            f"Imported nothing: {len(report.invalid)} of {report.lines} lines are invalid."
            " Fix them, or pass --skip-invalid to import the valid ones.",
            file=sys.stderr,
        )
        return 1
    print(
        f"Imported {report.imported} events ({report.duplicates} already present,"
        f" {len(report.invalid)} invalid lines skipped)."
    )
    if carry is not None:
        print(f"Carried for tenant {carry[0].tenant_id}: {carry[0].summary()}.")
        print("Not carried: " + "; ".join(carry[0].left_behind) + ".")
    return 0


def _carry(lines: list[bytes], transfer_key: str | None) -> tuple[TenantCarry, Keyring] | None:
    """A portable tenant export's carry (its first line) and the key that opens it."""
    try:
        carry = tenant_carry.decode_line(lines[0]) if lines else None
        if carry is None:
            return None
        if not transfer_key:
            raise CommandError(
                f"This file carries tenant {carry.tenant_id}'s sign-ins, widget and keys, sealed under"
                f" transfer key {carry.transfer_key_id}: pass --transfer-key as its export printed it."
            )
        return carry, tenant_carry.transfer_keyring(transfer_key)
    except CarryError as exc:
        raise CommandError(str(exc)) from None


async def _restore(settings: Settings, carry: TenantCarry, transfer: Keyring) -> None:
    _, database_url = settings.servers()
    async with pg_connection(database_url, application_name="moltbot-events") as conn:
        try:
            await tenant_carry.restore(conn, carry, transfer, keyring(settings))
        except CarryError as exc:
            raise CommandError(f"Imported nothing: {exc}.") from None


async def cmd_events_export(settings: Settings, args: argparse.Namespace) -> int:
    portable = args.tenant and not args.events_only
    async with event_store(settings, personal=False) as store:  # as stored: personal fields sealed
        with contextlib.ExitStack() as files:
            out = files.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
            if args.output:
                os.chmod(args.output, 0o600)  # sign-ins and sealed secrets: the operator's eyes only
            transfer_key = await _write_carry(settings, args.tenant, out) if portable else None
            count = 0
            async for _ in event_files.export_events(
                store, out, subject=event_subject(args), since=args.since
            ):
                count += 1
            out.flush()
    print(f"Exported {count} events.", file=sys.stderr)
    if transfer_key is not None:
        print(
            "The file carries the tenant's sign-ins, widget and keys, sealed under a one-time transfer"
            " key. Give it to whoever imports the file by another way than the file itself:\n"
            f"  moltbot events import FILE --transfer-key {transfer_key}",
            file=sys.stderr,
        )
    return 0


async def _write_carry(settings: Settings, tenant_id: str, out: IO[bytes]) -> str:
    """The first line of a portable tenant export; the transfer key that opens it."""
    transfer, printable = tenant_carry.new_transfer_key()
    _, database_url = settings.servers()
    async with pg_connection(database_url, application_name="moltbot-events") as conn:
        try:
            carry = await tenant_carry.gather(conn, tenant_id, keyring(settings), transfer)
        except CarryError as exc:
            raise CommandError(str(exc)) from None
    out.write(tenant_carry.encode_line(carry))
    return printable


async def cmd_events_tail(settings: Settings, args: argparse.Namespace) -> int:
    async with event_store(settings, personal=False) as store:  # as stored: personal fields sealed
        since = args.since
        if since is None:
            since = max(await store.last_seq() - args.last + 1, 1)
        shown = 0
        async for record in store.read(since=since, subject=event_subject(args), follow=args.follow):
            shown += 1
            if args.json:
                sys.stdout.buffer.write(event_files.export_line(record))
            else:
                print(_describe(store, record))
            sys.stdout.flush()
    if not shown:  # on stderr: with --json, stdout stays JSON lines
        tenant = f" for tenant {args.tenant}" if args.tenant else ""
        print(f"No events{tenant} from seq {since} on.", file=sys.stderr)
    return 0


def _describe(store: EventStore, record: StoredRecord) -> str:
    try:
        event = store.codec.decode(record.data)
    except DomainError as exc:
        return f"{record.seq:>8}  {'?':<27} {'(invalid)':<28} {record.subject}  {exc}"
    return (
        f"{record.seq:>8}  {event.occurred_at.isoformat(timespec='milliseconds'):<27}"
        f" {event.type:<28} {event.tenant_id} {event.aggregate_id}  {event.actor}"
    )


async def cmd_events_generate(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.loadgen import generate

    events = list(generate(args.count, tenants=args.tenants, seed=args.seed))
    async with event_store(settings) as store:
        with tqdm(total=len(events), unit="ev", desc="append", file=sys.stderr) as bar:
            for start in range(0, len(events), 2000):
                results = await store.append_many(events[start : start + 2000])
                bar.update(len(results))
    print(f"Appended {len(events)} events.")
    return 0


async def cmd_events_seal(settings: Settings, args: argparse.Namespace) -> int:
    nats_url, database_url = settings.servers()
    async with connection(nats_url, name="moltbot-cli") as nc:
        rewrite = LogRewrite(nc)
        plan = await rewrite.plan()
        print(_describe_plan(plan))
        if args.dry_run:
            messages, fields = await _unsealed(NatsEventStore(nc), plan)
            print(f"{messages} of {plan.messages} events carry {fields} plaintext personal fields to seal.")
            print("Dry run: nothing changed.")
            return 0
        bar, progress = progress_bar("seal")
        async with sealing(nc, database_url, keyring(settings)) as sealer:
            with bar:
                try:
                    report = await rewrite.run(sealer.seal_stored, progress)
                except RewriteError as exc:
                    raise CommandError(str(exc)) from None
        if report.partitioned_deleted:
            async with pg_connection(database_url, application_name="moltbot-events") as conn:
                await feed_replaced(conn)
    print(
        f"Sealed the log: {report.changed} of {report.copied} events rewritten, sequences"
        f" {report.first_seq}..{report.last_seq} kept."
    )
    if report.consumers:
        print(f"Consumers made again where they stood: {', '.join(report.consumers)}.")
    if report.partitioned_deleted:
        print(f"{PARTITIONED} was deleted: the first partition worker makes it again from the new log.")
    return 0


def _describe_plan(plan: RewritePlan) -> str:
    if plan.resuming:
        return f"A rewrite stopped during its swap: {COPY} holds the rewritten log; finishing it."
    lines = [f"EVENTS: {plan.messages} events, sequences {plan.first_seq}..{plan.last_seq}."]
    for consumer in plan.consumers:
        lines.append(f"  consumer {consumer.name}: acknowledged up to {consumer.ack_floor}")
    if plan.partitioned:
        lines.append(f"  {PARTITIONED} exists: it is deleted and made again by its first worker")
    return "\n".join(lines)


async def _unsealed(store: NatsEventStore, plan: RewritePlan) -> tuple[int, int]:
    messages = fields = 0
    with tqdm(total=plan.messages, unit="ev", desc="scan", file=sys.stderr) as bar:
        async for record in store.read(since=plan.first_seq, until_seq=plan.last_seq):
            found = unsealed_fields(record.data)
            messages += found > 0
            fields += found
            bar.update(1)
    return messages, fields


def register(commands: Any) -> None:
    events = commands.add_parser("events", help="read, export and import the event log").add_subparsers(
        dest="events_command", metavar="ACTION", required=True
    )
    imp = add(events, "import", cmd_events_import, "Append the events of a JSON-lines file, in order.")
    imp.add_argument("file", help="JSON lines, one event envelope per line (as `events export` writes)")
    imp.add_argument(
        "--skip-invalid", action="store_true", help="import the valid lines even if some are not"
    )
    imp.add_argument(
        "--transfer-key",
        metavar="KEY",
        help="a portable tenant export's transfer key, as its export printed it (id:base64key)",
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    exp = add(events, "export", cmd_events_export, "Write events as JSON lines, each with its stream seq.")
    exp.add_argument(
        "--tenant",
        help="only this tenant's events, after a first line with what it needs on another deployment"
        " (sign-ins, website widget, keys; sealed under a transfer key printed on stderr)",
    )
    exp.add_argument(
        "--events-only", action="store_true", help="with --tenant: the events alone (a backup for here)"
    )
    exp.add_argument("--since", type=int, default=1, metavar="SEQ", help="first sequence (default 1)")
    exp.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    tail = add(events, "tail", cmd_events_tail, "Show the latest events; --follow waits for new ones.")
    tail.add_argument("--tenant", help="only this tenant's events")
    tail.add_argument("--since", type=int, metavar="SEQ", help="start at this sequence")
    tail.add_argument("--last", type=int, default=20, metavar="N", help="without --since: the last N (20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.add_argument("--json", action="store_true", help="print JSON lines (the export format)")
    seal = add(
        events,
        "seal",
        cmd_events_seal,
        "Rewrite a log written before sealing: every personal field sealed, the same sequence"
        " numbers (stop the product first; see docs/privacy.md).",
    )
    seal.add_argument("--dry-run", action="store_true", help="say what would be sealed, change nothing")
    gen = add(events, "generate", cmd_events_generate, "Append synthetic inbox traffic (demo and load).")
    gen.add_argument("count", type=int, help="number of events")
    gen.add_argument("--tenants", type=int, default=5)
    gen.add_argument("--seed", type=int, default=7)
