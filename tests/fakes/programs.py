"""Fake programs the product starts (``osascript``, ``signal-cli``): a launcher with this test
run's Python in its shebang that runs the fake's module, and the argv log each fake keeps."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path


def install_program(directory: Path, name: str, module_file: str) -> Path:
    """Write ``directory/name``, an executable that runs ``module_file`` as a program."""
    directory.mkdir(parents=True, exist_ok=True)
    launcher = directory / name
    program = str(Path(module_file).resolve())
    launcher.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({program!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return launcher


def recorded_argv(log: Path) -> list[list[str]]:
    """Every argv a fake appended to ``log`` (one JSON line each), oldest first."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
