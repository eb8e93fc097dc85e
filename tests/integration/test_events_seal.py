"""`moltbot events seal`: a log written before sealing (plaintext personal fields) rewritten
into a sealed one with the same sequence numbers, its consumers where they stood, its
derived feed dropped, nothing of its plaintext left in the nats-server's store, and read
models that a rebuild from the sealed log makes identical (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from adapters.embedded.nats_server import NatsServer
from adapters.nats.event_store import EventStore
from adapters.nats.jetstream import JetStreamApi
from adapters.nats.log_rewrite import LogRewrite, RewriteError
from adapters.nats.streams import apply_streams
from adapters.postgres.database import connection as pg_connection
from adapters.vault.sealing import unsealed_fields
from domain import events as ev
from moltbot.loadgen import generate
from projections import rebuild as rebuild_ops
from projections.partitions import load_partitioning
from projections.registry import all_projections
from tests.conftest import REPO_ROOT, Stack, moltbot_cli

pytestmark = pytest.mark.slow


def _store_holds(folder: Path, needle: bytes) -> bool:
    return any(needle in path.read_bytes() for path in folder.rglob("*") if path.is_file())


async def test_sealing_a_plaintext_log_keeps_its_sequences_consumers_and_read_models(
    stack: Stack, nats_server: NatsServer
) -> None:
    plain = EventStore(stack.store.nc)  # as the log was written before sealing
    written = list(generate(1500, tenants=3, seed=11))
    await plain.append_many(written)
    texts = sorted({e.data.text for e in written if isinstance(e, ev.MessageReceived)}, key=len)[-5:]
    jetstream = nats_server.store_dir / "jetstream"
    assert all(_store_holds(jetstream, text.encode()) for text in texts)
    last = await plain.last_seq()
    before = [(r.seq, r.subject, (r.headers or {}).get("Nats-Msg-Id")) async for r in plain.read()]
    assert before[0][0] == 1 and before[-1][0] == last

    async with stack.projections():
        await stack.wait_caught_up()
    live = await stack.snapshot()
    # The agent's consumer has worked through the first 10 events; the partitioned feed exists.
    js = stack.store.nc.jetstream()
    agent = await js.pull_subscribe_bind("agent", "EVENTS")
    for msg in await agent.fetch(10, timeout=5):
        await msg.ack_sync()
    await agent.unsubscribe()
    feed = load_partitioning(REPO_ROOT / "streams.yaml").stream
    api = JetStreamApi(stack.store.nc)
    assert "error" not in await api.create_stream(feed["name"], feed)

    code, out, err = await moltbot_cli(stack, "events", "seal", "--dry-run")
    assert code == 0, err
    assert f"EVENTS: {last} events, sequences 1..{last}." in out
    assert "plaintext personal fields to seal" in out and "Dry run: nothing changed." in out
    assert all(_store_holds(jetstream, text.encode()) for text in texts)

    code, out, err = await moltbot_cli(stack, "events", "seal")
    assert code == 0, err
    assert f"sequences 1..{last} kept" in out
    assert "seal" in err  # the progress bar

    # The same sequences, subjects and message ids; every personal field sealed and opening
    # back to what was written; nothing of the plaintext left in the store's files.
    after = [(r.seq, r.subject, (r.headers or {}).get("Nats-Msg-Id")) async for r in plain.read()]
    assert after == before
    raws = [r.data async for r in plain.read()]
    assert all(unsealed_fields(raw) == 0 for raw in raws)
    assert [event async for event in _events(stack.store)] == written
    for text in texts:
        assert not _store_holds(jetstream, text.encode()), f"{text!r} is still in plaintext in the store"
    # The agent resumes after what it had acknowledged; the feed is gone (its first worker
    # makes it again); streams.yaml sees no drift; new events follow on.
    agent_info = await api.consumer_info("EVENTS", "agent")
    assert agent_info["num_pending"] == last - 10
    assert "error" in await api.stream_info(feed["name"])
    reports = await apply_streams(stack.store.nc, stack.spec)
    assert {r.action for r in reports} == {"unchanged"}, [r.line() for r in reports]
    appended = await stack.store.append(next(iter(generate(1, tenants=1, seed=12))))
    assert appended.seq == last + 1
    # The read models rebuilt from the sealed log are the ones folded from the plaintext.
    async with pg_connection(stack.database_url) as conn:
        for projection in all_projections():
            verified = await rebuild_ops.verify(conn, projection, stack.store)
            assert verified.identical, (projection.name, verified.differences)
    assert await stack.snapshot() == live


async def _events(store: EventStore):  # type: ignore[no-untyped-def]
    async for record in store.read(until_seq=await store.last_seq()):
        yield store.codec.decode(record.data)


async def test_a_log_being_read_is_not_rewritten(stack: Stack) -> None:
    config = (await JetStreamApi(stack.store.nc).stream_info("EVENTS"))["config"]
    js = stack.store.nc.jetstream()
    reader = await js.pull_subscribe_bind("outbox", "EVENTS")
    waiting = asyncio.create_task(reader.fetch(1000, timeout=10))  # a process waiting for more
    await asyncio.sleep(0.3)
    with pytest.raises(RewriteError, match=r"outbox .* stop the product's processes first"):
        await LogRewrite(stack.store.nc).run(stack.store.sealer.seal_stored)  # type: ignore[union-attr]
    assert (await JetStreamApi(stack.store.nc).stream_info("EVENTS"))["config"] == config
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await waiting
    await reader.unsubscribe()
