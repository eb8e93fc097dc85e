"""Where the bridge finds signal-cli (``MOLTBOT_SIGNAL_*``), read once with the settings.

- ``MOLTBOT_SIGNAL_CLI``: the signal-cli executable. The bridge starts it itself, with its
  own data folder (``<bridge data>/signal``), and stops it. Unset: ``signal-cli`` on the
  ``PATH``, looked up when the channel starts.
- ``MOLTBOT_SIGNAL_RPC``: the address of a signal-cli daemon already running (the bridge
  then starts none): ``unix:/path/to/socket`` (or just the absolute path), ``tcp://host:port``
  (or ``host:port``), or ``http://host:port`` (the daemon's ``--http``).
- ``MOLTBOT_SIGNAL_ACCOUNT``: an account that daemon already has (``+15551234567``), to use
  instead of linking a new device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

import msgspec

Transport = Literal["unix", "tcp", "http"]


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """A running daemon's address: a UNIX socket's ``path``, or a ``host`` and ``port``
    (``https`` for an HTTP daemon behind TLS)."""

    transport: Transport
    path: str | None = None
    host: str | None = None
    port: int | None = None
    https: bool = False

    @property
    def base_url(self) -> str:
        """An HTTP daemon's base URL."""
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.path}"
        return self.base_url if self.transport == "http" else f"tcp://{self.host}:{self.port}"


class SignalSetup(msgspec.Struct, frozen=True, kw_only=True):
    cli: str | None = None  # MOLTBOT_SIGNAL_CLI
    rpc: Address | None = None  # MOLTBOT_SIGNAL_RPC
    account: str | None = None  # MOLTBOT_SIGNAL_ACCOUNT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SignalSetup:
        """The three settings; ValueError names the one that cannot be used."""
        cli = environ.get("MOLTBOT_SIGNAL_CLI") or None
        given = environ.get("MOLTBOT_SIGNAL_RPC") or None
        account = (environ.get("MOLTBOT_SIGNAL_ACCOUNT") or "").strip() or None
        if cli and given:
            raise ValueError(
                "MOLTBOT_SIGNAL_CLI and MOLTBOT_SIGNAL_RPC are both set: the bridge either starts"
                " signal-cli itself or talks to a daemon already running; unset one."
            )
        if account is not None and not given:
            raise ValueError(
                "MOLTBOT_SIGNAL_ACCOUNT names an account of a running daemon: set MOLTBOT_SIGNAL_RPC too"
                " (a signal-cli the bridge starts links its own)."
            )
        if account is not None and not _is_number(account):
            raise ValueError(
                f"MOLTBOT_SIGNAL_ACCOUNT must be a number with its country code, not {account!r}"
            )
        return cls(cli=cli, rpc=parse_address(given) if given else None, account=account)


def _is_number(text: str) -> bool:
    return text.startswith("+") and text[1:].isdigit() and 7 <= len(text) <= 16


def parse_address(text: str) -> Address:
    """``MOLTBOT_SIGNAL_RPC`` as an :class:`Address`; ValueError says what it should be."""
    given = text.strip()
    if given.startswith("unix:") or given.startswith("/"):
        path = given.removeprefix("unix:").removeprefix("//")
        if not path.startswith("/"):
            raise ValueError(f"MOLTBOT_SIGNAL_RPC: a socket is an absolute path (unix:/path), not {text!r}")
        return Address(transport="unix", path=path)
    if "://" not in given:
        given = f"tcp://{given}"
    parts = urlsplit(given)
    if parts.scheme not in ("tcp", "http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(
            "MOLTBOT_SIGNAL_RPC must be unix:/path/to/socket, tcp://host:port (or host:port) or"
            f" http://host:port, not {text!r}"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise ValueError(f"MOLTBOT_SIGNAL_RPC needs a port: {text!r}")
    transport: Transport = "tcp" if parts.scheme == "tcp" else "http"
    return Address(transport=transport, host=parts.hostname, port=port, https=parts.scheme == "https")
