"""People, not handles (pure): every sender is an identity (a channel's id of a person on one
connection); identities group into contacts. Each identity starts as its own contact; the
owner merges and splits them (``contact.merged``, ``contact.split``), helped by suggestions:
identities that share a phone number (WhatsApp, iMessage, Signal…) or an e-mail address
(iMessage…) — never names alone, never across tenants."""

from __future__ import annotations

import re

from domain import ids

IDENTITY = "id"
CONTACT = "ct"

_PHONE_DIGITS = re.compile(r"\+?\d{7,15}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# WhatsApp's user servers: a phone number's jid (s.whatsapp.net; c.us in older clients)
_WHATSAPP_PHONE_SERVERS = ("s.whatsapp.net", "c.us")


def identity_id(connection_id: str, sender_id: str) -> str:
    return ids.stable_id(IDENTITY, f"{connection_id}:{sender_id}")


def first_contact_id(identity: str) -> str:
    """The contact an identity starts in (alone)."""
    return ids.stable_id(CONTACT, identity)


def phone_of(sender_id: str) -> str | None:
    """The phone number a sender id carries (``wa:15551234567@s.whatsapp.net``,
    ``imessage:+15551234567``, a WhatsApp Business ``wa:15551234567``), as ``+<digits>``."""
    channel, _, handle = sender_id.partition(":")
    if channel == "wa":
        user, _, server = handle.partition("@")
        if server and server not in _WHATSAPP_PHONE_SERVERS:
            return None  # a group, a hidden (lid) id: no number
        handle = user.split(":", 1)[0]  # a device suffix ("15551234567:12")
    elif channel not in ("imessage", "signal"):
        return None
    if not _PHONE_DIGITS.fullmatch(handle.replace(" ", "")):
        return None
    return "+" + handle.lstrip("+").replace(" ", "")


def email_of(sender_id: str) -> str | None:
    """The e-mail address a sender id carries (an iMessage handle), lower-cased."""
    channel, _, handle = sender_id.partition(":")
    if channel in ("imessage",) and _EMAIL.fullmatch(handle):
        return handle.lower()
    return None
