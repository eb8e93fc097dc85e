"""What a channel kind hosted on the device provides to the bridge, and which kinds this
device can host (the device-side twin of ``adapters/channels/registry.py``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from adapters.bridge.local_store import LocalStore
from adapters.channels.signal.config import SignalSetup
from domain import tunnel as t
from domain.commands import SendMessage

Report = Callable[[t.State], Awaitable[None]]  # a channel's state, shown on the channels page


class DeviceChannel(Protocol):
    kind: str
    capabilities: tuple[str, ...]  # what the cloud may ask of it: "<kind>.read", "<kind>.send"

    async def produce(self, store: LocalStore, nudge: Callable[[], None], report: Report) -> None:
        """Read the local source forever: queue its events (with the cursor) in ``store``,
        ``nudge`` the tunnel after each batch, ``report`` the channel's state when it changes."""
        ...

    async def execute(self, command: SendMessage) -> t.Result:
        """Carry out one command (the bridge has checked it was not carried out before)."""
        ...

    async def read_file(self, file_id: str) -> bytes:
        """The file an event of this channel named (``Attachment.provider_file_id``);
        FileNotFoundError when it is not (or no longer) on this device."""
        ...


@dataclass(frozen=True)
class DeviceEnv:
    """Where a device channel finds its local parts."""

    tenant_id: str
    device_id: str
    environ: dict[str, str]
    signal: SignalSetup = field(default_factory=SignalSetup)  # MOLTBOT_SIGNAL_* (moltbot/settings.py)


def imessage_paths(environ: dict[str, str]) -> tuple[Path, str] | None:
    """chat.db and osascript, when this device can host iMessage: on macOS, or wherever both
    overrides (``MOLTBOT_IMESSAGE_DB``, ``MOLTBOT_OSASCRIPT``) name usable files."""
    db, osascript = environ.get("MOLTBOT_IMESSAGE_DB"), environ.get("MOLTBOT_OSASCRIPT")
    if sys.platform == "darwin":
        home = Path(environ.get("HOME", str(Path.home())))
        return Path(db or home / "Library/Messages/chat.db"), osascript or "/usr/bin/osascript"
    if db and osascript and Path(db).is_file() and os.access(osascript, os.X_OK):
        return Path(db), osascript
    return None


def chosen(env: DeviceEnv, data_dir: Path) -> dict[str, Callable[..., DeviceChannel]]:
    """The channels this device can run when its owner connects them here (``"mode":
    "bridge"``), by kind: each makes the channel for its connection id and how to show
    pairing codes (``adapters.bridge.device.OnDemand``). Signal can always be offered: a device
    without signal-cli says how to install it once Signal is connected there."""

    def signal(connection_id: str, show: Callable[[t.Code], Awaitable[None]]) -> DeviceChannel:
        from adapters.channels.signal.device import SignalDeviceChannel

        return SignalDeviceChannel(
            tenant_id=env.tenant_id, device_id=env.device_id, connection_id=connection_id,
            data_dir=data_dir, setup=env.signal, environ=env.environ, show=show,
        )  # fmt: skip

    if importlib.util.find_spec("neonize") is None:
        return {"signal": signal}

    def whatsapp(connection_id: str, show: Callable[[t.Code], Awaitable[None]]) -> DeviceChannel:
        from adapters.channels.whatsapp.device import WhatsAppDeviceChannel
        from adapters.channels.whatsapp.neonize_client import new_client

        return WhatsAppDeviceChannel(
            tenant_id=env.tenant_id, device_id=env.device_id, connection_id=connection_id,
            data_dir=data_dir, new_client=new_client, show=show,
        )  # fmt: skip

    return {"whatsapp": whatsapp, "signal": signal}


def available(env: DeviceEnv) -> list[DeviceChannel]:
    """The channels this device can host now."""
    found: list[DeviceChannel] = []
    paths = imessage_paths(env.environ)
    if paths is not None:
        from adapters.channels.imessage.device import IMessageChannel

        found.append(IMessageChannel(env, chat_db=paths[0], osascript=paths[1]))
    return found
