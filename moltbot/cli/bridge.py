"""``moltbot bridge``: the Personal Bridge on the user's own device (pair, run, status,
install-service). Its state lives under ``--data`` (default ``~/.moltbot-bridge``)."""

from __future__ import annotations

import argparse
import os
import platform as host
import sys
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.bridge import identity
from adapters.bridge.channels import DeviceEnv, available, chosen
from adapters.bridge.device import Bridge, Revoked, bridge_data_dir, on_revoked
from adapters.bridge.local_store import LocalStore
from domain import devices
from moltbot.cli.common import CommandError, add
from moltbot.settings import Settings

VERSION = "0.1.0"
LAUNCH_AGENT = "com.moltbot.bridge"


def _platform() -> str:
    return {"darwin": "macos", "linux": "linux", "win32": "windows"}.get(sys.platform, sys.platform)


async def cmd_bridge_pair(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = bridge_data_dir(args.bridge_data)
    gateway = args.gateway.rstrip("/")
    key = Ed25519PrivateKey.generate()  # a new pairing is a new identity; kept only once accepted
    body = {
        "code": args.code,
        "public_key": devices.encode_key(identity.public_key(key)),
        "name": args.name or host.node() or "My Mac",
        "platform": _platform(),
    }
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(f"{gateway}/v1/devices/pair", json=body)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {gateway}: {exc}") from None
    if answer.status_code != 201:
        detail = (
            answer.json().get("detail", answer.text)
            if answer.headers.get("content-type", "").startswith("application/json")
            else answer.text
        )
        raise CommandError(f"pairing refused ({answer.status_code}): {detail}")
    paired = answer.json()
    identity.save_key(data_dir, key)
    identity.save_pairing(
        data_dir,
        identity.Pairing(
            gateway=gateway, tenant_id=paired["tenant_id"], device_id=paired["device_id"],
            name=paired["name"], fingerprint=paired["fingerprint"],
        ),
    )  # fmt: skip
    print(f"Paired {paired['name']} as {paired['device_id']} (key {paired['fingerprint']}).")
    print(f"Start it with: moltbot bridge run --data {data_dir}")
    return 0


def _channels(pairing: identity.Pairing, settings: Settings) -> DeviceEnv:
    return DeviceEnv(
        tenant_id=pairing.tenant_id, device_id=pairing.device_id, environ=dict(os.environ),
        signal=settings.signal,
    )  # fmt: skip


def _paired(args: argparse.Namespace) -> tuple[Path, identity.Pairing]:
    """The bridge's folder and what pairing gave it; a CommandError saying how to pair."""
    data_dir = bridge_data_dir(args.bridge_data)
    try:
        return data_dir, identity.load_pairing(data_dir)
    except identity.NotPaired as exc:
        raise CommandError(str(exc)) from None


async def cmd_bridge_run(settings: Settings, args: argparse.Namespace) -> int:
    data_dir, pairing = _paired(args)
    key = identity.load_key(data_dir)
    channels = available(_channels(pairing, settings))
    on_demand = chosen(_channels(pairing, settings), data_dir)
    if not channels and not on_demand:
        print(
            "No channel can run here: iMessage needs macOS (or MOLTBOT_IMESSAGE_DB and MOLTBOT_OSASCRIPT).",
            file=sys.stderr,
        )
    store = LocalStore(data_dir)
    hosted = ", ".join(c.kind for c in channels) or "no channels"
    offered = f"; when connected here: {', '.join(on_demand)}" if on_demand else ""
    print(f"Bridge {pairing.name} ({pairing.device_id}) → {pairing.gateway}: {hosted}{offered}.")
    bridge = Bridge(pairing, key, store, channels, version=VERSION, platform=_platform(), on_demand=on_demand)
    try:
        await bridge.run()
    except* Revoked:
        revoked = True
    else:
        revoked = False
    finally:
        store.close()
    if revoked:
        print(on_revoked(data_dir, identity.forget_pairing), file=sys.stderr)
        return 3
    return 0


async def cmd_bridge_status(settings: Settings, args: argparse.Namespace) -> int:
    data_dir, pairing = _paired(args)
    store = LocalStore(data_dir)
    try:
        depth = await store.depth()
    finally:
        store.close()
    print(f"Device:   {pairing.name} ({pairing.device_id}), key {pairing.fingerprint}")
    print(f"Cloud:    {pairing.gateway}")
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            reachable = (await http.get(f"{pairing.gateway}/healthz")).status_code == 200
    except httpx.HTTPError:
        reachable = False
    print(f"          {'reachable' if reachable else 'not reachable from here'}")
    for channel in available(_channels(pairing, settings)):
        print(f"Channel:  {channel.kind} ({', '.join(channel.capabilities)})")
    for kind in chosen(_channels(pairing, settings), data_dir):
        print(f'Channel:  {kind} (runs here when you connect it with "mode": "bridge")')
    print(f"Outbox:   {depth} event(s) waiting for the cloud")
    return 0


def launch_agent_plist(program: list[str], data_dir: Path) -> bytes:
    """A LaunchAgent that starts the bridge at login and again after a crash."""
    import plistlib

    plist: dict[str, Any] = {
        "Label": LAUNCH_AGENT,
        "ProgramArguments": [*program, "bridge", "run", "--data", str(data_dir)],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after a revocation
        "StandardOutPath": str(data_dir / "bridge.log"),
        "StandardErrorPath": str(data_dir / "bridge.log"),
        "EnvironmentVariables": {"MOLTBOT_LOG_FORMAT": "json"},
    }
    return plistlib.dumps(plist)


async def cmd_bridge_install_service(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = bridge_data_dir(args.bridge_data)
    target = (
        Path(args.out).expanduser()
        if args.out
        else Path.home() / f"Library/LaunchAgents/{LAUNCH_AGENT}.plist"
    )
    program = [sys.executable, "-m", "moltbot"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(launch_agent_plist(program, data_dir))
    print(f"Wrote {target}. Load it with: launchctl load -w {target}")
    return 0


def register(commands: Any) -> None:
    bridge = commands.add_parser(
        "bridge", help="the Personal Bridge on your own device (iMessage on a Mac; WhatsApp, Signal)"
    ).add_subparsers(dest="bridge_command", metavar="ACTION", required=True)

    def with_data(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--data", dest="bridge_data", metavar="DIR",
            help="the bridge's folder: its key, pairing and local outbox (default ~/.moltbot-bridge)",
        )  # fmt: skip
        return parser

    pair = with_data(
        add(bridge, "pair", cmd_bridge_pair, "Pair this device with a code from the inbox's Bridge page.")
    )
    pair.add_argument("code", help="the 8-character pairing code, e.g. K7QM-3XHT")
    pair.add_argument("--gateway", required=True, help="the inbox's address, e.g. https://inbox.example.com")
    pair.add_argument("--name", help="what the inbox calls this device (default: the computer's name)")
    with_data(
        add(
            bridge,
            "run",
            cmd_bridge_run,
            "Run the bridge: read this device's channels and keep the tunnel open.",
        )
    )
    with_data(
        add(
            bridge,
            "status",
            cmd_bridge_status,
            "Show the device, the cloud, its channels and the outbox depth.",
        )
    )
    service = with_data(
        add(bridge, "install-service", cmd_bridge_install_service,
            "Write a macOS LaunchAgent that starts the bridge at login and restarts it after a crash.")
    )  # fmt: skip
    service.add_argument("--out", help="where to write the plist (default ~/Library/LaunchAgents/)")
