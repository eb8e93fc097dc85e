"""Settings, read once from the command line and the environment, then passed down.

Where the servers are, in order of precedence:
1. ``MOLTBOT_NATS_URL`` / ``MOLTBOT_DATABASE_URL`` (external servers);
2. ``<data dir>/stack.json``, written by a running ``moltbot up``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

DEFAULT_DATA_DIR = Path(".moltbot")
STACK_FILE = "stack.json"
LogFormat = Literal["console", "json"]


class NoStackError(Exception):
    """No servers to talk to: nothing running in the data folder and no URLs in the environment."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path
    nats_url: str | None = None
    database_url: str | None = None
    streams_file: Path
    log_format: LogFormat = "console"
    log_level: str = "info"
    gateway_port: int = 8000
    jwt_key_file: Path

    @classmethod
    def load(cls, environ: Mapping[str, str], *, data_dir: str | None = None) -> Settings:
        directory = Path(data_dir or environ.get("MOLTBOT_DATA_DIR") or DEFAULT_DATA_DIR)
        default_format: LogFormat = "console" if sys.stderr.isatty() else "json"
        log_format = environ.get("MOLTBOT_LOG_FORMAT", default_format)
        if log_format not in ("console", "json"):
            raise ValueError(f"MOLTBOT_LOG_FORMAT must be 'console' or 'json', not {log_format!r}")
        return cls(
            data_dir=directory.resolve(),
            nats_url=environ.get("MOLTBOT_NATS_URL") or None,
            database_url=environ.get("MOLTBOT_DATABASE_URL") or None,
            streams_file=Path(environ.get("MOLTBOT_STREAMS_FILE") or _bundled_streams_file()),
            log_format=log_format,  # type: ignore[arg-type]
            log_level=environ.get("MOLTBOT_LOG_LEVEL", "info").lower(),
            gateway_port=int(environ.get("MOLTBOT_GATEWAY_PORT", "8000")),
            jwt_key_file=Path(
                environ.get("MOLTBOT_JWT_KEY_FILE") or directory.resolve() / "gateway" / "jwt-ed25519.pem"
            ),
        )

    @property
    def stack_file(self) -> Path:
        return self.data_dir / STACK_FILE

    def servers(self) -> tuple[str, str]:
        """(nats_url, database_url) of the stack to talk to, or :class:`NoStackError`."""
        nats_url, database_url = self.nats_url, self.database_url
        if not (nats_url and database_url) and self.stack_file.exists():
            stack = json.loads(self.stack_file.read_text())
            nats_url = nats_url or stack.get("nats_url")
            database_url = database_url or stack.get("database_url")
        if not (nats_url and database_url):
            raise NoStackError(
                f"No running Moltbot stack in {self.data_dir}. Start one with `moltbot up"
                f" --data {self.data_dir}`, or set MOLTBOT_NATS_URL and MOLTBOT_DATABASE_URL."
            )
        return nats_url, database_url


def _bundled_streams_file() -> Path:
    return Path(__file__).resolve().parent.parent / "streams.yaml"
