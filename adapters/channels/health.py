"""Recording a connection's health: ``connection.state_changed`` only when the state (or
its code) differs from the last one in the log, so a session restarted any number of times
never repeats itself, and two writers never interleave (the append expects the sequence)."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.nats.event_store import EventStore
from domain import events as ev


async def record_state(
    store: EventStore,
    *,
    tenant_id: str,
    connection_id: str,
    actor: str,
    state: ev.ConnectionState,
    code: str,
    message: str,
    action: str | None = None,
) -> None:
    event = ev.new_event(
        ev.ConnectionStateChanged,
        tenant_id=tenant_id,
        aggregate_id=connection_id,
        actor=actor,
        data=ev.ConnectionStateChangedData(state=state, code=code, message=message, action=action),
    )

    def decide(history: Sequence[ev.Event]) -> list[ev.Event]:
        states = [e for e in history if isinstance(e, ev.ConnectionStateChanged)]
        if states and (states[-1].data.state, states[-1].data.code) == (state, code):
            return []
        return [event]

    await store.update(tenant_id, ev.CONNECTION, connection_id, decide)
