"""Every log line in one format: the standard library's records (uvicorn's, Litestar's)
are rendered by structlog's processors, as moltbot's own lines are."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
import structlog

from gateway.app import create_app
from gateway.context import GatewayContext
from moltbot import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures logging: the set-up is put back afterwards."""
    root = logging.getLogger()
    loggers = [root, *map(logging.getLogger, logs.SERVER_LOGGERS)]
    levels, config = [logger.level for logger in loggers], structlog.get_config()
    yield
    for handler in [h for h in root.handlers if h.get_name() == logs.STDLIB_HANDLER]:
        root.removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    structlog.configure(**config)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The JSON lines written to stderr."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_a_uvicorn_record_comes_out_as_a_structlog_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    structlog.get_logger().info("gateway_listening", url="http://127.0.0.1:8000")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    ours, uvicorns = _lines(capsys)
    assert uvicorns == {
        "event": "Started server process [42]",
        "level": "info",
        "timestamp": uvicorns["timestamp"],
        "logger": "uvicorn.error",
    }
    assert ours.keys() - {"url"} == uvicorns.keys() - {"logger"}


def test_the_gateway_app_leaves_the_structlog_handler_in_place(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    create_app(GatewayContext(store=cast(Any, None), pool=cast(Any, None), tokens=cast(Any, None)))
    logging.getLogger("uvicorn.error").error("Exception in ASGI application")
    [line] = _lines(capsys)
    assert (line["event"], line["level"], line["logger"]) == (
        "Exception in ASGI application",
        "error",
        "uvicorn.error",
    )


@pytest.mark.parametrize(
    ("level", "logger", "dropped", "kept"),
    [
        ("warning", "uvicorn.error", "Waiting for application startup.", "ASGI 'lifespan' unsupported."),
        # Other libraries speak from warnings up: httpx logs every request at info.
        ("info", "httpx", 'HTTP Request: GET http://127.0.0.1:8000/v1/me "HTTP/1.1 200 OK"', "a warning"),
    ],
)
def test_records_below_their_level_are_dropped(
    capsys: pytest.CaptureFixture[str], level: str, logger: str, dropped: str, kept: str
) -> None:
    logs.configure("json", level)
    logging.getLogger(logger).info(dropped)
    logging.getLogger(logger).warning(kept)
    [line] = _lines(capsys)
    assert (line["event"], line["level"], line["logger"]) == (kept, "warning", logger)
