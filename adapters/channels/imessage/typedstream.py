"""The text of a chat.db ``attributedBody``: an ``NSAttributedString`` in Apple's typedstream.

Modern Messages rows often leave ``message.text`` NULL and keep the words only in
``attributedBody``, an NSArchiver ("streamtyped") blob. Its string is the first
``NSString`` object of the archive: after the class name come the class version, the
superclass reference and the ``+`` type string (``01 94 84 01 2b`` in a plain blob,
``01 95 84 01 2b`` in a mutable one), then the UTF-8 length and the bytes. The length is
one byte below ``0x80``, else ``0x81`` + u16 LE or ``0x82`` + u32 LE.

A byte scan, not a full archive reader: it reads every blob Messages writes (the rest of
the archive, the attribute runs, does not matter for the text) and it never raises on a
corrupt or truncated one.
"""

from __future__ import annotations

_CLASS_NAME = b"NSString"
_PLUS_TYPE = b"\x84\x01+"  # a new shared type string "+": an unshared string follows
_PLUS_WINDOW = 8  # version + superclass reference fit well inside this many bytes
_FIXED_SKIP = 5  # version, superclass reference, 84 01 2b: the usual distance to the length
_U16 = 0x81
_U32 = 0x82


def _length_at(blob: bytes, at: int) -> tuple[int, int] | None:
    """The string length written at ``at`` and where the string starts (None: no length)."""
    if at >= len(blob):
        return None
    head = blob[at]
    if head < 0x80:
        return head, at + 1
    width = {_U16: 2, _U32: 4}.get(head)
    if width is None or at + 1 + width > len(blob):
        return None  # nil (0x85), a float tag or a reference: no string here
    return int.from_bytes(blob[at + 1 : at + 1 + width], "little"), at + 1 + width


def decode_attributed_body(blob: bytes | None) -> str | None:
    """The message text held in an ``attributedBody`` blob; None when it holds none.

    Undecodable UTF-8 is replaced (U+FFFD), never an error; U+FFFC (where an attachment
    sits in the text) is kept for the caller to drop.
    """
    if not blob:
        return None
    try:
        data = bytes(blob)
    except (TypeError, ValueError):
        return None
    name_at = data.find(_CLASS_NAME)
    if name_at < 0:
        return None
    after_name = name_at + len(_CLASS_NAME)
    plus_at = data.find(_PLUS_TYPE, after_name, after_name + _PLUS_WINDOW)
    length_at = plus_at + len(_PLUS_TYPE) if plus_at >= 0 else after_name + _FIXED_SKIP
    found = _length_at(data, length_at)
    if found is None:
        return None
    length, start = found
    if start + length > len(data):
        return None  # truncated blob: better no text than a wrong half
    return data[start : start + length].decode("utf-8", errors="replace")
