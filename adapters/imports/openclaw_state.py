"""The self-hosted assistant's state folder (OpenClaw, formerly Moltbot and Clawdbot), read
as it writes it: where it is, its config (JSON5) and what a move needs from it — agents
with their model and instructions, and the channels with their credentials.

Layouts read (docs/migrate.md):

- the folder: ``--from DIR``, else the first of ``~/.openclaw``, ``~/.moltbot``,
  ``~/.clawdbot`` that exists (a legacy one is often a link to the new one: read once);
- the config: ``openclaw.json`` (or ``clawdbot.json``, ``moltbot.json``, ``moldbot.json``),
  JSON5 (comments, trailing commas, unquoted keys), ``${VAR}`` taken from the environment;
  the older layout (channel sections at the top, a single ``agent``, ``routing.agents``)
  is read as the newer one;
- agents: ``agents.list[]`` (``id``, ``name`` or ``identity.name``, ``model``,
  ``workspace``) over ``agents.defaults``; their instructions from the workspace's
  ``IDENTITY.md``, ``SOUL.md``, ``USER.md`` and ``AGENTS.md``;
- channels: ``channels.telegram.botToken`` (or ``tokenFile``), ``channels.discord.token``,
  ``channels.slack.botToken`` / ``appToken`` / ``signingSecret``; a secret may be a
  reference ``{"source": "env", "id": "NAME"}``. WhatsApp, Signal and iMessage are noted:
  they move to the Personal Bridge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import json5
import msgspec

DEFAULT_FOLDERS = ("~/.openclaw", "~/.moltbot", "~/.clawdbot")
CONFIG_NAMES = ("openclaw.json", "clawdbot.json", "moltbot.json", "moldbot.json")
INSTRUCTION_FILES = ("IDENTITY.md", "SOUL.md", "USER.md", "AGENTS.md")
CLOUD_CHANNELS = ("telegram", "discord", "slack")
BRIDGE_CHANNELS = ("whatsapp", "imessage", "signal")
_LEGACY_CHANNELS = ("whatsapp", "telegram", "discord", "slack", "signal", "imessage", "msteams")
_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


class StateError(Exception):
    """The folder or its config cannot be read; the message says which and why."""


class SelfHostedAgent(msgspec.Struct, frozen=True):
    agent_id: str
    name: str
    model: str | None  # as configured: "anthropic/claude-opus-4-5"
    workspace: Path
    instructions: str  # the workspace's instruction files, each under its own heading


class ChannelCredentials(msgspec.Struct, frozen=True):
    kind: str  # telegram, discord, slack, whatsapp, imessage, signal
    account: str  # "default", or the name under channels.<kind>.accounts
    secrets: dict[str, str]  # what POST /v1/channels/{kind}/connect takes, for cloud channels
    missing: str | None = None  # why it cannot be connected as it is


class SelfHostedState(msgspec.Struct, frozen=True):
    folder: Path
    config_file: Path | None
    agents: list[SelfHostedAgent]
    channels: list[ChannelCredentials]
    warnings: list[str]


def find_folder(explicit: Path | None, home: Path | None = None) -> Path:
    """``explicit``, else the first default folder that exists."""
    if explicit is not None:
        if not explicit.is_dir():
            raise StateError(
                f"{explicit} is not a folder: pass the self-hosted state folder (e.g. ~/.openclaw)."
            )
        return explicit
    base = home or Path.home()
    for name in DEFAULT_FOLDERS:
        candidate = base / name.removeprefix("~/")
        if candidate.is_dir():
            return candidate
    tried = ", ".join(DEFAULT_FOLDERS)
    raise StateError(f"No self-hosted state folder found (tried {tried}): pass --from DIR.")


def read_state(folder: Path, environ: Mapping[str, str]) -> SelfHostedState:
    warnings: list[str] = []
    config_file = next((folder / name for name in CONFIG_NAMES if (folder / name).is_file()), None)
    config: dict[str, Any] = {}
    if config_file is None:
        warnings.append(f"no config file in {folder} ({', '.join(CONFIG_NAMES)}): history only")
    else:
        config = _newer_layout(_load_config(config_file, environ, warnings))
    home = folder.parent
    return SelfHostedState(
        folder=folder,
        config_file=config_file,
        agents=_agents(config, folder, home, warnings),
        channels=_channels(config, environ, config_file.parent if config_file else folder, warnings),
        warnings=warnings,
    )


def _load_config(path: Path, environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    try:
        loaded = json5.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"{path} is not valid JSON5: {exc}") from None
    if not isinstance(loaded, dict):
        raise StateError(f"{path} holds {type(loaded).__name__}, not an object")
    if "$include" in loaded:
        warnings.append(f"{path.name}: $include is not followed; move what it includes into the file")
    substituted: dict[str, Any] = _substituted(loaded, environ)
    return substituted


def _substituted(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _ENV.sub(lambda m: environ.get(m[1], ""), value)
    if isinstance(value, list):
        return [_substituted(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: _substituted(v, environ) for k, v in value.items()}
    return value


def _newer_layout(config: dict[str, Any]) -> dict[str, Any]:
    """The older layout moved as the self-hosted product moves it when it loads a config."""
    config = dict(config)
    channels = dict(config.get("channels") or {})
    for kind in _LEGACY_CHANNELS:
        if isinstance(config.get(kind), dict):
            channels.setdefault(kind, config.pop(kind))
    config["channels"] = channels
    agents = dict(config.get("agents") or {})
    if isinstance(config.get("agent"), dict):
        legacy = dict(config.pop("agent"))
        if isinstance(legacy.get("model"), str):
            legacy["model"] = {"primary": legacy["model"]}
        agents["defaults"] = {**legacy, **(agents.get("defaults") or {})}
    routing = config.get("routing") or {}
    if isinstance(routing.get("agents"), dict) and not agents.get("list"):
        default = routing.get("defaultAgentId")
        agents["list"] = [
            {"id": agent_id, **(entry or {}), **({"default": True} if agent_id == default else {})}
            for agent_id, entry in routing["agents"].items()
        ]
    if isinstance(config.get("identity"), dict):
        agents.setdefault("defaults", {}).setdefault("identity", config["identity"])
    config["agents"] = agents
    return config


def _model(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("primary"), str):
        return str(value["primary"]) or None
    return None


def _agents(config: dict[str, Any], folder: Path, home: Path, warnings: list[str]) -> list[SelfHostedAgent]:
    agents = config.get("agents") or {}
    defaults = agents.get("defaults") or {}
    listed = [entry for entry in agents.get("list") or [] if isinstance(entry, dict) and entry.get("id")]
    if not listed:
        listed = [{"id": "main", "default": True}]
    found = []
    for position, entry in enumerate(listed):
        agent_id = str(entry["id"]).strip().lower()
        default = bool(entry.get("default")) or (position == 0 and not any(e.get("default") for e in listed))
        identity = entry.get("identity") or (defaults.get("identity") if default else None) or {}
        name = entry.get("name") or identity.get("name") or ("Assistant" if agent_id == "main" else agent_id)
        workspace = _workspace(entry, defaults, agent_id, default, folder, home)
        found.append(
            SelfHostedAgent(
                agent_id=agent_id,
                name=str(name)[:60],
                model=_model(entry.get("model")) or _model(defaults.get("model")),
                workspace=workspace,
                instructions=_instructions(workspace, warnings),
            )
        )
    return found


def _workspace(
    entry: dict[str, Any], defaults: dict[str, Any], agent_id: str, default: bool, folder: Path, home: Path
) -> Path:
    configured = entry.get("workspace") or (defaults.get("workspace") if default else None)
    if configured:
        return Path(
            str(configured).replace("~", str(home), 1) if str(configured).startswith("~") else configured
        )
    newer = folder / ("workspace" if default else f"workspace-{agent_id}")
    older = home / ("clawd" if default else f"clawd-{agent_id}")  # before the OpenClaw name
    return newer if newer.is_dir() or not older.is_dir() else older


def _instructions(workspace: Path, warnings: list[str]) -> str:
    parts = []
    for name in INSTRUCTION_FILES:
        path = workspace / name
        if not path.is_file():
            continue
        try:
            text = _without_front_matter(path.read_text(encoding="utf-8")).strip()
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(f"{path}: not read ({exc})")
            continue
        if text:
            parts.append(f"## {name.removesuffix('.md').title()}\n\n{text}")
    return "\n\n".join(parts)


def _without_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :]
    return text


def _secret(value: Any, environ: Mapping[str, str]) -> str | None:
    """A secret as written, or a reference to an environment variable."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict) and value.get("source") == "env" and isinstance(value.get("id"), str):
        return environ.get(value["id"]) or None
    return None


def _channels(
    config: dict[str, Any], environ: Mapping[str, str], base: Path, warnings: list[str]
) -> list[ChannelCredentials]:
    found: list[ChannelCredentials] = []
    for kind, section in (config.get("channels") or {}).items():
        if not isinstance(section, dict) or section.get("enabled") is False:
            continue
        accounts = {"default": section} | {
            str(name): {**section, **account}
            for name, account in (section.get("accounts") or {}).items()
            if isinstance(account, dict)
        }
        for account, settings in accounts.items():
            if account == "default" and section.get("accounts") and not _has_credentials(kind, settings):
                continue  # only named accounts
            found.append(_credentials(kind, account, settings, environ, base, warnings))
    return found


def _has_credentials(kind: str, settings: dict[str, Any]) -> bool:
    keys = {"telegram": ("botToken", "tokenFile"), "discord": ("token",), "slack": ("botToken",)}
    return kind in BRIDGE_CHANNELS or any(settings.get(key) for key in keys.get(kind, ()))


def _credentials(
    kind: str,
    account: str,
    settings: dict[str, Any],
    environ: Mapping[str, str],
    base: Path,
    warnings: list[str],
) -> ChannelCredentials:
    env_token = {"telegram": "TELEGRAM_BOT_TOKEN", "discord": "DISCORD_BOT_TOKEN", "slack": "SLACK_BOT_TOKEN"}
    if kind == "telegram":
        token = _secret(settings.get("botToken"), environ)
        token_file = settings.get("tokenFile")
        if token is None and isinstance(token_file, str):
            path = Path(token_file).expanduser()
            path = path if path.is_absolute() else base / path
            try:
                token = path.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                warnings.append(f"telegram ({account}): tokenFile {path} not read ({exc})")
        token = token or (environ.get(env_token[kind]) if account == "default" else None)
        return _cloud(kind, account, {"bot_token": token} if token else {}, "no bot token")
    if kind == "discord":
        token = _secret(settings.get("token"), environ) or (
            environ.get(env_token[kind]) if account == "default" else None
        )
        return _cloud(kind, account, {"bot_token": token} if token else {}, "no bot token")
    if kind == "slack":
        bot = _secret(settings.get("botToken"), environ) or (
            environ.get(env_token[kind]) if account == "default" else None
        )
        app = _secret(settings.get("appToken"), environ) or (
            environ.get("SLACK_APP_TOKEN") if account == "default" else None
        )
        signing = _secret(settings.get("signingSecret"), environ)
        secrets = {"bot_token": bot} if bot else {}
        if bot and app:
            secrets["app_token"] = app
        elif bot and signing:
            secrets["signing_secret"] = signing
        missing = (
            "no bot token" if not bot else None if len(secrets) == 2 else "no app token nor signing secret"
        )
        return ChannelCredentials(kind, account, secrets if missing is None else {}, missing)
    if kind in BRIDGE_CHANNELS:
        return ChannelCredentials(kind, account, {}, "runs on your Mac: pair the Personal Bridge")
    return ChannelCredentials(kind, account, {}, f"{kind} is not a channel this product connects (yet)")


def _cloud(kind: str, account: str, secrets: dict[str, str], missing: str) -> ChannelCredentials:
    return ChannelCredentials(kind, account, secrets, None if secrets else missing)
