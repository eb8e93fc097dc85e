"""``moltbot migrate`` and ``moltbot export``: moving in and out.

``migrate`` moves in from the self-hosted assistant (OpenClaw, formerly Moltbot and
Clawdbot) — its history, its channels' credentials and its agent's model and instructions —
through the gateway's API as the signed-in owner (``moltbot login`` first).

History goes in batches to ``POST /v1/imports/{id}/batches``; each message is named from
the source, so a rerun, or a run resumed after Ctrl-C, stores nothing twice. What moves and
what does not: docs/migrate.md. ``migrate --from-export FILE`` brings in an inbox's own
export, which ``export --out FILE`` downloads (``GET /v1/export``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import stamina
from tqdm import tqdm

from adapters.imports import export_archive
from adapters.imports import openclaw_state as selfhosted
from adapters.imports import openclaw_transcripts as transcripts
from domain.imports import ImportedConversation, ImportedMessage
from domain.models import KNOWN_MODELS, model_family
from moltbot import client
from moltbot.cli.common import CommandError, add
from moltbot.settings import Settings

BATCH = 500  # messages per request
MAX_PROMPT = 8000  # the agent's instructions (PUT /v1/agents/{id})


class Batch(msgspec.Struct):
    conversations: list[ImportedConversation] = msgspec.field(default_factory=list)
    messages: list[ImportedMessage] = msgspec.field(default_factory=list)


History = Iterable[tuple[ImportedConversation, ImportedMessage]]


def batches(history: History, size: int = BATCH) -> Iterator[Batch]:
    """Batches of up to ``size`` messages; each conversation rides in the batch of its first
    message. The last batch may be empty."""
    sent: set[str] = set()
    batch = Batch()
    for conversation, message in history:
        if conversation.key not in sent:
            sent.add(conversation.key)
            batch.conversations.append(conversation)
        batch.messages.append(message)
        if len(batch.messages) >= size:
            yield batch
            batch = Batch()
    yield batch


def _openclaw_history(sessions: list[transcripts.Session], tally: transcripts.Tally) -> History:
    for session in sessions:
        for message in transcripts.messages(session, tally):
            yield session.conversation, message


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    if args.from_export:
        return await _from_export(Path(args.from_export).expanduser(), args)
    folder = selfhosted.find_folder(Path(args.source).expanduser() if args.source else None)
    try:
        found = selfhosted.read_state(folder, os.environ)
    except selfhosted.StateError as exc:
        raise CommandError(str(exc)) from None
    tally = transcripts.Tally()
    sessions = transcripts.sessions(folder, tally)
    print(f"Moving in from {folder} ({found.config_file.name if found.config_file else 'no config'}):")
    for warning in found.warnings:
        print(f"  note: {warning}")
    history = _openclaw_history(sessions, tally)
    if args.dry_run:
        _would_create(history, tally)
        for channel in found.channels:
            todo = "would connect" if channel.missing is None else f"not connected: {channel.missing}"
            print(f"  channel {channel.kind} ({channel.account}): {todo}")
        for agent in found.agents[:1]:
            print(f"  agent: name {agent.name!r}, model {agent.model or 'unchanged'},"
                  f" instructions {len(agent.instructions)} characters")  # fmt: skip
        _skipped(tally)
        return 0
    async with _api(args) as api:
        started = await api.post(
            "/v1/imports",
            {"source": "openclaw", "source_key": str(folder.resolve()), "label": f"Moved in from {folder}"},
        )
        totals = await _send_history(api, started["import_id"], history, tally, quiet=args.quiet)
        plan = await api.get("/v1/billing")  # the plan's history window and models
        _history_window(plan, tally.oldest)
        await _recreate(api, found, plan, assume_yes=args.yes)
    _summary(totals, tally, f" from {tally.sessions} of {len(sessions)} sessions")
    _bridge_steps(found, api_url=api.session.gateway_url)  # the inbox moved into
    return 0


async def _from_export(path: Path, args: argparse.Namespace) -> int:
    """An inbox's own export (``moltbot export``) brought into the inbox logged in to."""
    try:
        archive = export_archive.open_archive(path)
    except export_archive.ArchiveError as exc:
        raise CommandError(str(exc)) from None
    tally = transcripts.Tally()
    history = export_archive.history(archive, tally)
    print(f"Moving in the export of inbox {archive.tenant_id} from {archive.exported_at}:")
    if args.dry_run:
        _would_create(history, tally)
        for agent in archive.agents[:1]:
            print(
                f"  agent: name {agent.name!r}, model {agent.model},"
                f" instructions {len(agent.instructions)} characters"
            )
        _skipped(tally)
        return 0
    async with _api(args) as api:
        started = await api.post(
            "/v1/imports",
            {"source": "export", "source_key": archive.tenant_id, "label": f"Export of {archive.tenant_id}"},
        )
        totals = await _send_history(
            api, started["import_id"], history, tally, quiet=args.quiet, total=archive.messages
        )
        plan = await api.get("/v1/billing")
        _history_window(plan, tally.oldest)
        for agent in archive.agents[:1]:
            await _agent(api, plan, agent.name, agent.model, agent.instructions, args.yes)
    _summary(totals, tally, "")
    return 0


@contextlib.asynccontextmanager
async def _api(args: argparse.Namespace, action: str = "move history in") -> AsyncIterator[client.Api]:
    path = client.session_path(os.environ)
    session = client.load_session(path)
    wanted = _gateway_of(args)
    if wanted and wanted.rstrip("/") != session.gateway_url.rstrip("/"):
        raise CommandError(
            f"You are logged in to {session.gateway_url}, not {wanted}:"
            f" run `moltbot login --gateway {wanted}`."
        )
    async with client.Api(session, path) as api:
        me = await api.get("/v1/me")
        if me.get("role") not in (None, "owner"):
            raise CommandError(f"Only an inbox's owner can {action}: log in as the owner.")
        yield api


def _gateway_of(args: argparse.Namespace) -> str | None:
    return getattr(args, "gateway", None) or os.environ.get("MOLTBOT_GATEWAY_URL")


async def _send_history(
    api: client.Api,
    import_id: str,
    history: History,
    tally: transcripts.Tally,
    *,
    quiet: bool,
    total: int | None = None,
) -> Counter[str]:
    totals: Counter[str] = Counter()
    seq: int | None = None
    with tqdm(total=total, unit="msg", desc="history", file=sys.stderr, disable=quiet) as bar:
        for batch in batches(history):
            if batch.messages or batch.conversations:
                path = f"/v1/imports/{import_id}/batches" + (f"?min_seq={seq}" if seq else "")
                stored = await _post_batch(api, path, msgspec.to_builtins(batch))
                seq = stored["seq"] or seq
                for what in ("conversations", "messages"):
                    totals[f"new {what}"] += stored["stored"][what]
                    totals[f"already {what}"] += stored["already"][what]
                totals["usage records"] += stored["usage_records"]
            bar.update(len(batch.messages))
    return totals


def _lagging(exc: Exception) -> bool:
    return isinstance(exc, client.ClientError) and exc.code == "not_caught_up"


async def _post_batch(api: client.Api, path: str, body: dict[str, Any]) -> Any:
    """One batch; again while the inbox has not caught up with the batch before (503)."""
    async for attempt in stamina.retry_context(on=_lagging, attempts=None, timeout=120, wait_initial=1):
        with attempt:
            return await api.post(path, body)
    raise AssertionError("unreachable")  # pragma: no cover


async def _ask(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} [skipped: pass --yes to do it without asking]")
        return False
    answer = await asyncio.to_thread(input, f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def _recreate(
    api: client.Api, found: selfhosted.SelfHostedState, plan: dict[str, Any], *, assume_yes: bool
) -> None:
    """The channels the cloud runs, from the config's tokens, and the default agent's model
    and instructions; each after a yes/no (``--yes``: without asking)."""
    have = {channel["channel"] for channel in await api.get("/v1/channels")}
    for channel in found.channels:
        if channel.kind not in selfhosted.CLOUD_CHANNELS or channel.missing is not None:
            continue
        label = f"{channel.kind.title()} ({channel.account})"
        if channel.kind in have:
            print(f"{label}: a {channel.kind} channel is connected already; left as it is.")
            continue
        if not await _ask(f"Connect {label} with the token from your config?", assume_yes):
            continue
        try:
            await api.post(f"/v1/channels/{channel.kind}/connect", channel.secrets)
        except client.ClientError as exc:
            print(f"{label}: not connected — {exc}")
            continue
        have.add(channel.kind)
        print(f"{label}: connected.")
    for agent in found.agents[:1]:
        await _agent(api, plan, agent.name, agent.model, agent.instructions, assume_yes)


async def _agent(
    api: client.Api,
    plan: dict[str, Any],
    name: str,
    configured_model: str | None,
    instructions: str,
    assume_yes: bool,
) -> None:
    """The inbox's first agent gets ``name``, the model (where the plan offers it) and the
    instructions."""
    agents = await api.get("/v1/agents")
    if not agents:
        return
    target = agents[0]
    body: dict[str, Any] = {"name": name}
    model = (configured_model or "").split("/")[-1]
    offered = plan.get("models")  # None: every model
    if model and model_family(model) is None:
        print(f"Agent: {configured_model} is not a model offered here ({', '.join(KNOWN_MODELS)});")
        print(f"  it keeps {target['model']}.")
    elif model and offered is not None and model_family(model) not in offered:
        print(f"Agent: your plan offers {', '.join(offered)}, not {model}; it keeps {target['model']}")
        print("  (upgrade, then choose the model in Settings → Agents).")
    elif model:
        body["model"] = model
    if instructions:
        if len(instructions) > MAX_PROMPT:
            instructions = instructions[: MAX_PROMPT - 60].rstrip() + "\n\n[… shortened on the move]"
            print(f"Agent: the instructions were cut to {MAX_PROMPT} characters.")
        body["system_prompt"] = instructions
    what = ", ".join(k.replace("system_prompt", "instructions") for k in body)
    if not await _ask(f"Give the agent {target['name']!r} the {what} you had?", assume_yes):
        return
    try:
        await api.put(f"/v1/agents/{target['agent_id']}", body)
    except client.ClientError as exc:
        print(f"Agent: not changed — {exc}")
        return
    print(f"Agent {target['name']!r}: {what} set.")


def _history_window(plan: dict[str, Any], oldest: datetime | None) -> None:
    """Say so when the plan's history window will erase part of what came in."""
    days = plan.get("history_days")
    if days is None or oldest is None:
        return
    if oldest < datetime.now(UTC) - timedelta(days=days):
        print(
            f"Note: your plan keeps {days} days of history; what is older (from {oldest:%Y-%m-%d}) is"
            " erased at the next daily clean-up. Upgrade first to keep it, then run migrate again."
        )


def _would_create(history: History, tally: transcripts.Tally) -> None:
    by_channel: Counter[str] = Counter()
    messages = 0
    tokens = 0
    for batch in batches(history):
        by_channel.update(c.channel for c in batch.conversations)
        messages += len(batch.messages)
        tokens += sum(m.tokens_in + m.tokens_out for m in batch.messages)
    print("Would create (nothing is sent with --dry-run):")
    channels = ", ".join(f"{n} on {name}" for name, n in by_channel.most_common()) or "none"
    print(f"  {sum(by_channel.values())} conversations ({channels})")
    print(f"  {messages} messages with their original times, marked as history")
    print(f"  {tokens} tokens of model usage, recorded as imported (not against this month's budget)")


def _summary(totals: Counter[str], tally: transcripts.Tally, source: str) -> None:
    print(
        f"History: {totals['new conversations']} new conversations and {totals['new messages']} new messages"
        f" ({totals['already conversations']} and {totals['already messages']} were there already)"
        f"{source}; {totals['usage records']} usage records."
    )
    _skipped(tally)


def _skipped(tally: transcripts.Tally) -> None:
    for what, n in sorted(tally.skipped.items()):
        print(f"  skipped: {n} {what}")
    for where in tally.unreadable[:10]:
        print(f"    {where}")
    if len(tally.unreadable) > 10:
        print(f"    … and {tally.skipped['unreadable lines'] - 10} more")


def _bridge_steps(found: selfhosted.SelfHostedState, api_url: str) -> None:
    device = sorted({c.kind for c in found.channels if c.kind in selfhosted.BRIDGE_CHANNELS})
    if not device:
        return
    print(f"\n{', '.join(d.title() for d in device)} run on your own Mac here, in the Personal Bridge:")
    print("  1. In the inbox: Bridge → Pair a device (an 8-character code, for 10 minutes).")
    print(f"  2. On the Mac:  moltbot bridge pair CODE --gateway {api_url}")
    print("  3. Then:        moltbot bridge run   (or `moltbot bridge install-service` to start it at login)")
    if "imessage" in device:
        print("  iMessage: give the bridge Full Disk Access (docs/bridge.md); it brings in the last 14 days.")
    if "whatsapp" in device:
        print("  WhatsApp: on the channels page, connect WhatsApp on that device and scan its QR code.")
    if "signal" in device:
        print("  Signal: install signal-cli there; on the channels page, connect Signal on it.")


def register(commands: Any) -> None:
    migrate = add(
        commands,
        "migrate",
        cmd_migrate,
        "Move in from the self-hosted assistant (OpenClaw, Moltbot, Clawdbot): history, channels, agent.",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="DIR",
        help=f"the self-hosted state folder (default: the first of {', '.join(selfhosted.DEFAULT_FOLDERS)})",
    )
    migrate.add_argument(
        "--gateway", metavar="URL", help="the inbox to move into (you must be logged in to it)"
    )
    migrate.add_argument("--dry-run", action="store_true", help="print what would be created, send nothing")
    migrate.add_argument(
        "--yes", action="store_true", help="connect channels and set the agent without asking"
    )
    migrate.add_argument(
        "--from-export", metavar="FILE", help="an inbox's own export (`moltbot export`) instead of a folder"
    )
    migrate.add_argument("--quiet", action="store_true", help="no progress bar")
    export = add(
        commands,
        "export",
        cmd_export,
        "Download your inbox: conversations, messages, contacts, agents, usage and media, as one zip.",
    )
    export.add_argument("--out", metavar="FILE", required=True, help="where to write the zip")
    export.add_argument("--quiet", action="store_true", help="no progress bar")


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise CommandError(f"{out} is a folder: give the file to write, e.g. {out / 'inbox.zip'}")
    with tqdm(unit="B", unit_scale=True, desc="export", file=sys.stderr, disable=args.quiet) as bar:

        def progress(received: int, total: int | None) -> None:
            bar.total = total
            bar.update(received - bar.n)

        async with _api(args, action="export it") as api:
            size = await api.download("/v1/export", out, progress)
    print(f"Wrote {out} ({size:,} bytes). `moltbot migrate --from-export {out}` brings it into an inbox.")
    return 0
