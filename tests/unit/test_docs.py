from __future__ import annotations

from pathlib import Path

from domain.events import BY_TYPE
from moltbot.docs import render, with_kinds_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_events_doc_is_generated_from_the_code() -> None:
    assert (DOCS / "events.md").read_text() == render(), "docs/events.md is stale: run `make docs`"


def test_every_event_type_is_documented_with_an_example() -> None:
    text = (DOCS / "events.md").read_text()
    for event_type in BY_TYPE:
        assert f"### `{event_type}`" in text
        assert f'"type": "{event_type}"' in text


def test_connectors_doc_lists_every_kind_of_the_registry() -> None:
    text = (DOCS / "connectors.md").read_text()
    assert text == with_kinds_table(text), "the kinds table in docs/connectors.md is stale: run `make docs`"
    kinds = ("telegram", "slack", "discord", "webchat", "whatsapp", "whatsapp_business", "imessage", "signal")
    kinds += ("teams",)
    assert all(f"| `{kind}` |" in text for kind in kinds)
