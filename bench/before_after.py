"""Before and after in one run: this checkout's serving figures against the design of the last
round (``OLD_DESIGN``), on the same machine, the same loan and the same load, rounds alternating.

The old design is checked out into a temporary git worktree and trains its own artifact folder
with its own code on its own copy of the project book (``bench.old_design``). Each figure is
taken the same way for both trees, by code in this file, not by each tree's own benchmark:

* handler: ``main.handler(event, context)`` in process, an API Gateway HTTP API ``POST /predict``
  of ``TYPICAL_LOAN`` (an approved applicant, the loan the budgets' baseline was measured
  with; ``RISKY_LOAN``, a declined one, is measured too, unbudgeted), 1,000 warm-up then
  10,000 timed calls, EMF output to /dev/null inside the clock; p50 and p99.
* cold start: a fresh ``python`` spawned until it has imported ``main`` and answered that event
  once (read from its stdout, so the exit is not timed), with ``MLFLOW_TRACKING_URI`` unset and
  set (to a closed local port: the import cost is what is measured, no server answers); median.
* HTTP: ``uvicorn main:app`` with 2 workers (httptools, uvloop), wrk with 8 keep-alive
  connections for 10 s after a 2 s warm-up, the same body; requests/s, p50, p99.

Budgets: HTTP requests/s and handler p50 within 10 % of before; cold start without
``MLFLOW_TRACKING_URI`` <= 0.45 s and with it <= 0.6 s (absolute, this machine). Results go to
the "before and after" block of ``bench/results.md``.

    python -m bench.before_after [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.old_design import OLD_DESIGN, old_design, remove_old_design
from bench.results_file import write_block
from bench.wrk import run_wrk, write_lua_script
from tests.support.events import http_api_event
from tests.support.loans import RISKY_LOAN, TYPICAL_LOAN
from tests.support.servers import free_port, start_server, uvicorn_command

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
REPO: Final = str(REPO_ROOT)
BLOCK: Final = "before_after"
HTTP_RATIO_BUDGET: Final = 0.90  # after / before requests/s
HANDLER_RATIO_BUDGET: Final = 1.10  # after / before p50
COLD_START_BUDGET_S: Final = 0.45
COLD_START_MLFLOW_BUDGET_S: Final = 0.6
CLOSED_TRACKING_URI: Final = "http://127.0.0.1:9"  # nothing listens: import cost only
Loan = dict[str, Any]

HANDLER_PROBE: Final = textwrap.dedent(
    """
    import contextlib, json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    sys.path.append(sys.argv[4])  # this checkout, for its standard-library fake context
    event, samples = json.loads(sys.argv[2]), int(sys.argv[3])
    from tests.support.lambda_context import FakeLambdaContext

    import main
    context = FakeLambdaContext()
    timings = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for _ in range(1000):
            answer = main.handler(event, context)
        for _ in range(samples):
            started = time.perf_counter_ns()
            main.handler(event, context)
            timings.append(time.perf_counter_ns() - started)
    assert answer["statusCode"] == 200, answer
    timings.sort()
    print(json.dumps({"p50_us": timings[len(timings) // 2] / 1000,
                      "p99_us": timings[int(len(timings) * 0.99)] / 1000}))
    """
)
COLD_PROBE: Final = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.append(sys.argv[3])  # this checkout, for its standard-library fake context
    import main
    from tests.support.lambda_context import FakeLambdaContext
    answer = main.handler(json.loads(sys.argv[2]), FakeLambdaContext())
    print("answered", answer["statusCode"], file=sys.stderr, flush=True)
    """
)


def _env(artifacts: Path, tracking_uri: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHONPATH"))}
    env.update(ARTIFACT_DIR=str(artifacts), POWERTOOLS_METRICS_DISABLED="false")
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def handler_latency(
    tree: Path, artifacts: Path, samples: int, loan: Loan = TYPICAL_LOAN
) -> dict[str, float]:
    event = json.dumps(http_api_event("/predict", loan))
    done = subprocess.run(
        [sys.executable, "-c", HANDLER_PROBE, str(tree / "lambda"), event, str(samples), REPO],
        cwd=tree,
        env=_env(artifacts),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"handler probe in {tree} failed: {done.stderr[-1500:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def cold_start_s(tree: Path, artifacts: Path, tracking_uri: str | None, runs: int) -> float:
    """Median wall time from spawn to the first answer (the exit is not timed)."""
    event = json.dumps(http_api_event("/predict", TYPICAL_LOAN))
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", COLD_PROBE, str(tree / "lambda"), event, REPO],
            cwd=tree,
            env=_env(artifacts, tracking_uri),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        line = "started"
        while line and not line.startswith("answered"):
            line = process.stderr.readline()  # other lines: the service's own log
        durations.append(time.perf_counter() - started)
        process.kill()
        process.wait(timeout=60)
        if not line.startswith("answered 200"):
            raise RuntimeError(f"cold-start probe in {tree} did not answer 200: {line!r}")
    return statistics.median(durations)


def http_figures(
    tree: Path, artifacts: Path, seconds: int, loan: Loan = TYPICAL_LOAN
) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as scratch:
        body = json.dumps(loan)
        script = write_lua_script(Path(scratch) / "post.lua", "/predict", [body])
        server = start_server(
            f"uvicorn in {tree.name}",
            uvicorn_command(port, workers=2),
            port=port,
            cwd=tree / "lambda",
            env={**_env(artifacts), "PYTHONPATH": str(tree / "lambda")},
            log_path=Path(scratch) / "server.log",
        )
        try:
            server.wait_ready()
            run_wrk(port, script, duration_s=2)  # warm-up
            result = run_wrk(port, script, duration_s=seconds)
        finally:
            server.stop()
    return {
        "requests_per_s": result.requests_per_second,
        "p50_ms": result.p50_us / 1000,
        "p99_ms": result.p99_us / 1000,
        "errors": float(result.errors + result.status_errors),
    }


Measure = Callable[[Path, Path], dict[str, float]]


def measure_both(
    trees: dict[str, tuple[Path, Path]], measure: Measure, rounds: int
) -> dict[str, dict[str, float]]:
    """Median of each figure per tree; the order alternates round by round."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    names = list(trees)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            samples[name].append(measure(*trees[name]))
    return {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


LOANS_NOTE: Final = (
    "The budgeted rows send `TYPICAL_LOAN`, an approved applicant: the loan the budgets' "
    "baseline figures were measured with (the last round's `bench/servers.py` `SAMPLE_LOAN`), "
    "and what most requests are (18.5 % of the book defaults). The declined rows send "
    "`RISKY_LOAN` (declined, four reasons): this design scores a declined applicant's reasons "
    "in a second model call, the old design scored every applicant's in its one call."
)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: short, not recorded")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    samples = 2000 if args.quick else 10_000
    seconds = 2 if args.quick else 10
    cold_runs = 2 if args.quick else 5
    from training.cli import DEFAULT_DATA  # the project book, for this tree's training

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as scratch:
        folder = Path(scratch)
        new_artifacts = folder / "new-artifacts"
        subprocess.run(
            [
                *(sys.executable, "-m", "training", "--data", str(DEFAULT_DATA)),
                *("--out", str(new_artifacts), "--no-mlflow", "--quiet"),
            ],
            cwd=REPO_ROOT,
            check=True,
        )
        tree, old_artifacts = old_design(folder)
        trees = {"before": (tree, old_artifacts), "after": (REPO_ROOT, new_artifacts)}
        try:
            handler = measure_both(trees, lambda t, a: handler_latency(t, a, samples), rounds)
            cold = measure_both(
                trees,
                lambda t, a: {
                    "unset_s": cold_start_s(t, a, None, cold_runs),
                    "mlflow_s": cold_start_s(t, a, CLOSED_TRACKING_URI, cold_runs),
                },
                rounds,
            )
            http = measure_both(trees, lambda t, a: http_figures(t, a, seconds), rounds)
            declined_handler = measure_both(
                trees, lambda t, a: handler_latency(t, a, samples, RISKY_LOAN), rounds
            )
            declined_http = measure_both(
                trees, lambda t, a: http_figures(t, a, seconds, RISKY_LOAN), rounds
            )
        finally:
            remove_old_design(tree)
    load_after = os.getloadavg()[0]

    http_ratio = http["after"]["requests_per_s"] / http["before"]["requests_per_s"]
    handler_ratio = handler["after"]["p50_us"] / handler["before"]["p50_us"]
    cold_ratio = cold["after"]["unset_s"] / cold["before"]["unset_s"]
    declined_http_ratio = (
        declined_http["after"]["requests_per_s"] / declined_http["before"]["requests_per_s"]
    )
    rows = [
        (
            "HTTP POST /predict, 2 uvicorn workers (requests/s)",
            f"{http['before']['requests_per_s']:,.0f}",
            f"{http['after']['requests_per_s']:,.0f}",
            f"{http_ratio:.2f}x",
            f">= {HTTP_RATIO_BUDGET:.2f}x",
            _verdict(http_ratio >= HTTP_RATIO_BUDGET),
        ),
        (
            "  HTTP latency p50 / p99 (ms)",
            f"{http['before']['p50_ms']:.2f} / {http['before']['p99_ms']:.2f}",
            f"{http['after']['p50_ms']:.2f} / {http['after']['p99_ms']:.2f}",
            "",
            "",
            "",
        ),
        (
            "handler(event, ctx) p50 (us)",
            f"{handler['before']['p50_us']:.0f}",
            f"{handler['after']['p50_us']:.0f}",
            f"{handler_ratio:.2f}x",
            f"<= {HANDLER_RATIO_BUDGET:.2f}x",
            _verdict(handler_ratio <= HANDLER_RATIO_BUDGET),
        ),
        (
            "handler(event, ctx) p99 (us)",
            f"{handler['before']['p99_us']:.0f}",
            f"{handler['after']['p99_us']:.0f}",
            f"{handler['after']['p99_us'] / handler['before']['p99_us']:.2f}x",
            "",
            "",
        ),
        (
            "cold start to first answer, MLFLOW_TRACKING_URI unset (s)",
            f"{cold['before']['unset_s']:.3f}",
            f"{cold['after']['unset_s']:.3f}",
            f"{cold_ratio:.2f}x",
            f"<= {COLD_START_BUDGET_S} s",
            _verdict(cold["after"]["unset_s"] <= COLD_START_BUDGET_S),
        ),
        (
            "cold start to first answer, MLFLOW_TRACKING_URI set (s)",
            f"{cold['before']['mlflow_s']:.3f}",
            f"{cold['after']['mlflow_s']:.3f}",
            f"{cold['after']['mlflow_s'] / cold['before']['mlflow_s']:.2f}x",
            f"<= {COLD_START_MLFLOW_BUDGET_S} s",
            _verdict(cold["after"]["mlflow_s"] <= COLD_START_MLFLOW_BUDGET_S),
        ),
        (
            "declined applicant (reasons computed): HTTP requests/s",
            f"{declined_http['before']['requests_per_s']:,.0f}",
            f"{declined_http['after']['requests_per_s']:,.0f}",
            f"{declined_http_ratio:.2f}x",
            "",
            "",
        ),
        (
            "declined applicant (reasons computed): handler p50 (us)",
            f"{declined_handler['before']['p50_us']:.0f}",
            f"{declined_handler['after']['p50_us']:.0f}",
            f"{declined_handler['after']['p50_us'] / declined_handler['before']['p50_us']:.2f}x",
            "",
            "",
        ),
    ]
    header = (
        f"Before ({OLD_DESIGN}) and after, one run: {rounds} alternating round(s); "
        f"{os.cpu_count()} CPUs, load average {load_before:.2f} before, {load_after:.2f} after; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    table = [
        "| figure | before | after | after / before | budget | |",
        "|---|---:|---:|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
    ]
    print(header)
    for row in rows:
        print(f"  {row[0]:58s} {row[1]:>15s} {row[2]:>15s} {row[3]:>7s} {row[4]:>10s} {row[5]}")
    if not args.quick:
        write_block(
            BLOCK,
            [header, "", *table, "", LOANS_NOTE, "", "Command: `python -m bench.before_after`."],
        )
    return 0 if all(row[5] != _verdict(False) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
