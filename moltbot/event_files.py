"""Event files: JSON lines, one envelope per line — the export, backup and migration format.

An exported line is the stored envelope with its EVENTS sequence added as ``seq``.
Import validates every line before appending any: a file with an invalid line imports
nothing (unless invalid lines are explicitly skipped), and each problem is reported with
its line number.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import IO

import msgspec

from domain.codec import EventCodec
from domain.errors import InvalidEvent
from domain.events import Event
from domain.ports import EventStore, StoredRecord


class LineError(msgspec.Struct, frozen=True):
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.detail}"


class ImportReport(msgspec.Struct, frozen=True):
    lines: int
    imported: int
    duplicates: int
    invalid: list[LineError]


def export_line(record: StoredRecord) -> bytes:
    """The stored bytes with ``"seq"`` spliced in first, so the envelope stays byte-exact."""
    data = record.data
    if data.startswith(b"{") and data[1:2] != b"}":
        return b'{"seq":%d,' % record.seq + data[1:] + b"\n"
    return msgspec.json.encode({"seq": record.seq, "raw": data.decode("utf-8", "replace")}) + b"\n"


async def export_events(store: EventStore, out: IO[bytes], *, subject: str, since: int) -> AsyncIterator[int]:
    """Write every stored event from ``since`` on ``subject``; yields each sequence written."""
    async for record in store.read(since=since, subject=subject, batch=2000):
        out.write(export_line(record))
        yield record.seq


def parse_lines(lines: Iterable[bytes], codec: EventCodec) -> tuple[list[Event], list[LineError]]:
    events: list[Event] = []
    errors: list[LineError] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(codec.decode(line))
        except InvalidEvent as exc:
            errors.append(LineError(number, exc.reason, exc.detail))
    return events, errors


async def import_events(
    store: EventStore,
    lines: Iterable[bytes],
    *,
    skip_invalid: bool = False,
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate all lines, then append the events in file order (all or, on error, none)."""
    materialized = list(lines)
    events, errors = parse_lines(materialized, store.codec)
    line_count = sum(1 for line in materialized if line.strip())
    if errors and not skip_invalid:
        return ImportReport(line_count, 0, 0, errors)
    imported = duplicates = 0
    for start in range(0, len(events), chunk):
        results = await store.append_many(events[start : start + chunk])
        duplicates += sum(1 for r in results if r.duplicate)
        imported += sum(1 for r in results if not r.duplicate)
        if progress:
            progress(len(results))
    return ImportReport(line_count, imported, duplicates, errors)
