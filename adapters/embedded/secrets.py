"""Generated credentials of the embedded servers, kept in the data folder readable by its owner alone."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path


def new_password() -> str:
    """A random password (256 bits, URL-safe, so it fits in a connection URL as it is)."""
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, mode 0600 from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file keeps its mode on O_CREAT: narrow it
        out.write(text)


def read_or_create_secret(path: Path) -> str:
    """The password stored in ``path``, made on first use."""
    if path.exists():
        return path.read_text().strip()
    password = new_password()
    write_private(path, password + "\n")
    return password


def read_or_create_users(path: Path, roles: Iterable[str]) -> dict[str, str]:
    """Role -> password from the JSON file ``path`` (``{"users": {...}}``); a role it lacks
    (first start, a new connector kind) gets a new password, written back."""
    stored: dict[str, str] = {}
    if path.exists():
        stored = dict(json.loads(path.read_text()).get("users", {}))
    users = {role: stored.get(role) or new_password() for role in roles}
    if users != stored:
        write_private(path, json.dumps({"users": stored | users}, indent=2) + "\n")
    return stored | users
