"""U+0000, which PostgreSQL text cannot hold, becomes U+FFFD in JSON event bytes, and only it."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from domain.text import has_nul, replace_nul

# Backslashes, the letters of the escape and NUL itself, so escaped look-alikes turn up often.
tricky = st.text(st.sampled_from(["\\", "u", "0", "\x00", "a", '"', "\ufffd"]), max_size=40)


@given(tricky)
def test_nul_becomes_the_replacement_character_and_nothing_else_changes(text: str) -> None:
    raw = msgspec.json.encode({"text": text, "sender": {"name": text}})
    assert json.loads(replace_nul(raw)) == {
        "text": text.replace("\x00", "\ufffd"),
        "sender": {"name": text.replace("\x00", "\ufffd")},
    }
    assert has_nul(raw) == ("\x00" in text)


def test_an_escaped_backslash_before_u0000_is_ordinary_text() -> None:
    raw = json.dumps({"text": "C strings end in \\u0000"}).encode()
    assert raw == b'{"text": "C strings end in \\\\u0000"}'
    assert not has_nul(raw)
    assert replace_nul(raw) is raw
