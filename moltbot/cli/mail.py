"""``moltbot mail``: the account mail the product kept in its outbox folder
(``<data dir>/mail/outbox/``) because no SMTP server is configured (MOLTBOT_SMTP_URL):
password resets, address checks, invitations, security notices."""

from __future__ import annotations

import argparse
from typing import Any

from adapters.mail.outbox import StoredMail, html_body, list_mail, outbox_folder, read_mail, text_body
from moltbot.cli.common import CommandError, add
from moltbot.settings import Settings

SHOWN_HEADERS = ("From", "To", "Subject", "Date", "X-Moltbot-Kind")
SUBJECT_WIDTH = 60


def _table(mails: list[StoredMail]) -> list[str]:
    rows = [("DATE", "KIND", "TO", "SUBJECT", "NAME")]
    for mail in mails:
        subject = (
            mail.subject if len(mail.subject) <= SUBJECT_WIDTH else mail.subject[: SUBJECT_WIDTH - 1] + "…"
        )
        rows.append((mail.date, mail.kind, mail.to, subject, mail.name))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[4]])
        for row in rows
    ]


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    folder = outbox_folder(settings.data_dir)
    mails = list_mail(folder)
    if not mails:
        print(f"No mail yet in {folder}.")
        return 0
    for line in _table(mails):
        print(line)
    return 0


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    try:
        message = read_mail(outbox_folder(settings.data_dir), args.name)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    for header in SHOWN_HEADERS:
        if header in message:
            print(f"{header}: {message[header]}")
    print()
    print(html_body(message) if args.html else text_body(message), end="")
    return 0


def register(commands: Any) -> None:
    mail = commands.add_parser(
        "mail", help="account mail kept in the outbox folder (when MOLTBOT_SMTP_URL is unset)"
    ).add_subparsers(dest="mail_command", metavar="ACTION", required=True)
    add(
        mail,
        "list",
        cmd_list,
        "The mail kept in <data dir>/mail/outbox/ instead of sent (no MOLTBOT_SMTP_URL): date,"
        " kind, recipient, subject and the name `moltbot mail show` takes, oldest first.",
    )
    show = add(
        mail,
        "show",
        cmd_show,
        "One kept mail: its headers, then its plain-text body (with the links it carries).",
    )
    show.add_argument(
        "name", metavar="NAME", help="the mail's file name, or the start of it if only one matches"
    )
    show.add_argument("--html", action="store_true", help="print the HTML body instead of the plain text")
