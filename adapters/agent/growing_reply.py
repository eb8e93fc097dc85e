"""A reply that grows in place, on channels whose capabilities include edits (Telegram,
Slack, Discord): the agent's answer goes out as one message once the model has written its
first words, is edited as more arrives — at most once per the channel's edit interval
(``Capabilities.edit_every``, ``group_edit_every`` outside direct chats) — and ends as the
full text.

- The first part is the run's first ``message.send_requested``, with the text so far and
  a trailing " …"; the outbox sends it and the connector records ``message.sent``.
- Edits name the provider's id of that message (read from the inbox once it is sent) and
  go to the connector as ``edit_message`` commands: those on the way are best effort (the
  next one carries more), the final one is retried and recorded as ``message.edited``.
- A reply longer than one message of the channel: the first part ends at a boundary
  (:func:`domain.agent.chunk_text`) and the rest is sent as new parts by the run.
- A model that finishes before the first part was due: nothing was sent, and the run
  sends its reply as on any channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from adapters.nats.outbox import CommandQueue
from domain import events as ev
from domain.agent import chunk_text
from domain.commands import EditMessage
from domain.ports import EventStore
from domain.reads import AgentReads

log = structlog.get_logger()

CURSOR = " …"  # the end of a reply still being written
FIRST_AFTER = 0.5  # seconds of text gathered before the first part goes out
SENT_WAIT = 20.0  # how long the first part may take to be sent before edits are given up
POLL = 0.1  # seconds between looks for the first part's provider id

FirstPart = Callable[[str], ev.MessageSendRequested]  # the run's first part with this text


class GrowingReply:
    def __init__(
        self,
        *,
        store: EventStore,
        reads: AgentReads,
        commands: CommandQueue,
        first_part: FirstPart,
        every: float,
        max_text: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._reads = reads
        self._commands = commands
        self._first_part = first_part
        self._every = every
        self._max_text = max_text
        self._clock = clock
        self.text = ""  # what the model has written so far
        self.edits = 0  # edits requested, the final one included
        self._first: ev.MessageSendRequested | None = None  # once sent for: the first part
        self._provider_id: str | None = None
        self._shown = ""  # the text of the last edit (or of the first part)
        self._last_edit = 0.0  # loop time of the last edit (or of the first part)
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def on_delta(self, piece: str) -> None:
        """A piece of the reply as the model writes it: the first one starts the message."""
        self.text += piece
        if self._task is None and self.text.strip():
            self._task = asyncio.create_task(self._grow())

    def abandon(self) -> None:
        """The run ended without finishing (cancelled): the edits on the way stop."""
        self._done.set()
        if self._task is not None:
            self._task.cancel()

    async def finish(self, full_text: str) -> bool:
        """The model is done: stop the edits on the way and, if the first part went out,
        make it the reply's first part of ``full_text`` (True: the run sends the rest);
        False: nothing went out, the run sends the whole reply."""
        self._done.set()
        if self._task is not None:
            await self._task  # it ends after the step it is in: a part is never half-requested
        if self._first is None:
            return False
        if self._provider_id is None:
            self._provider_id = await self._sent(self._first.data.message_id)
        parts = chunk_text(full_text, self._max_text) or ["…"]
        if self._provider_id is None:
            log.warning("agent_reply_not_finished", message_id=self._first.data.message_id, reason="not sent")
            return True
        wait = self._last_edit + self._every - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)  # the channel's limit holds for the last edit too
        await self._edit(parts[0], final=True)
        return True

    async def _grow(self) -> None:
        if await self._stopped_within(FIRST_AFTER):
            return  # the model finished first: the run sends the reply whole
        shown = self._so_far()
        self._first = self._first_part(shown)
        await self._store.append(self._first)
        self._shown, self._last_edit = shown, asyncio.get_running_loop().time()
        self._provider_id = await self._sent(self._first.data.message_id)
        if self._provider_id is None:
            return
        while not await self._stopped_within(self._every):
            shown = self._so_far()
            if shown != self._shown:
                await self._edit(shown, final=False)

    def _so_far(self) -> str:
        """The text so far as shown while it grows: with the cursor, within one message."""
        room = self._max_text - len(CURSOR)
        text = self.text.strip()
        return (text if len(text) <= room else text[:room].rstrip()) + CURSOR

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), seconds)
        return self._done.is_set()

    async def _sent(self, message_id: str) -> str | None:
        """The provider's id of the first part once it is sent, or None after ``SENT_WAIT``."""
        assert self._first is not None
        deadline = asyncio.get_running_loop().time() + SENT_WAIT
        while asyncio.get_running_loop().time() < deadline:
            found = await self._reads.provider_id_of_sent(self._first.tenant_id, message_id)
            if found is not None:
                return found
            await asyncio.sleep(POLL)
        return None

    async def _edit(self, text: str, *, final: bool) -> None:
        first, provider_id = self._first, self._provider_id
        assert first is not None and provider_id is not None
        d = first.data
        self.edits += 1
        edit = EditMessage(
            command_id=f"edit:{first.tenant_id}:{d.message_id}:{'final' if final else self.edits}",
            tenant_id=first.tenant_id,
            conversation_id=first.aggregate_id,
            connection_id=d.connection_id,
            channel=d.channel,
            message_id=d.message_id,
            provider_message_id=provider_id,
            text=await self._store.seal_text(first.tenant_id, text),
            final=final,
            requested_at=self._clock(),
            causation_id=first.causation_id or first.id,
            correlation_id=first.correlation_id,
        )
        await self._commands.put(edit)
        self._shown, self._last_edit = text, asyncio.get_running_loop().time()
