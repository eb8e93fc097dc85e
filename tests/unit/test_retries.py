"""stamina's retries are logged by the product at debug level, not as stamina's own warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import stamina
import structlog
from stamina.instrumentation import get_on_retry_hooks, set_on_retry_hooks

from moltbot import retries


@pytest.fixture
def configured() -> Iterator[None]:
    """The hook installed, and debug lines let through (an earlier test may have configured
    structlog to drop them, as production does at info level)."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    retries.configure()
    try:
        yield
    finally:
        set_on_retry_hooks(None)  # stamina's defaults again
        structlog.configure(**before)


@pytest.mark.usefixtures("configured")
def test_a_scheduled_retry_is_one_debug_line() -> None:
    assert get_on_retry_hooks() == (retries.log_retry,)
    failures = [ConnectionError("refused")]
    with structlog.testing.capture_logs() as logged:
        for attempt in stamina.retry_context(on=ConnectionError, attempts=2, wait_initial=0, wait_jitter=0):
            with attempt:
                if failures:
                    raise failures.pop()
    assert logged == [
        {
            "event": "retry_scheduled",
            "log_level": "debug",
            "callable": "<context block>",
            "retry_num": 1,
            "wait_for": 0.0,
            "caused_by": "ConnectionError('refused')",
        }
    ]
