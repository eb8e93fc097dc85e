"""What every command group shares: the error a user can fix, the event store and vault
keys found through the settings, progress bars, and how a command is added to a group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from tqdm import tqdm

from adapters.nats.connection import connection
from adapters.nats.event_store import EventStore as NatsEventStore
from adapters.vault.cipher import Keyring, VaultError, load_keyring
from adapters.vault.sealing import sealing
from domain import subjects
from domain.ports import EventStore
from moltbot.settings import Settings
from projections.base import Projection
from projections.registry import by_name

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def add(group: Any, name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
    """Add command ``name`` to ``group`` (a subparsers action), run by ``handler``."""
    sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    return sub


@asynccontextmanager
async def event_store(settings: Settings, *, personal: bool = True) -> AsyncIterator[EventStore]:
    """The event log; ``personal``: it seals what it appends and opens what it reads (the
    vault's keys); without, it shows the stored bytes as they are, sealed fields sealed."""
    nats_url, database_url = settings.servers()
    async with connection(nats_url, name="moltbot-cli") as nc:
        if not personal:
            yield NatsEventStore(nc)
            return
        async with sealing(nc, database_url, keyring(settings)) as sealer:
            yield NatsEventStore(nc, sealer=sealer)


def event_subject(args: argparse.Namespace) -> str:
    return subjects.tenant_filter(args.tenant) if args.tenant else subjects.ALL_EVENTS


def keyring(settings: Settings) -> Keyring:
    try:
        return load_keyring(
            keys=settings.vault_keys, current=settings.vault_key_id, key_file=settings.vault_key_file
        )
    except VaultError as exc:
        raise CommandError(str(exc)) from None


def projection(name: str) -> Projection:
    try:
        return by_name(name)
    except LookupError as exc:
        raise CommandError(str(exc)) from None


def progress_bar(desc: str) -> tuple[tqdm[Any], Callable[[int, int], None]]:
    bar: tqdm[Any] = tqdm(total=0, unit="ev", desc=desc, file=sys.stderr, unit_scale=True)

    def update(seq: int, target: int) -> None:
        bar.total = max(target, seq)
        bar.n = seq
        bar.refresh()

    return bar, update
