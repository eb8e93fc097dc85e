"""``moltbot vault``: the keys of the encrypted channel credentials, and re-encrypting them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from adapters.postgres.database import connection as pg_connection
from adapters.vault.cipher import Keyring, VaultError, add_key_to_file, format_key
from adapters.vault.sealing import ensure_schema as ensure_data_keys
from adapters.vault.sealing import rewrap
from adapters.vault.store import CredentialStore, ensure_schema
from moltbot.cli.common import CommandError, add, keyring
from moltbot.settings import Settings


async def cmd_vault_rotate(settings: Settings, args: argparse.Namespace) -> int:
    database_url = settings.database()
    keys = keyring(settings)
    async with pg_connection(database_url, application_name="moltbot-vault") as conn:
        await ensure_schema(conn)
        desc = f"rotate to {keys.current_id}"
        with tqdm(total=0, unit="row", desc=desc, file=sys.stderr, disable=args.quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            report = await CredentialStore(conn, keys).rotate(batch=args.batch_size, progress=progress)
        await ensure_data_keys(conn)
        rewrapped, unwrappable = await rewrap(conn, keys)
    for connection_id in report.failed:
        print(f"{connection_id}: cannot decrypt with the configured keys", file=sys.stderr)
    print(
        f"Re-encrypted {report.rotated} credentials under key {report.key_id}"
        f" ({report.already_current} already current, {len(report.failed)} failed);"
        f" re-wrapped {rewrapped} data keys of personal fields ({unwrappable} failed)."
    )
    return 1 if report.failed or unwrappable else 0


async def cmd_vault_new_key(settings: Settings, args: argparse.Namespace) -> int:
    if settings.vault_keys or args.print:
        key_id, key = Keyring.generate_key()
        print(format_key(key_id, key))
        print(
            f"Append this entry to MOLTBOT_VAULT_KEYS (comma-separated), set MOLTBOT_VAULT_KEY_ID={key_id}"
            " on every process, restart them, then run `moltbot vault rotate`.",
            file=sys.stderr,
        )
        return 0
    if settings.vault_key_id:
        raise CommandError("MOLTBOT_VAULT_KEY_ID is set: set MOLTBOT_VAULT_KEYS too")
    try:
        key_id = add_key_to_file(settings.vault_key_file)
    except VaultError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"Added key {key_id} to {settings.vault_key_file} and made it current."
        " Run `moltbot vault rotate` to re-encrypt the stored credentials under it."
    )
    return 0


def register(commands: Any) -> None:
    vault = commands.add_parser(
        "vault", help="encrypted channel credentials (bot and OAuth tokens)"
    ).add_subparsers(dest="vault_command", metavar="ACTION", required=True)
    rot = add(
        vault,
        "rotate",
        cmd_vault_rotate,
        "Re-encrypt every stored credential that is not under the current key"
        " (MOLTBOT_VAULT_KEY_ID, or the key file's current key). Needs only the database."
        " Exits 1 if some could not be decrypted with the configured keys.",
    )
    rot.add_argument("--batch-size", type=int, default=100, help="rows read per query (default 100)")
    rot.add_argument("--quiet", action="store_true", help="no progress bar")
    new_key = add(
        vault,
        "new-key",
        cmd_vault_new_key,
        "Make a new vault key. With MOLTBOT_VAULT_KEYS set: print an id:base64key entry to add"
        " to it. Otherwise: add the key to the local key file (<data dir>/vault/keys.json)"
        " and make it current. Then run `moltbot vault rotate`.",
    )
    new_key.add_argument(
        "--print", action="store_true", help="only print a new id:base64key entry, change no file"
    )
