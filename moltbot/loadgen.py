"""Synthetic, deterministic inbox traffic: for demos, benchmarks and tests.

``generate(n)`` yields about ``n`` events across a few tenants: tenant and connection
set-up, conversations, inbound and outbound messages (with the odd edit, reaction and
mark-as-read) and usage records — the mix a busy inbox produces.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from domain import events as ev
from domain import ids

_WORDS = (
    *("meeting", "tomorrow", "invoice", "flight", "dinner", "project", "deadline", "coffee"),
    *("weekend", "report", "photos", "birthday", "train", "delayed", "call", "later"),
    *("thanks", "sure", "great", "idea", "budget", "review", "launch", "bug", "fixed"),
    *("deploy", "friday", "monday", "lunch", "kids", "school", "doctor", "pharmacy"),
)


class _Stamp(NamedTuple):
    """When an event occurs and its id, which sorts by that time."""

    at: datetime
    event_id: str


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14))).capitalize() + "."


def generate(
    events: int,
    *,
    tenants: int = 5,
    conversations_per_tenant: int = 20,
    seed: int = 7,
    start: datetime | None = None,
) -> Iterator[ev.Event]:
    rng = random.Random(seed)
    clock = start or datetime(2026, 1, 1, tzinfo=UTC)

    def tick() -> datetime:
        nonlocal clock
        clock += timedelta(milliseconds=rng.randint(1, 2000))
        return clock

    def ulid_at(at: datetime) -> str:
        return ids.ulid(int(at.timestamp() * 1000), rng.randbytes(10))

    def next_stamp() -> _Stamp:
        at = tick()
        return _Stamp(at, ulid_at(at))

    def make(
        cls: type[ev.E],
        tenant_id: str,
        aggregate_id: str,
        actor: str,
        data: ev.Payload,
        stamp: _Stamp | None = None,
    ) -> ev.E:
        """The event, at ``stamp`` (drawn before its payload, to date it) or else at the next tick."""
        at, event_id = stamp or next_stamp()
        return ev.new_event(
            cls,
            tenant_id=tenant_id,
            aggregate_id=aggregate_id,
            actor=actor,
            data=data,
            occurred_at=at,
            event_id=event_id,
        )

    conversations: list[tuple[str, str, str, str]] = []  # tenant, conversation, connection, channel
    emitted = 0
    for t in range(tenants):
        tenant_id = f"t_{ids.ulid(t, rng.randbytes(10))}"
        user_id = f"u_{ids.ulid(t, rng.randbytes(10))}"
        owner = f"user:{user_id}"
        yield make(ev.TenantCreated, tenant_id, tenant_id, owner, ev.TenantCreatedData(name=f"Tenant {t}"))
        yield make(
            ev.UserRegistered,
            tenant_id,
            user_id,
            owner,
            ev.UserRegisteredData(email=f"user{t}@example.com", display_name=f"User {t}"),
        )
        yield make(
            ev.MemberAdded, tenant_id, tenant_id, owner, ev.MemberAddedData(user_id=user_id, role="owner")
        )
        emitted += 3
        for channel in ("telegram", "webchat"):
            connection_id = f"cn_{ids.ulid(t, rng.randbytes(10))}"
            connector = f"connector:{channel}:{connection_id}"
            yield make(
                ev.ConnectionCreated,
                tenant_id,
                connection_id,
                owner,
                ev.ConnectionCreatedData(channel=channel, display_name=f"{channel} {t}"),
            )
            yield make(
                ev.ConnectionStateChanged,
                tenant_id,
                connection_id,
                connector,
                ev.ConnectionStateChangedData(state="connected", code="ok", message="Connected"),
            )
            emitted += 2
            for c in range(conversations_per_tenant // 2):
                conversation_id = f"c_{ids.ulid(t * 1000 + c, rng.randbytes(10))}"
                yield make(
                    ev.ConversationCreated,
                    tenant_id,
                    conversation_id,
                    connector,
                    ev.ConversationCreatedData(
                        channel=channel,
                        connection_id=connection_id,
                        kind="group" if c % 5 == 0 else "direct",
                        title=f"Chat {t}-{c}",
                        external_id=str(c),
                    ),
                )
                emitted += 1
                conversations.append((tenant_id, conversation_id, connection_id, channel))

    provider_seq = 0
    while emitted < events:
        tenant_id, conversation_id, connection_id, channel = rng.choice(conversations)
        connector = f"connector:{channel}:{connection_id}"
        roll = rng.random()
        provider_seq += 1
        if roll < 0.70:
            stamp = next_stamp()
            yield make(
                ev.MessageReceived,
                tenant_id,
                conversation_id,
                connector,
                ev.MessageReceivedData(
                    message_id=ids.stable_id("m", f"{channel}:{connection_id}:{provider_seq}"),
                    connection_id=connection_id,
                    channel=channel,
                    provider_message_id=str(provider_seq),
                    sender=ev.Sender(id=f"{channel}:{rng.randint(1, 50)}", name="Sender"),
                    text=_text(rng),
                    sent_at=stamp.at,
                ),
                stamp,
            )
        elif roll < 0.85:
            stamp = next_stamp()
            yield make(
                ev.MessageSent,
                tenant_id,
                conversation_id,
                connector,
                ev.MessageSentData(
                    message_id=f"m_{ulid_at(stamp.at)}",
                    connection_id=connection_id,
                    channel=channel,
                    provider_message_id=f"out-{provider_seq}",
                    text=_text(rng),
                    sent_at=stamp.at,
                    sender=ev.Sender(id="agent:default", name="Moltbot", is_bot=True),
                ),
                stamp,
            )
        elif roll < 0.92:
            yield make(
                ev.ConversationUpdated,
                tenant_id,
                conversation_id,
                f"user:{tenant_id}",
                ev.ConversationUpdatedData(marked_read=True),
            )
        else:
            yield make(
                ev.UsageRecorded,
                tenant_id,
                tenant_id,
                "agent:default",
                ev.UsageRecordedData(
                    metric=rng.choice(("tokens_in", "tokens_out")), quantity=rng.randint(1, 900)
                ),
            )
        emitted += 1
