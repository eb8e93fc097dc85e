"""Sending from the Mac through Messages.app: ``osascript`` running a fixed AppleScript.

The script is a constant; the target and the text (or file path) reach it only as
``argv`` items, never spliced into its source, so no message can become AppleScript.
The target is a chat guid from chat.db, used verbatim (``iMessage;-;+15551234567``,
``any;+;chat123…``: ``chat id``); a bare handle (no ``;``) is sent to as a
``participant`` of the iMessage account. AppleScript confirms nothing: the sent message
shows up later as an ``is_from_me`` row of chat.db.

Files are copied first into ``~/Library/Messages/Attachments/Moltbot/`` because the
sandboxed Messages app may read only some places.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from pathlib import Path

from domain.connectors import SendDeferred, SendRejected

_RESOLVE_TARGET = (
    '  tell application "Messages"',
    '    if targetId contains ";" then',
    "      set targetChat to chat id targetId",
    "    else",
    "      set targetService to 1st account whose service type = iMessage",
    "      set targetChat to participant targetId of targetService",
    "    end if",
)
SEND_TEXT_SCRIPT: tuple[str, ...] = (
    "on run argv",
    "  set targetId to item 1 of argv",
    "  set messageText to item 2 of argv",
    *_RESOLVE_TARGET,
    "    send messageText to targetChat",
    "  end tell",
    "end run",
)
SEND_FILE_SCRIPT: tuple[str, ...] = (
    "on run argv",
    "  set targetId to item 1 of argv",
    "  set theFile to (item 2 of argv) as POSIX file",
    *_RESOLVE_TARGET,
    "    send theFile to targetChat",
    "  end tell",
    "end run",
)
_NOT_AUTHORIZED = ("-1743", "not authorized to send apple events")
_NO_SUCH_CHAT = (
    "-1728",
    "can't get chat id",
    "can\u2019t get chat id",
    "can't get participant",
    "can\u2019t get participant",
)
_STAGED_KEEP_SECONDS = 7 * 86_400  # Messages uploads in the background: keep copies a while


class AutomationPermissionRequired(Exception):
    """macOS does not let the bridge control Messages (Automation permission)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "The Personal Bridge may not control Messages: open System Settings → Privacy & "
            "Security → Automation, find the bridge and turn on Messages, then try again. "
            f"({detail})"
        )
        self.detail = detail


def script_arguments(script: tuple[str, ...]) -> list[str]:
    """The script as osascript options: one ``-e`` per line."""
    return [part for line in script for part in ("-e", line)]


class OsascriptSender:
    """Sends text and files to a chat with ``osascript`` (one process per send)."""

    def __init__(
        self,
        osascript: str = "/usr/bin/osascript",
        *,
        attachments_dir: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.osascript = osascript
        self.attachments_dir = (
            attachments_dir
            if attachments_dir is not None
            else Path.home() / "Library" / "Messages" / "Attachments" / "Moltbot"
        )
        self.timeout = timeout

    async def send_text(self, target: str, text: str) -> None:
        """Send ``text`` to ``target``; raise AutomationPermissionRequired, SendRejected or
        SendDeferred when Messages does not take it."""
        if not text:
            raise SendRejected("empty_text", "There is no text to send")
        if "\x00" in text:
            raise SendRejected("invalid_text", "The text holds a NUL character, which Messages cannot send")
        await self._run(SEND_TEXT_SCRIPT, target, text)

    async def send_file(self, target: str, path: Path) -> None:
        """Copy ``path`` where Messages may read it, then send it to ``target``."""
        try:
            staged = await asyncio.to_thread(self._stage, path)
        except FileNotFoundError as exc:
            raise SendRejected("file_missing", f"The file to send is gone: {path}") from exc
        except OSError as exc:
            raise SendDeferred(f"Could not copy the file for Messages: {exc}") from exc
        await self._run(SEND_FILE_SCRIPT, target, str(staged))

    def _stage(self, path: Path) -> Path:
        """A copy of ``path`` in its own folder under ``attachments_dir`` (the name kept)."""
        if not path.is_file():
            raise FileNotFoundError(str(path))
        self._prune()
        folder = self.attachments_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return Path(shutil.copy2(path, folder / path.name))

    def _prune(self) -> None:
        if not self.attachments_dir.is_dir():
            return
        oldest = time.time() - _STAGED_KEEP_SECONDS
        for folder in self.attachments_dir.iterdir():
            with contextlib.suppress(OSError):
                if folder.is_dir() and folder.stat().st_mtime < oldest:
                    shutil.rmtree(folder)

    async def _run(self, script: tuple[str, ...], target: str, payload: str) -> None:
        if not target or target.startswith("-") or "\x00" in target:
            raise SendRejected("invalid_target", f"Not a Messages chat: {target!r}")
        try:
            process = await asyncio.create_subprocess_exec(
                self.osascript,
                *script_arguments(script),
                target,
                payload,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SendDeferred(f"Could not run {self.osascript}: {exc}") from exc
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise SendDeferred(f"Messages did not answer within {self.timeout:g} s") from exc
        if process.returncode != 0:
            raise _failure(process.returncode, stderr.decode("utf-8", errors="replace").strip())


def _failure(returncode: int | None, stderr: str) -> Exception:
    """What an osascript failure means for the send."""
    lowered = stderr.lower()
    if any(mark in lowered for mark in _NOT_AUTHORIZED):
        return AutomationPermissionRequired(stderr)
    if any(mark in lowered for mark in _NO_SUCH_CHAT):
        return SendRejected("chat_not_found", f"Messages has no such chat: {stderr}")
    return SendDeferred(f"osascript failed (exit {returncode}): {stderr or 'no message'}")
