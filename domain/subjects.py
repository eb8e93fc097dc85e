"""The subject grammar (DESIGN §3), the one place subjects are built or parsed.

- events:    ``ev.<tenant>.<aggregate>.<aggregate_id>.<event>``
- commands:  ``cmd.<channel>.<connection_id>.<kind>`` and ``cmd.agent.<tenant>.<conversation_id>``
- live:      ``live.<tenant>.<...>``
- dead letters: ``dlq.<origin>.<reason>``

Every token is validated before a subject is built, so an id that carries a dot or a
wildcard can never widen a subscription or land an event under another tenant.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from domain.errors import InvalidToken

EVENTS_PREFIX = "ev"
COMMANDS_PREFIX = "cmd"
LIVE_PREFIX = "live"
DLQ_PREFIX = "dlq"

ALL_EVENTS = "ev.>"

_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def is_token(value: str) -> bool:
    """True when ``value`` is usable as one subject token."""
    return _TOKEN.fullmatch(value) is not None


def token(field: str, value: str) -> str:
    """Return ``value`` if it is a valid token, else raise :class:`InvalidToken`."""
    if not isinstance(value, str) or not is_token(value):
        raise InvalidToken(field, str(value))
    return value


def event_token(event_type: str) -> str:
    """``message.received`` -> ``message_received`` (the subject's last token)."""
    return token("type", event_type.replace(".", "_"))


def event_type_of(subject_token: str) -> str:
    """``message_received`` -> ``message.received``: the inverse of :func:`event_token`."""
    noun, _, verb = subject_token.partition("_")
    return f"{noun}.{verb}"


def _subject(prefix: str, **tokens: str) -> str:
    """``prefix`` and each value, checked as a token under its field name, joined by dots."""
    return ".".join((prefix, *(token(field, value) for field, value in tokens.items())))


def _aggregate_prefix(tenant_id: str, aggregate: str, aggregate_id: str) -> str:
    """``ev.<tenant>.<aggregate>.<id>``: what every subject of one aggregate starts with."""
    return _subject(EVENTS_PREFIX, tenant_id=tenant_id, aggregate=aggregate, aggregate_id=aggregate_id)


def event_subject(tenant_id: str, aggregate: str, aggregate_id: str, event_type: str) -> str:
    return f"{_aggregate_prefix(tenant_id, aggregate, aggregate_id)}.{event_token(event_type)}"


def aggregate_filter(tenant_id: str, aggregate: str, aggregate_id: str) -> str:
    """Every event of one aggregate: ``ev.<tenant>.<aggregate>.<id>.>``."""
    return f"{_aggregate_prefix(tenant_id, aggregate, aggregate_id)}.>"


def tenant_filter(tenant_id: str) -> str:
    """A tenant's whole history: ``ev.<tenant>.>``."""
    return f"{_subject(EVENTS_PREFIX, tenant_id=tenant_id)}.>"


class EventSubject(NamedTuple):
    tenant_id: str
    aggregate: str
    aggregate_id: str
    event_type: str


def parse_event_subject(subject: str) -> EventSubject:
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != EVENTS_PREFIX or not all(is_token(p) for p in parts[1:]):
        raise InvalidToken("subject", subject)
    return EventSubject(parts[1], parts[2], parts[3], event_type_of(parts[4]))


def command_subject(channel: str, connection_id: str, kind: str) -> str:
    return _subject(COMMANDS_PREFIX, channel=channel, connection_id=connection_id, kind=kind)


def agent_command_subject(tenant_id: str, conversation_id: str) -> str:
    return _subject(f"{COMMANDS_PREFIX}.agent", tenant_id=tenant_id, conversation_id=conversation_id)


def live_subject(tenant_id: str, *rest: str) -> str:
    if not rest:
        raise InvalidToken("live", "")
    return ".".join((LIVE_PREFIX, token("tenant_id", tenant_id), *(token("live", r) for r in rest)))


def dlq_subject(origin: str, reason: str) -> str:
    return _subject(DLQ_PREFIX, origin=origin, reason=reason)


BRIDGE_PREFIX = "bridge"


def bridge_send_subject(channel: str, connection_id: str) -> str:
    """Core NATS (not stored): a send handed to the device hosting a bridge connection,
    answered by the gateway that holds the device's tunnel: ``bridge.<channel>.<connection>.send``."""
    return _subject(BRIDGE_PREFIX, channel=channel, connection_id=connection_id) + ".send"


def bridge_close_subject(device_id: str) -> str:
    """Core NATS: close the device's tunnel wherever it is open: ``bridge.device.<device>.close``."""
    return f"{BRIDGE_PREFIX}.device.{token('device_id', device_id)}.close"
