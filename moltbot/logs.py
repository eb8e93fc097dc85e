"""structlog set-up: pretty console output in a terminal, JSON lines in production.

Records of the standard library's loggers (uvicorn's, asyncio's, a library's) are rendered
by the same processors, through a handler on the root logger, so every line has one format."""

from __future__ import annotations

import logging
import sys

import structlog

from moltbot.settings import LogFormat

STDLIB_HANDLER = "moltbot-structlog"  # the root logger's handler that renders through structlog
# The HTTP server's loggers speak at the configured level (it started, it stops); other
# libraries' from warnings up (httpx would log every request it makes at info).
SERVER_LOGGERS = ("uvicorn", "litestar")


def configure(log_format: LogFormat, level: str) -> None:
    threshold = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    annotate: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*annotate, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _render_stdlib_records(annotate, renderer)
    logging.getLogger().setLevel(max(threshold, logging.WARNING))
    for name in SERVER_LOGGERS:
        logging.getLogger(name).setLevel(threshold)


def _render_stdlib_records(
    annotate: list[structlog.typing.Processor], renderer: structlog.typing.Processor
) -> None:
    """Put the handler that renders standard-library records as structlog lines on the root
    logger, in place of the one an earlier call put there."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(STDLIB_HANDLER)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*annotate, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if h.get_name() == STDLIB_HANDLER]:
        root.removeHandler(earlier)
    root.addHandler(handler)
