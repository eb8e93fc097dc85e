"""Generates docs/events.md — the event contract — from the domain's event classes and
examples, and the channel kinds' table in docs/connectors.md from the channel registry, so
neither document can drift from the code (tests compare them).

    python -m moltbot.docs > docs/events.md
    python -m moltbot.docs --connectors docs/connectors.md   # rewrites the table in place
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, get_type_hints

import msgspec

from domain import events as ev
from domain.codec import EventCodec, dedupe_key
from domain.examples import examples

INTRO = """\
# Events: the canonical contract

Every connector, the agent and the gateway publish these events to the `EVENTS` stream;
every read model is folded from them. This file is generated from `domain/events.py` and
`domain/examples.py` by `make docs`; a test fails when it is out of date.

## Envelope

Every event is one JSON object with these fields (the names are a contract):

| field | meaning |
|---|---|
| `id` | sortable unique id (ULID, 26 characters) |
| `type` | `<noun>.<verb>`, e.g. `message.received` |
| `v` | schema version of `data`; older versions are upcast when read |
| `tenant_id` | the tenant the event belongs to (`t_…`) |
| `aggregate_id` | the conversation, connection, tenant, user or device it changes |
| `occurred_at` | RFC 3339 UTC time the fact happened |
| `causation_id` | id of the event or command that caused it, if any |
| `correlation_id` | id shared by everything one request or run caused, if any |
| `actor` | who did it: `user:<id>`, `connector:<channel>:<connection>`, `agent:<id>`, … |
| `data` | the payload of this type (below); unknown fields are refused |

## Subjects

An event is stored under `ev.<tenant_id>.<aggregate>.<aggregate_id>.<event>`, where
`<event>` is the type with `_` for `.` (`message.received` → `message_received`).
Tokens may hold letters, digits, `_` and `-` only; anything else is refused before
publishing. One aggregate's history is `ev.<tenant>.<aggregate>.<id>.>`, a tenant's
whole history `ev.<tenant>.>`.

Each message carries the header `Nats-Msg-Id` = the event's dedupe key: for
`message.received` it is `<channel>:<connection_id>:<provider_message_id>` (a provider
retry inside the 2-minute duplicate window is stored once; the read model ignores
repeats after it), for every other event its `id`. Writers that must not race append
with `Nats-Expected-Last-Subject-Sequence` on the aggregate's subjects. Events that
belong together (a decision of several events, an agent run's reply with its usage and
its end) are appended as one JetStream atomic batch (`allow_atomic` on `EVENTS`): stored
contiguous and in order, or not at all.

A message that is not a valid event is never applied: each read model's worker that
folds its type dead-letters it to `dlq.<consumer>.<reason>` (reasons: `malformed`,
`unknown_type`, `invalid`, `unsupported_version`, `rejected`) with the headers
`Moltbot-Origin-Stream`, `Moltbot-Origin-Seq`, `Moltbot-Origin-Subject`,
`Moltbot-Consumer`, `Moltbot-Reason` and `Moltbot-Error`, and carries on. A worker reads
the type from the subject's last token and skips the types it does not fold without
decoding them; a token that names no known type is decoded, so every read model
dead-letters an unknown type.

## Event types
"""


def _field_table(payload: type[Any]) -> list[str]:
    hints = get_type_hints(payload)
    fields = payload.__struct_fields__
    defaults = dict(
        zip(
            fields[len(fields) - len(payload.__struct_defaults__) :], payload.__struct_defaults__, strict=True
        )
    )
    rows = ["| field | type | required |", "|---|---|---|"]
    for name in fields:
        type_text = (
            str(hints[name]).replace("typing.", "").replace("domain.events.", "").replace("datetime.", "")
        )
        type_text = type_text.replace("<class '", "").replace("'>", "").replace("|", "\\|")
        required = "yes" if name not in defaults else f"no (default `{json.dumps(_plain(defaults[name]))}`)"
        rows.append(f"| `{name}` | `{type_text}` | {required} |")
    return rows


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def render() -> str:
    codec = EventCodec()
    by_type = {event.type: event for event in examples()}
    out = [INTRO]
    groups: dict[str, list[type[ev.Event]]] = {}
    for cls in ev.EVENT_TYPES:
        groups.setdefault(ev.type_name(cls).split(".")[0], []).append(cls)
    out.append("| type | aggregate | subject |")
    out.append("|---|---|---|")
    for cls in ev.EVENT_TYPES:
        example = by_type[ev.type_name(cls)]
        anchor = example.type.replace(".", "")
        out.append(f"| [`{example.type}`](#{anchor}) | {cls.AGGREGATE} | `{example.subject}` |")
    for noun, classes in groups.items():
        out.append(f"\n## {noun}\n")
        for cls in classes:
            example = by_type[ev.type_name(cls)]
            payload = get_type_hints(cls)["data"]
            out.append(f"### `{example.type}`\n")
            doc = (cls.__doc__ or "").strip()
            if doc and not doc.startswith(("A base", "The envelope")):
                out.append(doc + "\n")
            out.append(f"Aggregate `{cls.AGGREGATE}`, version {cls.VERSION}. Subject: `{example.subject}`  ")
            out.append(f"Dedupe key (`Nats-Msg-Id`): `{dedupe_key(example)}`\n")
            out.extend(_field_table(payload))
            out.append("\n```json")
            out.append(json.dumps(json.loads(codec.encode(example)), indent=2, ensure_ascii=False))
            out.append("```\n")
    return "\n".join(out).rstrip() + "\n"


KINDS_BEGIN = "<!-- kinds: generated by `make docs` from adapters/channels/registry.py -->"
KINDS_END = "<!-- /kinds -->"


def kinds_table() -> str:
    """Every channel kind of the registry: where it runs, how it connects, what it can do."""
    from adapters.channels.registry import KINDS

    def yes(flag: bool) -> str:
        return "yes" if flag else "—"

    out = [
        "| kind | provider | runs on | connect | in | text per message | edits | deletes"
        " | reactions | typing | media | threads |",
        "|---|---|---|---|---|---:|---|---|---|---|---|---|",
    ]
    for entry in KINDS.values():
        c = entry.capabilities
        connect = (
            "OAuth install or body"
            if entry.installer is not None
            else ("body" if entry.connect_body is not None else "made for you")
        )
        inbound = " + ".join(
            part
            for part, present in (("live session", entry.session), ("webhook", entry.webhook))
            if present is not None
        )
        out.append(
            f"| `{entry.kind}` | {entry.provider} | {', '.join(sorted(entry.runs_on))} | {connect}"
            f" | {inbound or _own_routes(entry.runs_on)} | {c.max_text_length:,} | {yes(c.edits)}"
            f" | {yes(c.deletes)} | {yes(c.reactions)} | {yes(c.typing)} | {yes(c.media)}"
            f" | {yes(c.threads)} |"
        )
    return "\n".join(out) + "\n"


def _own_routes(runs_on: frozenset[str]) -> str:
    return "the Personal Bridge's tunnel" if runs_on == {"bridge"} else "the gateway's own routes"


def with_kinds_table(document: str) -> str:
    """``document`` with the text between the kinds markers replaced by :func:`kinds_table`."""
    start, end = document.index(KINDS_BEGIN) + len(KINDS_BEGIN), document.index(KINDS_END)
    return document[:start] + "\n" + kinds_table() + document[end:]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--connectors"]:
        path = Path(sys.argv[2])
        path.write_text(with_kinds_table(path.read_text()))
    else:
        sys.stdout.write(render())
