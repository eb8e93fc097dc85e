"""Readable log lines in a terminal, JSON lines otherwise, unless MOLTBOT_LOG_FORMAT says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from moltbot.settings import Settings


@pytest.mark.parametrize(
    ("terminal", "environ", "expected"),
    [
        (True, {}, "console"),
        (False, {}, "json"),
        (True, {"MOLTBOT_LOG_FORMAT": "json"}, "json"),
        (False, {"MOLTBOT_LOG_FORMAT": "console"}, "console"),
    ],
)
def test_log_format(
    terminal: bool, environ: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert Settings.load(environ, data_dir=str(tmp_path)).log_format == expected


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MOLTBOT_LOG_FORMAT"):
        Settings.load({"MOLTBOT_LOG_FORMAT": "xml"}, data_dir=str(tmp_path))
