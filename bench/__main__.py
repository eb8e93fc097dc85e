"""`make bench`: run the benchmarks and write bench/report.md and bench/report.json."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import structlog

from bench import agent, backbone, realtime

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--events", type=float, default=200_000, help="event log size, e.g. 2e5 (default) or 1e6"
    )
    parser.add_argument(
        "--realtime-events", type=int, default=20_000, help="events replayed to SSE/WebSocket clients"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder for report.md and report.json")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    started = time.perf_counter()

    def progress(step: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {step}", file=sys.stderr, flush=True)

    events = int(args.events)
    with tempfile.TemporaryDirectory(prefix="moltbot-bench-") as work:
        result = asyncio.run(backbone.run(events, Path(work), progress))
        live = asyncio.run(realtime.run(min(events, args.realtime_events), Path(work), progress))
        runs = asyncio.run(agent.run(Path(work), progress))
    result["figures"] += [msgspec.to_builtins(f) | {"ratio": f.ratio} for f in live + runs]
    args.out.mkdir(parents=True, exist_ok=True)
    report = backbone.render(result)
    (args.out / "report.md").write_text(report)
    (args.out / "report.json").write_text(backbone.as_json(result))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
