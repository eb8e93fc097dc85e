"""Which fields carry a tenant's personal content, and how a sealed value is written (pure).

Every such field is a string; sealed, it stays a string — a *token* naming the tenant and
the UTC day of its data key, then the ciphertext — so events keep their schema and a reader
can open a message without knowing its type (``adapters/vault/sealing.py``):

    "\\x1bS1:<tenant>:<yyyymmdd>:<base64url(nonce | AES-256-GCM ciphertext and tag)>"

Deleting a tenant's (or a day's) data key makes every copy of its tokens unreadable, in
every stream, block file and backup: crypto-shredding (docs/privacy.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final

import msgspec

from domain.events import Event

MARK: Final = "\x1bS1:"  # JSON-encoded by msgspec as "\u001bS1:"
MARK_JSON: Final = b'"\\u001bS1:'  # how a token starts in the stored JSON bytes
ERASED: Final = "[erased]"  # what a field reads as once its key is gone
# A token inside JSON: its label (tenant and key day: "<tenant>:<yyyymmdd>"), its ciphertext.
TOKEN_JSON: Final = re.compile(rb'"\\u001bS1:([A-Za-z0-9_-]{1,64}:\d{8}):([A-Za-z0-9_-]+)"')

# Paths in an event's ``data``: "a.b" goes into a nested struct, "*" into each item of a tuple,
# "**" (last) into every string anywhere inside free-form JSON (its keys stay as they are).
PERSONAL_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "tenant.created": ("name",),
    "tenant.renamed": ("name",),
    "user.registered": ("email", "display_name"),
    "user.preferences_changed": ("time_zone",),  # where a person lives, roughly
    "connection.created": ("display_name",),
    "connection.sender_requested": ("sender_id", "sender_name"),
    "connection.sender_approved": ("sender_id",),
    "connection.sender_blocked": ("sender_id",),
    "conversation.created": ("title", "external_id"),
    "conversation.updated": ("title",),
    "conversation.summarized": ("summary",),
    "message.received": (
        "text", "sender.id", "sender.name", "sender.email", "attachments.*.name",
        "attachments.*.provider_file_id",
    ),
    "message.send_requested": ("text", "to", "sender.id", "sender.name"),
    "message.send_released": ("text", "to", "sender.id", "sender.name"),
    "message.sent": ("text", "sender.id", "sender.name"),
    "message.edited": ("text",),
    "message.draft_proposed": ("text", "to", "flag"),
    "reaction.added": ("sender_id",),
    "reaction.removed": ("sender_id",),
    "message.send_failed": ("reason",),
    "reminder.scheduled": ("note",),
    "reminder.due": ("note",),
    "contact.notes_set": ("notes",),
    "memory.fact_proposed": ("text",),
    "memory.fact_approved": ("text",),
    "agent.configured": ("system_prompt", "rules.allowed_senders.*", "rules.inbox_search_senders.*"),
    "agent.routing_set": ("rules.*.name", "rules.*.sender_id", "rules.*.keyword"),
    "agent.run_completed": ("tool_calls.*.input.**",),
    "agent.run_failed": ("reason",),
    "device.paired": ("name",),
}  # fmt: skip

Seal = Callable[[str], str]


# Message content: sealed with the key of the UTC day it was recorded, so a plan's history
# window drops it a day at a time. Every other personal field (a name, a title, an address,
# a prompt) lasts as long as the inbox: it is sealed with the tenant's standing key, which
# only deleting the inbox shreds.
DAILY: Final = frozenset({
    "message.received", "message.send_requested", "message.send_released", "message.sent", "message.edited",
    "message.send_failed", "message.draft_proposed", "reaction.added", "reaction.removed",
    "conversation.summarized", "agent.run_completed", "agent.run_failed",
})  # fmt: skip
STANDING: Final = date(1970, 1, 1)  # the "day" of the standing key (no event is recorded then)


def key_day_of(event_type: str, recorded: datetime) -> date:
    """The day whose data key seals an event of ``event_type`` recorded at ``recorded``."""
    return recorded.date() if event_type in DAILY else STANDING


def key_day(event: Event) -> date:
    return key_day_of(event.type, event.occurred_at)


def is_token(value: str) -> bool:
    return value.startswith(MARK)


def token(tenant_id: str, day: date, sealed: str) -> str:
    """A sealed value: ``sealed`` is the base64url of nonce and ciphertext."""
    return f"{MARK}{tenant_id}:{day:%Y%m%d}:{sealed}"


def seal_event(event: Event, seal: Seal) -> Event:
    """``event`` with each personal field (not yet sealed, not empty) replaced by ``seal(value)``."""
    paths = PERSONAL_FIELDS.get(event.type)
    if not paths:
        return event
    data = getattr(event, "data")  # noqa: B009 - every event with personal fields has data
    for path in paths:
        data = _sealed(data, path.split("."), seal)
    return msgspec.structs.replace(event, data=data)  # type: ignore[call-arg]


def _sealed(value: Any, path: list[str], seal: Seal) -> Any:
    if not path:
        if isinstance(value, str) and value and not is_token(value):
            return seal(value)
        return value
    head, rest = path[0], path[1:]
    if head == "**":
        return _sealed_json(value, seal)
    if head == "*":
        return tuple(_sealed(item, rest, seal) for item in value) if value else value
    if value is None:
        return None
    inner = getattr(value, head)
    changed = _sealed(inner, rest, seal)
    return value if changed is inner else msgspec.structs.replace(value, **{head: changed})


def _sealed_json(value: Any, seal: Seal) -> Any:
    """Every string inside free-form JSON sealed (dict keys left as they are)."""
    if isinstance(value, str):
        return _sealed(value, [], seal)
    if isinstance(value, dict):
        return {key: _sealed_json(item, seal) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_sealed_json(item, seal) for item in value)
    return value


def seal_document(document: dict[str, Any], seal: Seal) -> int:
    """Seal, in place, the personal fields of a stored event read as plain JSON (a dict), so
    that a rewrite keeps every other byte's meaning (fields this build does not know
    included); how many values were sealed. Paths this payload lacks are skipped."""
    data = document.get("data")
    paths = PERSONAL_FIELDS.get(str(document.get("type")))
    if not paths or not isinstance(data, dict):
        return 0
    return sum(_seal_in(data, path.split("."), seal) for path in paths)


def _seal_in(container: Any, path: list[str], seal: Seal) -> int:
    head, rest = path[0], path[1:]
    items: list[tuple[Any, Any]]
    if head == "*":
        items = list(enumerate(container)) if isinstance(container, list) else []
    else:
        items = [(head, container[head])] if isinstance(container, dict) and head in container else []
    count = 0
    for key, value in items:
        if rest == ["**"]:
            sealed: list[int] = []
            container[key] = _sealed_json(value, _counting(seal, sealed))
            count += len(sealed)
        elif rest:
            count += _seal_in(value, rest, seal)
        elif isinstance(value, str) and value and not is_token(value):
            container[key] = seal(value)
            count += 1
    return count


def _counting(seal: Seal, sealed: list[int]) -> Seal:
    def counted(value: str) -> str:
        sealed.append(1)
        return seal(value)

    return counted
