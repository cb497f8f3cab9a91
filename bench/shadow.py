"""Shadow challenger cost: the Lambda handler's p50/p99 with shadowing at 100 % vs off.

``python -m bench.shadow [--artifacts DIR]``. Builds, in this process, two handlers on the same
artifact folder with a challenger beside it (a copy of the champion's files under its own model
version): one with ``SHADOW_SAMPLE_RATE=0``, one with ``1``. Rounds alternate between them so
background load hits both alike; each round times ``handler(event, context)`` for a single-loan
``POST /predict`` (API Gateway HTTP API event). It also checks that both answer the same bytes.
Budget: p99 with shadowing within 15 % of p99 without. A benchmark, not a test: figures from a
loaded machine say so (load average printed). The figures go to the "shadow" block of
``bench/results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.results_file import run_facts, write_block
from tests.support.artifacts import copy_as_challenger
from tests.support.loans import TYPICAL_LOAN
from tests.support.paths import LAMBDA_ROOT, REPO_ROOT

DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"
BUDGET_P99_RATIO = 1.15


def _event() -> dict[str, Any]:
    from tests.support.events import http_api_event

    event = http_api_event("/predict", TYPICAL_LOAN)
    event["headers"]["x-request-id"] = "bench-shadow"
    return event


def _handler(artifacts: Path, rate: float) -> Any:
    if str(LAMBDA_ROOT) not in sys.path:
        sys.path.insert(0, str(LAMBDA_ROOT))
    from loan_service.application import build_service, create_app
    from loan_service.lambda_adapter import build_lambda_handler
    from loan_service.settings import Settings

    settings = Settings(artifact_dir=artifacts, shadow_sample_rate=rate, mlflow_tracking_uri=None)
    service = build_service(settings, LAMBDA_ROOT)  # logs to stdout, as on Lambda
    return build_lambda_handler(create_app(settings, service=service), service), service


@contextlib.contextmanager
def _fd1_to(sink: io.TextIOBase) -> Iterator[None]:
    saved = os.dup(1)
    os.dup2(sink.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _percentiles_us(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def measure(artifacts: Path, rounds: int, per_round: int) -> dict[str, Any]:
    from tests.support.lambda_context import FakeLambdaContext

    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as scratch:
        folder = Path(scratch) / "artifacts"
        shutil.copytree(artifacts, folder, ignore=shutil.ignore_patterns("report", "challenger"))
        version = json.loads((folder / "manifest.json").read_text())["model_version"]
        copy_as_challenger(folder, folder / "challenger", f"{version}-challenger")
        timings: dict[str, list[int]] = {"off": [], "on": []}
        bodies = {}
        # As on Lambda, the service and the challenger's worker write to stdout (fd 1): here
        # /dev/null, so the terminal costs neither of them anything.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), _fd1_to(sink):
            handlers = {"off": _handler(folder, 0.0), "on": _handler(folder, 1.0)}
            event = _event()
            context = FakeLambdaContext()
            for name, (handler, _service) in handlers.items():
                for _ in range(500):
                    bodies[name] = handler(event, context)["body"]
            for _ in range(rounds):
                for name, (handler, service) in handlers.items():
                    for _ in range(per_round):
                        started = time.perf_counter_ns()
                        handler(event, context)
                        timings[name].append(time.perf_counter_ns() - started)
                    if service.shadow is not None:
                        service.shadow.flush()  # the challenger's backlog stays inside its round
        shadow = handlers["on"][1].shadow
    off_p50, off_p99 = _percentiles_us(timings["off"])
    on_p50, on_p99 = _percentiles_us(timings["on"])
    return {
        "samples_each": rounds * per_round,
        "off": {"p50_us": off_p50, "p99_us": off_p99},
        "on": {"p50_us": on_p50, "p99_us": on_p99},
        "p99_ratio": on_p99 / off_p99,
        "identical_answers": bodies["on"] == bodies["off"],
        "challenger_scored": shadow.counters.scored if shadow else 0,
        "challenger_dropped": shadow.counters.dropped if shadow else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=2000)
    args = parser.parse_args(argv)
    if not (args.artifacts / "manifest.json").is_file():
        print(f"bench.shadow: no artifact folder at {args.artifacts}: run `make train` first")
        return 2
    load_before = os.getloadavg()[0]
    result = measure(args.artifacts, args.rounds, args.per_round)
    load_after = os.getloadavg()[0]
    within = result["p99_ratio"] <= BUDGET_P99_RATIO
    print(
        f"Shadow challenger ({os.cpu_count()} CPUs; load average {load_before:.2f} before, "
        f"{load_after:.2f} after; {result['samples_each']} calls each)"
    )
    for name in ("off", "on"):
        figures = result[name]
        print(
            f"  shadowing {name:3s}  p50 {figures['p50_us']:7.0f} us  "
            f"p99 {figures['p99_us']:7.0f} us"
        )
    print(
        f"  p99 on/off {result['p99_ratio']:.3f} (budget <= {BUDGET_P99_RATIO}): "
        f"{'ok' if within else 'OVER'}; identical answers: {result['identical_answers']}; "
        f"challenger scored {result['challenger_scored']}, dropped {result['challenger_dropped']}"
    )
    off, on = result["off"], result["on"]
    write_block(
        "shadow",
        [
            "## Shadow challenger: handler latency with shadowing at 100 % vs off",
            "",
            run_facts(load_before, load_after, "python -m bench.shadow"),
            f"- {result['samples_each']:,} back-to-back single-loan `POST /predict` Lambda "
            "handler calls each, rounds alternating; the challenger is a copy of the champion "
            "under its own version, scored in its worker process; both write to stdout "
            "(/dev/null here), as on Lambda.",
            "",
            "| shadowing | p50 | p99 |",
            "|---|---:|---:|",
            f"| off | {off['p50_us']:.0f} us | {off['p99_us']:.0f} us |",
            f"| on (100 %) | {on['p50_us']:.0f} us | {on['p99_us']:.0f} us |",
            "",
            f"- p99 on / off: **{result['p99_ratio']:.2f}x** (budget <= {BUDGET_P99_RATIO}x: "
            f"{'met' if within else 'missed'}); answers byte-identical: "
            f"{result['identical_answers']}; pairs written {result['challenger_scored']:,}, "
            f"dropped {result['challenger_dropped']:,}.",
        ],
    )
    return 0 if within and result["identical_answers"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
