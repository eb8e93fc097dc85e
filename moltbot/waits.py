"""Where the tasks of the running event loop wait: for a stop that takes too long (`moltbot
up` logs it) and for tests that find a role still running after it was cancelled."""

from __future__ import annotations

import asyncio
from typing import Any


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where ``task`` waits: each coroutine or generator frame down its await chain, outermost
    first, as ``file:line function``."""
    frames: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = next(
            (f for f in (getattr(awaited, a, None) for a in ("cr_frame", "gi_frame", "ag_frame")) if f), None
        )
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = next(
            (n for n in (getattr(awaited, a, None) for a in ("cr_await", "gi_yieldfrom", "ag_await")) if n),
            None,
        )
    return frames


def waiting_tasks() -> dict[str, str]:
    """Every task of the running loop but the caller's, by name: the innermost frame it waits in."""
    current = asyncio.current_task()
    return {
        task.get_name(): (await_chain(task) or ["?"])[-1]
        for task in asyncio.all_tasks()
        if task is not current
    }
