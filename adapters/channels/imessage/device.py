"""iMessage as the bridge hosts it: chat.db read into the local outbox, sends through
AppleScript, and the states a person must act on (Full Disk Access, Automation).

AppleScript's ``send`` returns no id and no receipt; the Mac writes the sent row into
chat.db a moment later, where the poll would see it as the owner writing from the Mac.
The channel remembers what it sent for a while and does not record those rows again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import structlog

from adapters.bridge.channels import DeviceEnv, Report
from adapters.bridge.local_store import LocalStore
from adapters.channels.imessage import KIND
from adapters.channels.imessage.chatdb import FullDiskAccessRequired
from adapters.channels.imessage.rows import Cursor
from adapters.channels.imessage.send import AutomationPermissionRequired, OsascriptSender
from adapters.channels.imessage.source import IMessageSource
from adapters.channels.media import MAX_MEDIA_BYTES
from domain import devices
from domain import events as ev
from domain import tunnel as t
from domain.commands import SEND_EXPIRY, SendMessage
from domain.connectors import SendDeferred, SendRejected

log = structlog.get_logger()

POLL_SECONDS = 0.5  # new rows show within a second
BLOCKED_RETRY = 10.0  # how often to look again while macOS refuses access
MAX_FILE_BYTES = MAX_MEDIA_BYTES  # what the cloud keeps of an attachment
ECHO_SECONDS = 120.0  # how long a sent text is remembered, to know its row in chat.db


def _needs(code: str, message: str, action: str) -> t.State:
    """A state a person must act on, on this Mac."""
    return t.State(kind=KIND, state="action_required", code=code, message=message, action=action)


FULL_DISK_ACCESS = _needs(
    "full_disk_access_required",
    "The bridge cannot read your messages: open System Settings → Privacy & Security → Full Disk"
    " Access and add the bridge (moltbot), then restart it.",
    "grant_full_disk_access",
)
AUTOMATION = _needs(
    "automation_permission_required",
    "The bridge may not send through Messages: open System Settings → Privacy & Security →"
    " Automation and allow the bridge to control Messages.",
    "grant_automation",
)


def _unreadable(exc: Exception) -> t.State:
    return t.State(
        kind=KIND, state="degraded", code="chat_db_unreadable",
        message=f"The bridge cannot read the Messages database right now ({exc}); it tries again every"
        f" {BLOCKED_RETRY:.0f} seconds.",
    )  # fmt: skip


CONNECTED = t.State(
    kind=KIND, state="connected", code="ok", message="Reading and sending iMessages on this Mac."
)


class IMessageChannel:
    kind = KIND
    capabilities: tuple[str, ...] = (f"{KIND}.read", f"{KIND}.send")

    def __init__(self, env: DeviceEnv, *, chat_db: Path, osascript: str) -> None:
        self._connection_id = devices.connection_id(env.device_id, KIND)  # as the cloud made it
        self._source = IMessageSource(
            chat_db, tenant_id=env.tenant_id, connection_id=self._connection_id,
            actor=devices.actor(env.device_id),
        )  # fmt: skip
        self._sender = OsascriptSender(osascript)
        self._sent: list[tuple[str, str, float]] = []  # (conversation id, text, when) of our sends
        self._report: Report | None = None  # where states go, once produce() runs
        self._may_send = True  # False while macOS refuses the bridge control of Messages

    # --- inbound ------------------------------------------------------------------------

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        self._report = report
        while True:
            try:
                moved = await self._read_once(store)
            except FullDiskAccessRequired as exc:
                log.warning("imessage_blocked", error=str(exc))
                await report(FULL_DISK_ACCESS)
                await asyncio.sleep(BLOCKED_RETRY)
                continue
            except (OSError, sqlite3.Error) as exc:  # chat.db missing, moved, or being rebuilt
                log.warning("imessage_unreadable", error=repr(exc))
                await report(_unreadable(exc))
                await asyncio.sleep(BLOCKED_RETRY)
                continue
            await report(CONNECTED if self._may_send else AUTOMATION)
            if moved:
                nudge()
            else:
                await asyncio.sleep(POLL_SECONDS)

    async def _read_once(self, store: LocalStore) -> bool:
        """Queue what changed since the stored cursor; whether anything was queued. The first
        time (no cursor), the recent history is queued as backfill and reading starts now."""
        stored = await store.cursor(KIND)
        if stored is None:
            cursor = await self._source.start_cursor()  # first: what arrives meanwhile is polled
            events = await self._source.backfill()
        else:
            before = msgspec.json.decode(stored, type=Cursor)
            events, cursor = await self._source.poll(before)
            if cursor == before:
                return False
            events = self._without_own_sends(events)
        await store.record(events, KIND, msgspec.json.encode(cursor))
        return bool(events)

    def _without_own_sends(self, events: list[ev.Event]) -> list[ev.Event]:
        now = time.monotonic()
        self._sent = [s for s in self._sent if now - s[2] < ECHO_SECONDS]
        kept: list[ev.Event] = []
        for event in events:
            if isinstance(event, ev.MessageSent):
                match = next(
                    (s for s in self._sent if s[0] == event.aggregate_id and s[1] == event.data.text), None
                )
                if match is not None:
                    self._sent.remove(match)  # the row of a send the cloud asked for: recorded already
                    continue
            kept.append(event)
        return kept

    # --- outbound -----------------------------------------------------------------------

    async def execute(self, command: SendMessage) -> t.Result:
        try:
            self._sent.append((command.conversation_id, command.text, time.monotonic()))
            await self._sender.send_text(command.to, command.text)
        except AutomationPermissionRequired as exc:
            self._forget(command)
            self._may_send = False
            if self._report is not None:
                await self._report(AUTOMATION)
            if datetime.now(UTC) - command.requested_at >= SEND_EXPIRY:
                return _rejected(command, AUTOMATION.code, str(exc))
            return t.Result(
                id=command.command_id,
                outcome="deferred",
                code=AUTOMATION.code,
                reason=str(exc),
                retry_after=60.0,
            )
        except SendRejected as exc:
            self._forget(command)
            return _rejected(command, exc.code, exc.reason)
        except SendDeferred as exc:
            self._forget(command)
            return t.Result(
                id=command.command_id, outcome="deferred", reason=exc.reason, retry_after=exc.retry_after
            )
        self._may_send = True
        return t.Result(
            id=command.command_id, outcome="delivered", provider_message_id=f"sent:{command.message_id}",
            sent_at=datetime.now(UTC),
        )  # fmt: skip

    async def read_file(self, file_id: str) -> bytes:
        """An attachment's file, by Apple's attachment guid (the id the events carry)."""
        path = await self._source.db.attachment_path(file_id)
        if path is None:
            raise FileNotFoundError(f"no attachment {file_id} on this Mac (it may still be in iCloud)")
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        if size > MAX_FILE_BYTES:
            raise OSError(f"{path.name} is {size} bytes; the cloud takes files up to {MAX_FILE_BYTES}")
        return await asyncio.to_thread(path.read_bytes)

    def _forget(self, command: SendMessage) -> None:
        self._sent = [s for s in self._sent if (s[0], s[1]) != (command.conversation_id, command.text)]


def _rejected(command: SendMessage, code: str, reason: str) -> t.Result:
    return t.Result(id=command.command_id, outcome="rejected", code=code, reason=reason)
