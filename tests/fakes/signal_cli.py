"""A fake ``signal-cli`` program for the bridge to start (``MOLTBOT_SIGNAL_CLI``).

:func:`install` writes an executable launcher (shebang: this test run's Python) that runs
this module as a program. The program appends its argv as one JSON line to the file named by
``FAKE_SIGNAL_CLI_LOG``, then is ``signal-cli jsonRpc``: it joins its standard input and
output to the fake daemon's TCP port (``FAKE_SIGNAL_CLI_PORT``, tests/fakes/signal_rpc.py),
and ends when its input closes, as the real one does. With ``FAKE_SIGNAL_CLI_JAVA=17`` it
fails as signal-cli 0.13 does on a Java too old for it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

LOG_ENV = "FAKE_SIGNAL_CLI_LOG"
PORT_ENV = "FAKE_SIGNAL_CLI_PORT"
JAVA_ENV = "FAKE_SIGNAL_CLI_JAVA"

OLD_JAVA = (
    "Error: LinkageError occurred while loading main class org.asamk.signal.Main\n"
    "\tjava.lang.UnsupportedClassVersionError: org/asamk/signal/Main has been compiled by a more recent"
    " version of the Java Runtime (class file version 65.0), this version of the Java Runtime only"
    " recognizes class file versions up to 61.0\n"
)


def install(directory: Path) -> Path:
    """Write the fake as ``directory/signal-cli`` and return its path."""
    from tests.fakes.programs import install_program  # not at the top: the program runs without tests/

    return install_program(directory, "signal-cli", __file__)


def recorded(log: Path) -> list[list[str]]:
    """Every argv the fake was started with, oldest first."""
    from tests.fakes.programs import recorded_argv

    return recorded_argv(log)


def _main() -> int:
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as log:
        log.write(json.dumps(sys.argv[1:]) + "\n")
    if os.environ.get(JAVA_ENV) == "17":
        sys.stderr.write(OLD_JAVA)
        return 1
    daemon = socket.create_connection(("127.0.0.1", int(os.environ[PORT_ENV])))

    def forward_input() -> None:
        for line in sys.stdin.buffer:
            daemon.sendall(line)
        daemon.shutdown(socket.SHUT_WR)  # input closed: the daemon ends this connection

    threading.Thread(target=forward_input, daemon=True).start()
    while chunk := daemon.recv(65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
