"""The ``moltbot`` command line.

Every command finds the servers through ``--data DIR`` (the folder ``moltbot up`` runs
in, default ``./.moltbot``) or ``MOLTBOT_NATS_URL`` / ``MOLTBOT_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from tqdm import tqdm

from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings
from adapters.nats.connection import connection
from adapters.nats.event_store import EventStore
from adapters.nats.streams import apply_streams, load_streams_file, stream_states
from adapters.postgres.database import connection as pg_connection
from adapters.vault.cipher import Keyring, VaultError, add_key_to_file, format_key, load_keyring
from adapters.vault.store import CredentialStore, ensure_schema
from domain import subjects
from domain.errors import DomainError
from moltbot import client, event_files, logs
from moltbot.roles import CONNECTOR_KINDS, GatewayStartError
from moltbot.settings import NoStackError, Settings
from moltbot.stack import StackAlreadyRunning, StackConfigError, up
from projections import rebuild as rebuild_ops
from projections.partitions import Assignment, PartitionError, load_partitioning
from projections.registry import all_projections, by_name
from projections.worker import DEFAULT_BATCH

log = structlog.get_logger()

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[EventStore]:
    nats_url, _ = settings.servers()
    async with connection(nats_url, name="moltbot-cli") as nc:
        yield EventStore(nc)


def _event_subject(args: argparse.Namespace) -> str:
    return subjects.tenant_filter(args.tenant) if args.tenant else subjects.ALL_EVENTS


# --- up ---------------------------------------------------------------------------------


async def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    try:
        await up(settings, cluster=args.cluster)
    except StackConfigError as exc:
        raise CommandError(str(exc)) from None
    return 0


async def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_gateway

    nats_url, database_url = settings.servers()
    media_store = settings.media_store()
    await run_gateway(
        nats_url,
        database_url,
        key_file=settings.jwt_key_file,
        host=args.host,
        port=args.port or settings.gateway_port,
        oidc=settings.oidc_config(),
        models=ModelChoice(settings.anthropic_api_key, base_url=settings.anthropic_base_url),
        keyring=_keyring(settings),
        endpoints=settings.endpoints,
        media=media_store,
        slack_app=settings.slack_app(),
        public_url=settings.public_url,
        limits=settings.limits,
        trusted_proxies=settings.trusted_proxies,
        ops_token=settings.ops_token,
    )
    return 0


# --- streams ----------------------------------------------------------------------------


async def cmd_streams_apply(settings: Settings, args: argparse.Namespace) -> int:
    spec = load_streams_file(settings.streams_file)
    nats_url, _ = settings.servers()
    async with connection(nats_url, name="moltbot-cli") as nc:
        reports = await apply_streams(nc, spec, replicas=args.replicas)
    for report in reports:
        print(report.line())
    return 1 if any(r.action == "drift" for r in reports) else 0


async def cmd_nats_users(settings: Settings, args: argparse.Namespace) -> int:
    """A deployment's NATS users: passwords kept in DIR/credentials.json, and the nats-server
    authorization block (every role's permissions) in DIR/users.conf; both mode 0600."""
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
    print("Give each role process MOLTBOT_NATS_USER=<role> and MOLTBOT_NATS_PASSWORD from the latter.")
    return 0


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


# --- events -----------------------------------------------------------------------------


async def cmd_events_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    lines = path.read_bytes().splitlines()
    async with _store(settings) as store:
        with tqdm(total=len(lines), unit="ev", desc="import", file=sys.stderr, disable=args.quiet) as bar:
            report = await event_files.import_events(
                store, lines, skip_invalid=args.skip_invalid, progress=bar.update
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
    return 0


async def cmd_events_export(settings: Settings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        with contextlib.ExitStack() as files:
            out = files.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
            count = 0
            async for _ in event_files.export_events(
                store, out, subject=_event_subject(args), since=args.since
            ):
                count += 1
            out.flush()
    print(f"Exported {count} events.", file=sys.stderr)
    return 0


async def cmd_events_tail(settings: Settings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        since = args.since
        if since is None:
            since = max(await store.last_seq() - args.last + 1, 1)
        shown = 0
        async for record in store.read(since=since, subject=_event_subject(args), follow=args.follow):
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


def _describe(store: EventStore, record: Any) -> str:
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
    async with _store(settings) as store:
        with tqdm(total=len(events), unit="ev", desc="append", file=sys.stderr) as bar:
            for start in range(0, len(events), 2000):
                results = await store.append_many(events[start : start + 2000])
                bar.update(len(results))
    print(f"Appended {len(events)} events.")
    return 0


# --- projections ------------------------------------------------------------------------


async def cmd_projections_status(settings: Settings, args: argparse.Namespace) -> int:
    _, database_url = settings.servers()
    async with _store(settings) as store, pg_connection(database_url) as conn:
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


def _progress_bar(desc: str) -> tuple[tqdm[Any], Callable[[int, int], None]]:
    bar: tqdm[Any] = tqdm(total=0, unit="ev", desc=desc, file=sys.stderr, unit_scale=True)

    def update(seq: int, target: int) -> None:
        bar.total = max(target, seq)
        bar.n = seq
        bar.refresh()

    return bar, update


async def cmd_projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    projection = _projection(args.name)
    _, database_url = settings.servers()
    bar, progress = _progress_bar(f"rebuild {projection.name}")
    with bar:
        async with _store(settings) as store, pg_connection(database_url) as conn:
            report = await rebuild_ops.rebuild(conn, projection, store, progress=progress)
    rate = report.events / report.seconds if report.seconds else 0.0
    print(
        f"Rebuilt {report.projection} v{report.version} from {report.events} events up to seq"
        f" {report.last_seq} in {report.seconds:.1f}s ({rate:,.0f} events/s) and swapped it in."
    )
    return 0


async def cmd_projections_verify(settings: Settings, args: argparse.Namespace) -> int:
    projection = _projection(args.name)
    _, database_url = settings.servers()
    bar, progress = _progress_bar(f"verify {projection.name}")
    with bar:
        async with _store(settings) as store, pg_connection(database_url) as conn:
            report = await rebuild_ops.verify(conn, projection, store, progress=progress)
    if report.identical:
        print(f"{projection.name}: identical to a rebuild from the log (up to seq {report.last_seq}).")
        return 0
    print(f"{projection.name}: DIFFERS from a rebuild from the log (up to seq {report.last_seq}):")
    for diff in report.differences:
        print(
            f"  {diff.table}: {diff.only_in_live} rows only in live, {diff.only_in_rebuilt} only in rebuild"
        )
        for line in diff.sample:
            print(f"    {line}")
    print(f"Repair with `moltbot projections rebuild {projection.name}`.")
    return 2


async def cmd_projections_run(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_projections

    nats_url, database_url = settings.servers()
    projections = [_projection(name) for name in args.names] if args.names else list(all_projections())
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
        )
    except* PartitionError as failures:
        raise CommandError(str(failures.exceptions[0])) from None
    await asyncio.Event().wait()
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
            keyring=_keyring(settings),
            settings=AgentSettings(
                debounce=settings.agent_debounce,
                agent_runs_per_conversation=settings.limits.agent_runs_per_conversation,
            ),
        )
    finally:
        await models.aclose()
    return 0


async def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import run_outbox

    nats_url, _ = settings.servers()
    await run_outbox(nats_url)
    return 0


async def cmd_connector(settings: Settings, args: argparse.Namespace) -> int:
    from moltbot.roles import ChannelSettings, run_connectors

    nats_url, database_url = settings.servers()
    media_store = settings.media_store()
    channels = ChannelSettings(
        database_url,
        _keyring(settings),
        endpoints=settings.endpoints,
        media=media_store,
    )
    await run_connectors(nats_url, load_streams_file(settings.streams_file), args.kinds, channels=channels)
    return 0


def _projection(name: str) -> Any:
    try:
        return by_name(name)
    except LookupError as exc:
        raise CommandError(str(exc)) from None


# --- vault ------------------------------------------------------------------------------


def _keyring(settings: Settings) -> Keyring:
    try:
        return load_keyring(
            keys=settings.vault_keys, current=settings.vault_key_id, key_file=settings.vault_key_file
        )
    except VaultError as exc:
        raise CommandError(str(exc)) from None


async def cmd_vault_rotate(settings: Settings, args: argparse.Namespace) -> int:
    database_url = settings.database()
    keyring = _keyring(settings)
    async with pg_connection(database_url, application_name="moltbot-vault") as conn:
        await ensure_schema(conn)
        desc = f"rotate to {keyring.current_id}"
        with tqdm(total=0, unit="row", desc=desc, file=sys.stderr, disable=args.quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            report = await CredentialStore(conn, keyring).rotate(batch=args.batch_size, progress=progress)
    for connection_id in report.failed:
        print(f"{connection_id}: cannot decrypt with the configured keys", file=sys.stderr)
    print(
        f"Re-encrypted {report.rotated} credentials under key {report.key_id}"
        f" ({report.already_current} already current, {len(report.failed)} failed)."
    )
    return 1 if report.failed else 0


async def cmd_vault_new_key(settings: Settings, args: argparse.Namespace) -> int:
    if settings.vault_keys or args.print:
        key_id, key = Keyring.generate_key()
        print(format_key(key_id, key))
        print(
            f"Append this entry to MOLTBOT_VAULT_KEYS (comma-separated), set MOLTBOT_VAULT_KEY_ID={key_id}"
            " on every process, restart them, then run `moltbot vault rotate`.",
            file=sys.stderr,
        )
        return 0
    if settings.vault_key_id:
        raise CommandError("MOLTBOT_VAULT_KEY_ID is set: set MOLTBOT_VAULT_KEYS too")
    try:
        key_id = add_key_to_file(settings.vault_key_file)
    except VaultError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"Added key {key_id} to {settings.vault_key_file} and made it current."
        " Run `moltbot vault rotate` to re-encrypt the stored credentials under it."
    )
    return 0


# --- API client commands (through the gateway, like any client) -------------------------


def _gateway_url(settings: Settings, args: argparse.Namespace) -> str:
    if getattr(args, "gateway", None):
        return str(args.gateway).rstrip("/")
    if os.environ.get("MOLTBOT_GATEWAY_URL"):
        return os.environ["MOLTBOT_GATEWAY_URL"].rstrip("/")
    if settings.stack_file.exists():
        url = json.loads(settings.stack_file.read_text()).get("gateway_url")
        if url:
            return str(url)
    return f"http://127.0.0.1:{settings.gateway_port}"


@asynccontextmanager
async def _api() -> AsyncIterator[client.Api]:
    path = client.session_path(os.environ)
    async with client.Api(client.load_session(path), path) as api:
        yield api


async def cmd_login(settings: Settings, args: argparse.Namespace) -> int:
    # Prompting happens before any network I/O, so blocking on the terminal is harmless here.
    email = args.email or await asyncio.to_thread(input, "E-mail: ")
    password = (
        sys.stdin.readline().rstrip("\n")
        if args.password_stdin
        else await asyncio.to_thread(getpass.getpass, "Password: ")
    )
    session = await client.login(_gateway_url(settings, args), email.strip(), password, signup=args.signup)
    client.save_session(client.session_path(os.environ), session)
    print(f"Logged in to {session.gateway_url} as {email} (tenant {session.tenant_id}).")
    return 0


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        me = await api.get("/v1/me")
        channels = await api.get("/v1/channels")
        unread = await api.get("/v1/conversations", unread="true", limit=200)
    print(f"{me['email']} — {me['tenant_name']} ({me['plan']} plan, {me['role']})")
    print(f"gateway   {api.session.gateway_url}")
    print(f"channels  {len(channels)} ({sum(1 for c in channels if c['state'] == 'connected')} connected)")
    more = "+" if unread["next_cursor"] else ""
    print(f"unread    {len(unread['items'])}{more} conversations")
    return 0


async def cmd_channels_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        channels = await api.get("/v1/channels")
    if not channels:
        print(f"No channels yet. Connect one in the web app: {api.session.gateway_url} (Channels).")
    for channel in channels:
        message = f"  {channel['state_message']}" if channel["state_message"] else ""
        print(f"{channel['connection_id']:<30} {channel['channel']:<10} {channel['state']:<16}{message}")
    return 0


async def cmd_conversations_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        page = await api.get(
            "/v1/conversations",
            limit=args.limit,
            channel=args.channel,
            unread="true" if args.unread else None,
        )
        widget = None
        if not page["items"] and not (args.channel or args.unread):
            with contextlib.suppress(client.ClientError):
                widget = await api.get("/v1/webchat")
    if widget is not None:
        url = api.session.gateway_url.rstrip("/") + widget["widget_url"]
        print(f"No conversations yet. Try your website chat: {url}")
    elif not page["items"]:
        which = ("unread " if args.unread else "") + (f"{args.channel} " if args.channel else "")
        print(f"No {which}conversations." if which else "No conversations yet.")
    for item in page["items"]:
        unread = f"({item['unread_count']})" if item["unread_count"] else ""
        preview = (item["last_message_preview"] or "").replace("\n", " ")[:60]
        title = item["title"][:24]
        print(f"{item['conversation_id']:<30} {item['channel']:<9} {title:<24} {unread:>6}  {preview}")
    if page["next_cursor"]:
        print("... more: use --limit (up to 200)", file=sys.stderr)
    return 0


async def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    text = " ".join(args.text)
    key = args.idempotency_key or str(uuid.uuid4())
    async with _api() as api:
        accepted = await api.post(
            "/v1/messages",
            {"conversation_id": args.conversation, "text": text},
            headers={"Idempotency-Key": key},
        )
        print(f"Queued {accepted['message_id']} (seq {accepted['seq']}).")
        if args.no_wait:
            return 0
        status = await _delivery_status(api, args.conversation, accepted, wait=args.timeout)
    if status == "sent":
        print("Sent.")
        return 0
    if status == "failed":
        print("Not sent: the channel refused it (see the conversation in the inbox).", file=sys.stderr)
        return 1
    print(f"Still sending after {args.timeout:.0f}s; it stays queued.", file=sys.stderr)
    return 0


async def _delivery_status(
    api: client.Api, conversation: str, accepted: dict[str, Any], *, wait: float
) -> str:
    """Poll the conversation until the message is sent or failed, or ``wait`` seconds pass."""
    deadline = asyncio.get_running_loop().time() + wait
    status = "pending"
    while status == "pending" and asyncio.get_running_loop().time() < deadline:
        page = await api.get(f"/v1/conversations/{conversation}/messages", limit=20, min_seq=accepted["seq"])
        status = next(
            (m["status"] for m in page["items"] if m["message_id"] == accepted["message_id"]), status
        )
        if status == "pending":
            await asyncio.sleep(0.2)
    return status


async def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        async for seq, event in api.events(args.since, args.types):
            if args.json:
                print(json.dumps({"seq": seq, **event}), flush=True)
            else:
                print(
                    f"{seq:>8}  {event['occurred_at']:<27} {event['type']:<26} {event['aggregate_id']}",
                    flush=True,
                )
    return 0


# --- parser -----------------------------------------------------------------------------


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

    def add(group: Any, name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

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

    gateway_help = "gateway URL (default: $MOLTBOT_GATEWAY_URL, the data folder's stack, or :8000)"
    login_cmd = add(
        commands, "login", cmd_login, "Log in to a gateway (or --signup) and remember the session."
    )
    login_cmd.add_argument("--email")
    login_cmd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login_cmd.add_argument("--signup", action="store_true", help="create the account first")
    login_cmd.add_argument("--gateway", metavar="URL", help=gateway_help)
    add(commands, "status", cmd_status, "Who you are, your channels and unread conversations.")
    channels = commands.add_parser("channels", help="your connected channels").add_subparsers(
        dest="channels_command", metavar="ACTION", required=True
    )
    add(channels, "list", cmd_channels_list, "List channels and their state.")
    conversations = commands.add_parser("conversations", help="your inbox").add_subparsers(
        dest="conversations_command", metavar="ACTION", required=True
    )
    conv_list = add(conversations, "list", cmd_conversations_list, "Most recently active conversations.")
    conv_list.add_argument("--limit", type=int, default=20)
    conv_list.add_argument("--channel", help="only this channel (telegram, slack, webchat, ...)")
    conv_list.add_argument("--unread", action="store_true", help="only conversations with unread messages")
    send_cmd = add(
        commands,
        "send",
        cmd_send,
        "Send a message into a conversation, through its channel; waits until the channel confirms.",
    )
    send_cmd.add_argument(
        "--conversation", required=True, metavar="ID", help="conversation id (see conversations list)"
    )
    send_cmd.add_argument("text", nargs="+", help="the message")
    send_cmd.add_argument("--idempotency-key", metavar="KEY", help="retrying with the same key sends once")
    send_cmd.add_argument("--no-wait", action="store_true", help="return once queued")
    send_cmd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the channel (10)")
    tail_cmd = add(
        commands,
        "tail",
        cmd_tail,
        "Follow your events live; resumes after the last one shown if the line drops.",
    )
    tail_cmd.add_argument("--since", type=int, metavar="SEQ", help="start at this sequence (default: now)")
    tail_cmd.add_argument("--types", help="comma-separated event types, e.g. message.*")
    tail_cmd.add_argument("--json", action="store_true", help="print JSON lines")

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

    events = commands.add_parser("events", help="read, export and import the event log").add_subparsers(
        dest="events_command", metavar="ACTION", required=True
    )
    imp = add(events, "import", cmd_events_import, "Append the events of a JSON-lines file, in order.")
    imp.add_argument("file", help="JSON lines, one event envelope per line (as `events export` writes)")
    imp.add_argument(
        "--skip-invalid", action="store_true", help="import the valid lines even if some are not"
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    exp = add(events, "export", cmd_events_export, "Write events as JSON lines, each with its stream seq.")
    exp.add_argument("--tenant", help="only this tenant's events")
    exp.add_argument("--since", type=int, default=1, metavar="SEQ", help="first sequence (default 1)")
    exp.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    tail = add(events, "tail", cmd_events_tail, "Show the latest events; --follow waits for new ones.")
    tail.add_argument("--tenant", help="only this tenant's events")
    tail.add_argument("--since", type=int, metavar="SEQ", help="start at this sequence")
    tail.add_argument("--last", type=int, default=20, metavar="N", help="without --since: the last N (20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.add_argument("--json", action="store_true", help="print JSON lines (the export format)")
    gen = add(events, "generate", cmd_events_generate, "Append synthetic inbox traffic (demo and load).")
    gen.add_argument("count", type=int, help="number of events")
    gen.add_argument("--tenants", type=int, default=5)
    gen.add_argument("--seed", type=int, default=7)

    vault = commands.add_parser(
        "vault", help="encrypted channel credentials (bot and OAuth tokens)"
    ).add_subparsers(dest="vault_command", metavar="ACTION", required=True)
    rot = add(
        vault,
        "rotate",
        cmd_vault_rotate,
        "Re-encrypt every stored credential that is not under the current key"
        " (MOLTBOT_VAULT_KEY_ID, or the key file's current key). Needs only the database."
        " Exits 1 if some could not be decrypted with the configured keys.",
    )
    rot.add_argument("--batch-size", type=int, default=100, help="rows read per query (default 100)")
    rot.add_argument("--quiet", action="store_true", help="no progress bar")
    new_key = add(
        vault,
        "new-key",
        cmd_vault_new_key,
        "Make a new vault key. With MOLTBOT_VAULT_KEYS set: print an id:base64key entry to add"
        " to it. Otherwise: add the key to the local key file (<data dir>/vault/keys.json)"
        " and make it current. Then run `moltbot vault rotate`.",
    )
    new_key.add_argument(
        "--print", action="store_true", help="only print a new id:base64key entry, change no file"
    )

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(os.environ, data_dir=args.data)
    except ValueError as exc:
        print(f"moltbot: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    try:
        exit_code: int = asyncio.run(args.handler(settings, args))
        return exit_code
    except KeyboardInterrupt:
        return 130
    except (CommandError, NoStackError, StackAlreadyRunning, client.ClientError, GatewayStartError) as exc:
        print(f"moltbot: {exc}", file=sys.stderr)
        return 1
