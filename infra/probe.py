"""Health probe of a Moltbot Cloud container, whatever role it runs (the image's HEALTHCHECK,
and the exec probes of the Kubernetes Deployments whose role serves no HTTP).

    python /opt/moltbot/probe.py            # the check for the role PID 1 runs
    python /opt/moltbot/probe.py http       # GET /healthz on the gateway's port answers 2xx
    python /opt/moltbot/probe.py nats       # the process holds a connection to a nats-server
    python /opt/moltbot/probe.py postgres   # ... to PostgreSQL

Which check a role gets: ``gateway`` serves ``/healthz`` (answered once it has connected to
NATS and PostgreSQL); ``billing`` keeps a PostgreSQL connection open (its pool keeps one);
every other long-running role keeps its NATS connection for life and reconnects without end,
so an established TCP connection to a port of ``MOLTBOT_NATS_URL`` says it is connected now.
A one-off command (``streams apply``, ``projections status``) has nothing to check: healthy.

Exit 0: healthy; 1: not, with the reason on stderr. Standard library only (it must start in a
few milliseconds, every few seconds), reading the same environment as the role.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

NATS_ROLES = frozenset({"projections", "agent", "outbox", "notifier", "connector"})
NATS_PORT, POSTGRES_PORT, GATEWAY_PORT = 4222, 5432, 8000
ESTABLISHED = "01"  # the TCP state in /proc/net/tcp
TCP_TABLES = (Path("/proc/self/net/tcp"), Path("/proc/self/net/tcp6"))


def role_of(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The ``moltbot`` command a process runs, and its arguments, from its argv (PID 1's
    ``python /opt/moltbot/venv/bin/moltbot gateway --host 0.0.0.0``); ("", []) if none."""
    words = list(argv)
    starts = [n for n, word in enumerate(words) if Path(word).name == "moltbot"]
    if not starts:
        return "", []
    rest = words[starts[0] + 1 :]
    while rest and rest[0].startswith("-"):  # options before the command: --data DIR
        rest = rest[1:] if "=" in rest[0] else rest[2:]
    return (rest[0], rest[1:]) if rest else ("", [])


def check_for(role: str) -> str | None:
    """Which check a role gets: "http", "nats", "postgres", or None (nothing to check)."""
    if role == "gateway":
        return "http"
    if role == "billing":
        return "postgres"
    return "nats" if role in NATS_ROLES else None


def gateway_port(arguments: Sequence[str], environ: Mapping[str, str]) -> int:
    """Where the gateway listens: ``--port N``, else MOLTBOT_GATEWAY_PORT, else 8000."""
    for n, word in enumerate(arguments):
        if word == "--port" and n + 1 < len(arguments):
            return int(arguments[n + 1])
        if word.startswith("--port="):
            return int(word.split("=", 1)[1])
    return int(environ.get("MOLTBOT_GATEWAY_PORT") or GATEWAY_PORT)


def server_ports(urls: str | None, default: int) -> set[int]:
    """The ports of a comma-separated server list (``tls://nats-1:4222,nats://nats-2``) or of a
    PostgreSQL URL (``postgresql://u:p@db:5433/x``, also ``host=db port=5433``)."""
    if not urls:
        return {default}
    if "://" not in urls:  # a libpq key=value string
        ports = {int(word.split("=", 1)[1]) for word in urls.split() if word.startswith("port=")}
        return ports or {default}
    ports = set()
    for url in urls.split(","):
        url = url.strip()
        netloc = urlsplit(url).netloc if "://" in url else url.split("/", 1)[0]
        for host in netloc.rpartition("@")[2].split(","):
            port = host.rpartition(":")[2] if not host.endswith("]") and ":" in host else ""
            ports.add(int(port) if port.isdigit() else default)
    return ports


def connected_ports(tables: Iterable[str]) -> set[int]:
    """Remote ports of the established TCP connections in /proc/net/tcp{,6} text."""
    ports = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == ESTABLISHED:
                ports.add(int(fields[2].rpartition(":")[2], 16))
    return ports


def _tables() -> list[str]:
    return [path.read_text() for path in TCP_TABLES if path.exists()]


def probe(check: str, arguments: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """Run one check; None when healthy, else why not."""
    if check == "http":
        url = f"http://127.0.0.1:{gateway_port(arguments, environ)}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                return None if 200 <= answer.status < 300 else f"{url} answered {answer.status}"
        except OSError as exc:
            return f"{url}: {exc}"
    wanted = {
        "nats": server_ports(environ.get("MOLTBOT_NATS_URL"), NATS_PORT),
        "postgres": server_ports(environ.get("MOLTBOT_DATABASE_URL"), POSTGRES_PORT),
    }[check]
    if wanted & connected_ports(_tables()):
        return None
    return f"no established connection to {check} (port {', '.join(map(str, sorted(wanted)))})"


def main(argv: Sequence[str]) -> int:
    role, arguments = role_of(Path("/proc/1/cmdline").read_text().split("\0"))
    check = argv[0] if argv else check_for(role)
    if check not in (None, "http", "nats", "postgres"):
        print("usage: probe.py [http|nats|postgres]", file=sys.stderr)
        return 2
    problem = probe(check, arguments, os.environ) if check else None
    if problem:
        print(f"unhealthy ({role or 'no role'}): {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
