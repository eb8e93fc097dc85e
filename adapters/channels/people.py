"""Who a sender is beyond a channel's member id: the e-mail address on their profile, where
a channel will tell it (Slack's ``users.info``, Teams' conversation members), so the contacts
read model can suggest that a Slack member and a Teams user with one address are one person.

Each member is looked up once and kept (people change their address rarely). A lookup that
fails or finds nothing leaves the address out: the message is stored as it came either way,
and a lookup never holds a delivery longer than :data:`LOOKUP_TIMEOUT`."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import structlog

from domain import events as ev

log = structlog.get_logger()

LOOKUP_TIMEOUT = 2.0  # Slack waits 3 s for a webhook's answer, the Bot Connector 15 s
LookUp = Callable[[str], Awaitable[str | None]]  # a member id -> their address, None if they have none


class NotNow(Exception):
    """A lookup failed for now (network, rate limit): the next message of theirs asks again."""


def address(value: object) -> str | None:
    """An e-mail address as the contacts read model compares them, or None."""
    if not isinstance(value, str) or "@" not in value.strip(" @"):
        return None
    return value.strip().lower()


class SenderEmails:
    """E-mail addresses of members, per ``scope`` (a token, an app), looked up once each."""

    def __init__(self, kept: int = 4096) -> None:
        self._kept = kept
        self._emails: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    async def email_of(self, scope: str, member: str, look_up: LookUp) -> str | None:
        key = (scope, member)
        if key in self._emails:
            self._emails.move_to_end(key)
            return self._emails[key]
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                email = await look_up(member)
        except (TimeoutError, NotNow) as exc:
            log.info("sender_email_not_now", member=member, error=repr(exc))
            return None  # not kept: the next message asks again
        self._emails[key] = email
        if len(self._emails) > self._kept:
            self._emails.popitem(last=False)
        return email

    async def add_to(self, events: Sequence[ev.Event], scope: str, look_up: LookUp) -> tuple[ev.Event, ...]:
        """``events`` with each person's address on the messages they sent, where known."""
        found: list[ev.Event] = []
        for event in events:
            if isinstance(event, ev.MessageReceived):
                sender = event.data.sender
                member = sender.id.partition(":")[2]
                if not sender.is_bot and sender.email is None and member:
                    email = await self.email_of(scope, member, look_up)
                    if email is not None:
                        sender = msgspec.structs.replace(sender, email=email)
                        event = msgspec.structs.replace(
                            event, data=msgspec.structs.replace(event.data, sender=sender)
                        )
            found.append(event)
        return tuple(found)
