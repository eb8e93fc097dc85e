"""Errors raised by the NATS adapters."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of event store errors."""


class ConcurrencyConflict(EventStoreError):
    """Another writer appended to the aggregate since ``expected_seq`` was read."""

    def __init__(self, aggregate: str, expected_seq: int, actual_seq: int | None) -> None:
        super().__init__(f"{aggregate}: expected last sequence {expected_seq}, stream has {actual_seq}")
        self.aggregate = aggregate
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class StreamConfigError(Exception):
    """streams.yaml is not a valid stream file."""
