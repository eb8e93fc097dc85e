"""Export, import into an empty stack, identical read models; invalid files import nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.connection import connect
from adapters.nats.event_store import EventStore
from adapters.nats.streams import StreamsFile, apply_streams
from moltbot import event_files
from moltbot.loadgen import generate
from tests.integration.conftest import REPO_ROOT, Stack


async def test_export_then_import_into_a_fresh_stack_gives_identical_read_models(
    stack: Stack, tmp_path: Path, postgres: PostgresServer, streams_spec: StreamsFile
) -> None:
    events = list(generate(2500, tenants=3))
    await stack.store.append_many(events)
    async with stack.projections():
        await stack.wait_caught_up()
    original = await stack.snapshot()

    exported = io.BytesIO()
    seqs = [seq async for seq in event_files.export_events(stack.store, exported, subject="ev.>", since=1)]
    assert seqs == list(range(1, len(events) + 1))
    lines = exported.getvalue().splitlines()
    assert [json.loads(line)["seq"] for line in lines[:3]] == [1, 2, 3]

    await postgres.create_database("imported")
    async with NatsServer(tmp_path / "nats-fresh") as fresh_nats:
        nc = await connect(fresh_nats.url)
        await apply_streams(nc, streams_spec)
        fresh = Stack(fresh_nats.url, postgres.url_for("imported"), EventStore(nc), streams_spec)
        report = await event_files.import_events(fresh.store, lines)
        assert (report.imported, report.duplicates, report.invalid) == (len(events), 0, [])
        async with fresh.projections():
            await fresh.wait_caught_up()
        assert await fresh.snapshot() == original
        # Importing the same file again inside the duplicate window stores nothing new.
        again = await event_files.import_events(fresh.store, lines)
        assert (again.imported, again.duplicates) == (0, len(events))
        await nc.close()
    await postgres.drop_database("imported")


async def test_tenant_export_holds_only_that_tenant(stack: Stack) -> None:
    events = list(generate(600, tenants=3))
    await stack.store.append_many(events)
    tenant = events[0].tenant_id
    out = io.BytesIO()
    async for _ in event_files.export_events(stack.store, out, subject=f"ev.{tenant}.>", since=1):
        pass
    exported = [json.loads(line) for line in out.getvalue().splitlines()]
    assert exported
    assert {e["tenant_id"] for e in exported} == {tenant}
    assert len(exported) == sum(1 for e in events if e.tenant_id == tenant)


async def test_a_file_with_invalid_lines_imports_nothing(store: EventStore) -> None:
    good = _lines(generate(5, tenants=1))
    lines = [good[0], good[1], b'{"type":"message.teleported","v":1}', good[2], b"not json", good[3]]
    report = await event_files.import_events(store, lines)
    assert report.imported == 0
    assert [(e.line, e.reason) for e in report.invalid] == [(3, "unknown_type"), (5, "malformed")]
    assert await store.last_seq() == 0

    skipping = await event_files.import_events(store, lines, skip_invalid=True)
    assert skipping.imported == 4
    assert await store.last_seq() == 4


def _lines(events):  # type: ignore[no-untyped-def]
    from domain.codec import EventCodec

    codec = EventCodec()
    return [codec.encode(e) for e in events]


async def test_cli_import_reports_line_numbers(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = _lines(generate(3, tenants=1))
    path.write_bytes(b"\n".join([good[0], b"{broken", good[1]]) + b"\n")
    env = (
        os.environ
        | {"MOLTBOT_NATS_URL": stack.nats_url, "MOLTBOT_DATABASE_URL": stack.database_url}
        | stack.vault_environ()
    )
    result = subprocess.run(
        [sys.executable, "-m", "moltbot", "events", "import", str(path), "--quiet"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{path}:line 2: malformed" in result.stderr
    assert "Imported nothing" in result.stderr
    assert await stack.store.last_seq() == 0
