"""Recording a connection's health: ``connection.state_changed`` only when the state (or
its code) differs from the last one in the log, so a session restarted any number of times
never repeats itself, and two writers never interleave (the append expects the sequence).

Also what every provider session shares: :class:`StateReporter` (a session's reports),
:func:`stay_linked` (link, report, back off; a refusal ends it as ``action_required``), and
:class:`ReportingSession`, their base."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import stamina

from adapters.channels.inbound import Intake
from adapters.channels.normalize import connection_actor
from adapters.nats.pull import raise_if_cancelled
from domain import events as ev
from domain.ports import EventStore

if TYPE_CHECKING:
    from adapters.channels.registry import SessionEnv

MAX_BACKOFF = 30.0  # seconds: the longest wait between a session's links


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


class StateReporter:
    """One session's health reports: ``report`` records a state only when it (or its code)
    changed since this session's last one, and ``state`` is that last one."""

    def __init__(self, store: EventStore, *, kind: str, tenant_id: str, connection_id: str, log: Any) -> None:
        self._store = store
        self._kind = kind
        self._tenant_id = tenant_id
        self._connection_id = connection_id
        self._log = log
        self.state: ev.ConnectionState | None = None
        self._code: str | None = None

    async def report(
        self, state: ev.ConnectionState, code: str, message: str, *, action: str | None = None
    ) -> None:
        """Record the connection's state when it changed (from the log's last one)."""
        if (state, code) == (self.state, self._code):
            return
        await record_state(
            self._store, tenant_id=self._tenant_id, connection_id=self._connection_id,
            actor=connection_actor(self._kind, self._connection_id), state=state, code=code,
            message=message, action=action,
        )  # fmt: skip
        self.state, self._code = state, code
        self._log.info(f"{self._kind}_connection_state", state=state, code=code)


class Reports(Protocol):
    """Where a link's states go: :class:`StateReporter` in the cloud, the tunnel on a device."""

    async def report(
        self, state: ev.ConnectionState, code: str, message: str, *, action: str | None = None
    ) -> None: ...


class Refused(Exception):
    """The provider refused the connection for good (token, settings): a person must act."""

    def __init__(self, code: str, message: str, action: str | None = "reconnect") -> None:
        super().__init__(message)
        self.code, self.message, self.action = code, message, action


class Unreachable(Exception):
    """The provider could not be reached (retry with backoff); ``code`` and ``message``
    override the session's own degraded report."""

    def __init__(self, detail: str, *, code: str | None = None, message: str | None = None) -> None:
        super().__init__(detail)
        self.code, self.message = code, message


class Backoff:
    """The waits between a session's links: ``first``, doubled up to ``most`` (stamina's),
    started over when ``reset`` says a link worked."""

    def __init__(self, first: float, most: float) -> None:
        self.first, self.most = first, most
        self.worked = False

    def reset(self) -> None:
        self.worked = True


class _Relink(Exception):
    """A link ended without working: link again after the next wait."""


async def stay_linked(
    link: Callable[[], Awaitable[bool]],
    reporter: Reports,
    backoff: Backoff,
    *,
    kind: str,
    unreachable: str,
    log: Any,
) -> None:
    """Hold a session's link to its provider until the provider refuses it.

    ``link`` runs one link until it ends: True when it is worth linking again at once,
    False to wait first; :class:`Refused` is reported ``action_required`` (and ends this);
    :class:`Unreachable` is reported ``degraded`` (``<kind>_unreachable``, ``unreachable``)
    and retried after the backoff. An error of the event store ends this with it.

    The waits are stamina's, in rounds: stamina has no reset, so a link that worked
    (``backoff.reset()`` or True) ends a round and the next starts from ``first``; a link
    that worked and then failed is the first failure of the next round.
    """
    ended_round: _Relink | None = None
    while True:
        async for attempt in stamina.retry_context(
            on=_Relink,
            attempts=None,
            timeout=None,
            wait_initial=backoff.first,
            wait_max=backoff.most,
            wait_jitter=0.0,
        ):
            with attempt:
                raise_if_cancelled()  # a report (a publish) in the last round can swallow it
                if ended_round is not None:
                    failed, ended_round = ended_round, None
                    raise failed
                backoff.worked = False
                failure: _Relink | None = None
                try:
                    at_once = await link()
                except Refused as refused:
                    await reporter.report(
                        "action_required", refused.code, refused.message, action=refused.action
                    )
                    log.warning(f"{kind}_link_refused", code=refused.code)
                    return
                except Unreachable as exc:
                    code = exc.code or f"{kind}_unreachable"
                    await reporter.report("degraded", code, exc.message or unreachable)
                    retry_in = backoff.first if backoff.worked else attempt.next_wait
                    log.warning(f"{kind}_link_failed", error=str(exc), retry_in=retry_in)
                    failure = _Relink(str(exc))
                else:
                    backoff.worked = backoff.worked or at_once
                    if not at_once:
                        failure = _Relink("closed before it was ready")  # do not hammer
                if backoff.worked:
                    ended_round = failure
                    break
                if failure is not None:
                    raise failure


class ReportingSession(abc.ABC):
    """What every provider session has: its connection (the :class:`SessionEnv` it is
    started with), a log bound to it, its health reports (``state`` is the last state it
    recorded), the intake of what the provider delivers (each event logged as
    ``stored_as``; attachments kept in the env's media, None: they stay at the provider,
    which ``_download`` fetches them from), and the backoff between its links (from
    ``first_backoff`` up to :data:`MAX_BACKOFF`)."""

    def __init__(self, env: SessionEnv, *, kind: str, log: Any, stored_as: str, first_backoff: float) -> None:
        self.tenant_id = env.tenant_id
        self.connection_id = env.connection_id
        self._kind = kind
        self._log = log.bind(tenant_id=env.tenant_id, connection_id=env.connection_id)
        self._health = StateReporter(
            env.store, kind=kind, tenant_id=env.tenant_id, connection_id=env.connection_id, log=self._log
        )
        self._intake = Intake(
            env.store, media=env.media, download=self._download,
            actor=connection_actor(kind, env.connection_id), log=self._log, stored_as=stored_as,
        )  # fmt: skip
        self._backoff = Backoff(first_backoff, MAX_BACKOFF)

    async def _stay_linked(self, link: Callable[[], Awaitable[bool]], *, unreachable: str) -> None:
        """:func:`stay_linked` with this session's reports, backoff and log."""
        await stay_linked(
            link, self._health, self._backoff, kind=self._kind, unreachable=unreachable, log=self._log
        )

    @abc.abstractmethod
    async def _download(self, attachment: ev.Attachment) -> bytes:
        """An attachment's bytes, from the provider."""

    @property
    def state(self) -> ev.ConnectionState | None:
        return self._health.state
