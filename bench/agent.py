"""Agent benchmarks with the offline model (so the figures are the product's own overhead):

- trigger (message.received appended) -> the reply's message.send_requested in the log,
  p50/p99, one conversation at a time       vs a raw append round trip (EventStore.append)
- runs/s with one message in each of 100 conversations at once
                                            vs raw appends/s of the same events
The projections and the agent run in this process, as `moltbot up` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats

from adapters.agent.choice import ModelChoice
from adapters.agent.orchestrator import AgentSettings, Orchestrator
from adapters.embedded.nats_server import NatsServer
from adapters.embedded.postgres_server import PostgresServer
from adapters.nats.event_store import EventStore
from adapters.nats.streams import apply_streams, load_streams_file
from bench.backbone import REPO_ROOT, Figure, Progress
from bench.realtime import _percentile
from bench.stages import Stages, Step
from domain import agent, ids
from domain import events as ev
from moltbot.roles import run_agent, run_projections
from projections.agent_reads import AgentReads
from projections.registry import all_projections

CONVERSATIONS = 100
LATENCY_SAMPLES = 100
ROUNDS = 3


def setup_events(tenant_id: str) -> tuple[list[ev.Event], list[str]]:
    actor = "bench"
    events: list[ev.Event] = [
        ev.new_event(ev.TenantCreated, tenant_id=tenant_id, aggregate_id=tenant_id, actor=actor,
                     data=ev.TenantCreatedData(name="Bench", plan="byok")),
        ev.new_event(ev.AgentConfigured, tenant_id=tenant_id, aggregate_id=agent.default_agent_id(tenant_id),
                     actor=actor, data=agent.TEMPLATES["customer_support"]),
    ]  # fmt: skip
    conversations = [ids.new_id(ids.CONVERSATION) for _ in range(CONVERSATIONS)]
    for conversation in conversations:
        data = ev.ConversationCreatedData(
            channel="webchat",
            connection_id="cn_bench",
            kind="direct",
            title="Visitor",
            external_id=conversation,
            preview=True,  # the owner's own "Try it" chat: the offline model answers there
        )
        events.append(
            ev.new_event(
                ev.ConversationCreated, tenant_id=tenant_id, aggregate_id=conversation, actor=actor, data=data
            )
        )
    return events, conversations


def message(tenant_id: str, conversation: str, n: int) -> ev.MessageReceived:
    provider_id = f"{conversation}-{n}"
    return ev.new_event(
        ev.MessageReceived, tenant_id=tenant_id, aggregate_id=conversation, actor="bench",
        data=ev.MessageReceivedData(
            message_id=ids.stable_id(ids.MESSAGE, f"webchat:cn_bench:{provider_id}"),
            connection_id="cn_bench", channel="webchat", provider_message_id=provider_id,
            sender=ev.Sender(id="v", name="Visitor"),
            text=f"Question number {n}: do you ship to Lisbon?", sent_at=datetime.now(UTC),
        ),
    )  # fmt: skip


AGENT_STEPS: list[Step] = [
    (Orchestrator, "_trigger", "the whole trigger, from the consumer's delivery"),
    (AgentReads, "caught_up", "wait until the read models have applied the trigger"),
    (AgentReads, "trigger_context", "read the trigger's context (PostgreSQL, one transaction)"),
    (EventStore, "last_on", "direct gets (newer message? the lane, the summary)"),
    (EventStore, "append_batch", "atomic batches: claim + start, reply + usage + end"),
    (AgentReads, "run_context", "read the run's context (PostgreSQL, one transaction)"),
]


async def run(work_dir: Path, progress: Progress, stages: Stages | None = None) -> list[Figure]:
    """The figures; with ``stages``, the steps of the runs one at a time are timed into it."""
    spec = load_streams_file(REPO_ROOT / "streams.yaml")
    tenant_id = ids.new_id(ids.TENANT)
    async with PostgresServer(work_dir / "pg-agent") as pg, NatsServer(work_dir / "nats-agent") as srv:
        await pg.create_database("bench")
        database_url = pg.url_for("bench")
        nc = await nats.connect(srv.url)
        await apply_streams(nc, spec)
        store = EventStore(nc)
        setup, conversations = setup_events(tenant_id)
        await store.append_many(setup)

        replies: asyncio.Queue[float] = asyncio.Queue()

        async def on_reply(msg: Any) -> None:
            replies.put_nowait(time.perf_counter())

        await nc.subscribe(f"ev.{tenant_id}.conversation.*.message_send_requested", cb=on_reply)
        roles = [
            asyncio.create_task(run_projections(srv.url, database_url, spec, list(all_projections()))),
            asyncio.create_task(
                run_agent(srv.url, database_url, ModelChoice(None), settings=AgentSettings(debounce=0.0))
            ),
        ]
        try:
            progress(f"agent: {LATENCY_SAMPLES} runs one at a time (offline model)")
            latencies: list[float] = []
            appends: list[float] = []
            with contextlib.ExitStack() as timing:
                for n in range(LATENCY_SAMPLES + 5):
                    if n == 5 and stages is not None:  # the first runs warm up connections and caches
                        timing.enter_context(stages.watching(AGENT_STEPS))
                    started = time.perf_counter()
                    await store.append(message(tenant_id, conversations[n % CONVERSATIONS], n))
                    appended = time.perf_counter()
                    done = await asyncio.wait_for(replies.get(), 30)
                    if n >= 5:
                        latencies.append((done - started) * 1000)
                        appends.append((appended - started) * 1000)

            progress(f"agent: {ROUNDS} rounds of one message in each of {CONVERSATIONS} conversations")
            run_rates: list[float] = []
            append_rates: list[float] = []
            for round_ in range(ROUNDS):
                batch = [message(tenant_id, c, 1000 + round_) for c in conversations]
                started = time.perf_counter()
                await store.append_many(batch)
                append_rates.append(len(batch) / (time.perf_counter() - started))
                for _ in batch:
                    await asyncio.wait_for(replies.get(), 60)
                run_rates.append(len(batch) / (time.perf_counter() - started))
        finally:
            for role in roles:
                role.cancel()
            await asyncio.gather(*roles, return_exceptions=True)
            await nc.close()
    return [
        Figure("raw append round trip p50", _percentile(appends, 50), "ms"),
        Figure("raw append round trip p99", _percentile(appends, 99), "ms"),
        Figure("agent trigger -> reply send request p50 (offline model)", _percentile(latencies, 50), "ms",
               "raw append p50", _percentile(appends, 50)),
        Figure("agent trigger -> reply send request p99 (offline model)", _percentile(latencies, 99), "ms",
               "raw append p99", _percentile(appends, 99)),
        Figure(f"agent runs/s, {CONVERSATIONS} conversations at once", max(run_rates), "runs/s",
               "raw appends/s of the triggers", max(append_rates)),
    ]  # fmt: skip
