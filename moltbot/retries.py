"""stamina's retries in the logs: every retry loop of the product logs what it restarts and
why itself (``consumer_restarting``, ``projection_worker_restarting``, ``events_reconnecting``,
...), so stamina's own hook, a ``stamina.retry_scheduled`` warning, would only repeat it.
Its retries are logged here at debug level instead, with the wait stamina chose."""

from __future__ import annotations

import structlog
from stamina.instrumentation import RetryDetails, set_on_retry_hooks


def log_retry(details: RetryDetails) -> None:
    # Looked up at each retry (they are rare): a logger cached at import would keep whatever
    # configuration was current when it was first used.
    structlog.get_logger("stamina").debug(
        "retry_scheduled",
        callable=details.name,
        retry_num=details.retry_num,
        wait_for=round(details.wait_for, 2),
        caused_by=repr(details.caused_by),
    )


def configure() -> None:
    """Replace stamina's default instrumentation (once, when the process starts)."""
    set_on_retry_hooks([log_retry])
