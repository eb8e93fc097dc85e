"""Where a measured path spends its time: the wall time spent inside named steps of the
product, gathered in the same run as the figure by wrapping the product's own functions
for the duration of one measurement (a handful of calls per batch or per run, so the
wrappers cost next to nothing).

Steps overlap when they nest or run concurrently; read each as "time spent waiting in
or working on this step", per unit of the measurement (one trigger, one event)."""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Step = tuple[Any, str, str]  # (module or class, attribute, label)


class Stages:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def watching(self, steps: Sequence[Step]) -> Iterator[Stages]:
        """Time every call of each step's function while the block runs."""
        originals = [(owner, name, getattr(owner, name)) for owner, name, _ in steps]
        try:
            for (owner, name, original), (_, _, label) in zip(originals, steps, strict=True):
                setattr(owner, name, self.timed(original, label))
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)

    def timed(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        """``function`` (a coroutine function), each call timed under ``label``."""
        spent = self.seconds[label]

        @functools.wraps(function)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

        return timed

    def rows(self, per: float, unit: str) -> list[dict[str, Any]]:
        """Each step: calls, median call, and total time per ``per`` units (e.g. triggers)."""
        return [
            {
                "step": label,
                "calls": len(spent),
                "median_ms": statistics.median(spent) * 1000,
                "per": unit,
                "ms_per": sum(spent) * 1000 / per,
            }
            for label, spent in self.seconds.items()
            if spent
        ]


def render(title: str, intro: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"### {title}", "", intro, ""]
    lines += [f"| step | calls | median call | per {rows[0]['per']} |", "|---|---:|---:|---:|"]
    for row in rows:
        per = row["ms_per"]
        per_text = f"{per:.2f} ms" if per >= 0.01 else f"{per * 1000:.1f} µs"
        lines.append(f"| {row['step']} | {row['calls']:,} | {row['median_ms']:.2f} ms | {per_text} |")
    return lines
