"""`make bench`: run the benchmarks and write bench/report.md, bench/report.json and
bench/scaling.png. `make bench BENCH_ARGS="--events 1e6"` plots 10k -> 1M events."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import structlog

from bench import agent, backbone, memory, realtime
from bench.stages import Stages

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = (10_000, 30_000, 100_000)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(float(part)) for part in text.split(",") if part.strip())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--events", type=float, default=100_000, help="event log size, e.g. 1e5 (default) or 1e6"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="log sizes at which the key rates are also measured, for bench/scaling.png"
        " (default 1e4,3e4,1e5; the --events size is always added, larger ones are skipped)",
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak RSS of each role (roles as processes)"
    )
    parser.add_argument(
        "--realtime-events", type=int, default=20_000, help="events replayed to SSE/WebSocket clients"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder for report.md, report.json and scaling.png"
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    started = time.perf_counter()

    def progress(step: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {step}", file=sys.stderr, flush=True)

    events = int(args.events)
    with tempfile.TemporaryDirectory(prefix="moltbot-bench-") as work:
        result = asyncio.run(
            backbone.run(
                events,
                Path(work),
                progress,
                sizes=args.sizes,
                at_full_size=None if args.no_memory else memory.run,
            )
        )
        live = asyncio.run(realtime.run(min(events, args.realtime_events), Path(work), progress))
        agent_steps = Stages()
        runs = asyncio.run(agent.run(Path(work), progress, agent_steps))
    result["figures"] += [msgspec.to_builtins(f) | {"ratio": f.ratio} for f in live + runs]
    result["stages"]["agent"] = agent_steps.rows(agent.LATENCY_SAMPLES, "trigger")
    args.out.mkdir(parents=True, exist_ok=True)
    if len(result["scaling"]) > 1:
        backbone.plot_scaling(result["scaling"], args.out / "scaling.png")
        result["plot"] = "scaling.png"
    report = backbone.render(result)
    (args.out / "report.md").write_text(report)
    (args.out / "report.json").write_text(backbone.as_json(result))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
