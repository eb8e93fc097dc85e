"""The ``attributedBody`` decoder against blobs shaped as Messages writes them."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.channels.imessage.typedstream import decode_attributed_body
from tests.fakes.imessage_typedstream import HEADER, encode_attributed_body

LONG_ASCII = "x" * 200  # 0x81 + u16 length
HUGE = "y" * 70_000  # over 65535 bytes: 0x82 + u32 length
EMOJI = "🙂👍🏽‼️" * 24  # 192 UTF-16 code units, more bytes than that in UTF-8


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        "",
        "héllo wörld",
        EMOJI,
        LONG_ASCII,
        "é" * 64,
        HUGE,
        "\ufffc",
        "look \ufffc here",
        "line\nbreak\t",
    ],
)
def test_round_trip(text: str) -> None:
    assert decode_attributed_body(encode_attributed_body(text)) == text


@given(st.text())
@example("\U0010ffff" * 40)
def test_round_trip_any_text(text: str) -> None:
    assert decode_attributed_body(encode_attributed_body(text)) == text


@pytest.mark.parametrize(
    ("text", "length_bytes"),
    [
        ("a" * 127, b"\x7f"),
        ("a" * 128, b"\x81\x80\x00"),
        (LONG_ASCII, b"\x81\xc8\x00"),
        (HUGE, b"\x82" + (70_000).to_bytes(4, "little")),
    ],
)
def test_length_prefixes_as_the_archiver_writes_them(text: str, length_bytes: bytes) -> None:
    assert b"NSString\x01\x94\x84\x01+" + length_bytes + text.encode() in encode_attributed_body(text)


def test_blob_shape() -> None:
    blob = encode_attributed_body("hi")
    assert blob.startswith(HEADER + b"\x84\x01@\x84\x84\x84\x12NSAttributedString\x00")
    # the run: dictionary 1, two UTF-16 units; then the part-index dictionary, NSNumber 0
    assert b"\x84\x02iI\x01\x02\x92\x84\x84\x84\x0cNSDictionary\x00" in blob
    assert b"\x1d__kIMMessagePartAttributeName\x86" in blob
    assert blob.endswith(b"\x84\x01*\x84\x99\x99\x00\x86\x86\x86")


def test_mutable_attributed_string() -> None:
    text = "mutable ✓"
    utf8 = text.encode()
    blob = (
        HEADER + b"\x84\x01@\x84\x84\x84\x19NSMutableAttributedString\x00\x84\x84\x12NSAttributedString\x00"
        b"\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x0fNSMutableString\x01\x84\x84\x08NSString\x01\x95"
        b"\x84\x01+" + bytes([len(utf8)]) + utf8 + b"\x86\x86"
    )
    assert decode_attributed_body(blob) == text


@pytest.mark.parametrize(
    "blob",
    [
        None,
        b"",
        b"\x04\x0bstreamtyped",
        b"no class names here at all",
        HEADER + b"\x84\x84\x08NSString\x01\x94\x84\x01+\x85",  # a nil string
        HEADER + b"\x84\x84\x08NSString\x01\x94\x84\x01+\x83\x00\x00\x00\x00",  # a float tag: no length
        HEADER + b"\x84\x84\x08NSString\x01\x94\x84\x01+\x10abc",  # says 16 bytes, has 3
        HEADER + b"\x84\x84\x08NSString\x01\x94\x84\x01+\x82\xff\xff",  # u32 length cut short
        b"NSString",
    ],
)
def test_no_string_is_none(blob: bytes | None) -> None:
    assert decode_attributed_body(blob) is None


def test_invalid_utf8_is_replaced_not_raised() -> None:
    blob = HEADER + b"\x84\x84\x08NSString\x01\x94\x84\x01+\x03a\xffb"
    assert decode_attributed_body(blob) == "a\ufffdb"


@given(st.binary(max_size=400))
def test_never_raises_on_garbage(blob: bytes) -> None:
    decode_attributed_body(blob)


@given(st.text(max_size=60), st.data())
def test_truncated_blob_gives_all_or_nothing(text: str, data: st.DataObject) -> None:
    blob = encode_attributed_body(text)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    assert decode_attributed_body(blob[:cut]) in (None, text)
