"""A writer of ``attributedBody`` blobs as Messages stores them (tests only).

It builds, byte for byte, the archive Apple's NSArchiver writes for a one-run
``NSAttributedString``: the ``streamtyped`` header, the root object with its class chain
(``NSAttributedString`` → ``NSObject``), the ``NSString`` (``NSString`` → a reference to
``NSObject``) holding the UTF-8 text, the attribute run ``iI`` = (dictionary 1, length in
UTF-16 code units) and the ``NSDictionary`` {``__kIMMessagePartAttributeName``:
``NSNumber`` 0}. Shared strings and objects repeat as references into the archiver's two
tables, as the real archiver does (reference ``n`` is the byte ``0x92 + n``).
"""

from __future__ import annotations

HEADER = b"\x04\x0bstreamtyped\x81\xe8\x03"  # version 4, little-endian, system version 1000
NEW = b"\x84"
NIL = b"\x85"
END = b"\x86"
PART_KEY = "__kIMMessagePartAttributeName"


def signed(value: int) -> bytes:
    """A typedstream integer: one byte when it fits outside the tag range, else 0x81 + i16 or
    0x82 + i32 (little-endian) — the archiver's own choice for lengths and counts too."""
    if -128 <= value <= 127 and not -128 <= value <= -111:
        return bytes([value & 0xFF])
    if -0x8000 <= value <= 0x7FFF:
        return b"\x81" + value.to_bytes(2, "little", signed=True)
    return b"\x82" + value.to_bytes(4, "little", signed=True)


def unsigned(value: int) -> bytes:
    """A length: below 0x80 one byte, else 0x81 + u16 (to 0x7fff) or 0x82 + u32."""
    if value < 0x80:
        return bytes([value])
    if value <= 0x7FFF:
        return b"\x81" + value.to_bytes(2, "little")
    return b"\x82" + value.to_bytes(4, "little")


def ref(index: int) -> bytes:
    return signed(index - 110)


def shared(raw: bytes) -> bytes:
    """A shared string written for the first time."""
    return NEW + unsigned(len(raw)) + raw


def encode_attributed_body(text: str) -> bytes:
    """The ``attributedBody`` Messages writes for ``text`` (one run, part 0).

    Shared strings: 0 ``@``, 1 ``NSAttributedString``, 2 ``NSObject``, 3 ``NSString``,
    4 ``+``, 5 ``iI``, 6 ``NSDictionary``, 7 ``i``, 8 ``NSNumber``, 9 ``NSValue``, 10 ``*``.
    Objects: 0 the attributed string, 1 its class, 2 ``NSObject``, 3 the string, 4 its
    class, 5 the dictionary, 6 its class, 7 the key, 8 the number, 9/10 its classes,
    11 the C string ``i``.
    """
    utf8 = text.encode("utf-8")
    utf16_units = len(text.encode("utf-16-le")) // 2
    string = (
        NEW  # object 3: the NSString
        + NEW + shared(b"NSString") + signed(1) + ref(2)  # class NSString v1, superclass NSObject
        + shared(b"+") + unsigned(len(utf8)) + utf8
        + END
    )  # fmt: skip
    key = NEW + ref(4) + ref(4) + unsigned(len(PART_KEY)) + PART_KEY.encode("ascii") + END
    number = (
        NEW  # object 8: the NSNumber
        + NEW + shared(b"NSNumber") + signed(0)
        + NEW + shared(b"NSValue") + signed(0) + ref(2)
        + shared(b"*") + NEW + ref(7)  # the objCType "i" as a C string (object 11)
        + ref(7) + signed(0)  # type "i", value 0
        + END
    )  # fmt: skip
    dictionary = (
        NEW  # object 5: the NSDictionary
        + NEW + shared(b"NSDictionary") + signed(0) + ref(2)
        + shared(b"i") + signed(1)  # one pair
        + ref(0) + key
        + ref(0) + number
        + END
    )  # fmt: skip
    return (
        HEADER
        + shared(b"@")
        + NEW  # object 0: the attributed string
        + NEW + shared(b"NSAttributedString") + signed(0)
        + NEW + shared(b"NSObject") + signed(0) + NIL
        + ref(0) + string
        + shared(b"iI") + signed(1) + unsigned(utf16_units)  # run: dictionary 1, its length
        + ref(0) + dictionary
        + END
    )  # fmt: skip
