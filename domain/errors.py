"""Errors raised by pure domain code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises."""


class InvalidToken(DomainError):
    """A subject token is empty or contains a dot, a space or a wildcard."""

    def __init__(self, field: str, value: str) -> None:
        super().__init__(
            f"{field}={value!r} cannot be a subject token: use letters, digits, '_' or '-' "
            "(no dots, spaces, '*' or '>')"
        )
        self.field = field
        self.value = value


class InvalidEvent(DomainError):
    """Bytes that do not decode to a known, valid event.

    ``reason`` is a short machine code (``malformed``, ``unknown_type``, ``invalid``,
    ``unsupported_version``) used as the last token of the dead-letter subject.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
