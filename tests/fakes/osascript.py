"""A fake ``/usr/bin/osascript`` for tests on Linux.

:func:`install` writes an executable launcher (shebang: this test run's Python) that runs
this module as a program. The program appends its whole argv (``-e`` lines, then the
script's arguments) as one JSON line to the file named by ``FAKE_OSASCRIPT_LOG``, then
succeeds, or fails as the real one does when ``FAKE_OSASCRIPT_FAIL`` says so:
``1743`` (Automation permission missing), ``1728`` (no such chat), ``other`` (any other
execution error), ``hang`` (never answers).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

LOG_ENV = "FAKE_OSASCRIPT_LOG"
FAIL_ENV = "FAKE_OSASCRIPT_FAIL"

FAILURES = {
    "1743": "87:130: execution error: Not authorized to send Apple events to Messages. (-1743)",
    "1728": '120:170: execution error: Messages got an error: Can\u2019t get chat id "{target}". (-1728)',
    "other": "120:170: execution error: Messages got an error: Application isn\u2019t running. (-600)",
}


def install(directory: Path) -> Path:
    """Write the fake as ``directory/osascript`` and return its path."""
    from tests.fakes.programs import install_program  # not at the top: the program runs without tests/

    return install_program(directory, "osascript", __file__)


def recorded(log: Path) -> list[list[str]]:
    """Every argv the fake was called with, oldest first."""
    from tests.fakes.programs import recorded_argv

    return recorded_argv(log)


def script_arguments(argv: list[str]) -> list[str]:
    """The arguments after the ``-e`` lines: what the script's ``argv`` holds."""
    index = 0
    while index < len(argv) and argv[index] == "-e":
        index += 2
    return argv[index:]


def main(argv: list[str]) -> int:
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps(argv) + "\n")
    failure = os.environ.get(FAIL_ENV, "")
    if failure == "hang":
        time.sleep(3600)
    if failure in FAILURES:
        arguments = script_arguments(argv)
        sys.stderr.write(FAILURES[failure].format(target=arguments[0] if arguments else "") + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
