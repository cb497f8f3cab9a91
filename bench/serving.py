"""Serving benchmark: the three serving figures, printed as a table.

1. In-process ``handler(event, context)`` for one prediction (API Gateway HTTP API event through
   Mangum, Powertools and FastAPI): p50 and p99. Also the bare Mangum adapter, to show what the
   Powertools decorators (context injection, one EMF document per invocation) cost, and the
   handler without the per-prediction reference bins, beside the bins' own cost (counting one
   loan and taking the counts for its EMF document, timed alone; budget 10 us).
2. A fresh process until ``main`` is imported and the model loaded (artifacts verified, ONNX
   session created, warm-up prediction done): median of several runs.
3. uvicorn (httptools + uvloop), 2 workers, under ``wrk`` with 8 keep-alive connections posting
   ``/predict`` for 10 s: predictions per second and p99.

Usage: ``.venv/bin/python -m bench.serving [--artifacts DIR] [--json]``. The load generator runs
on the same machine as the server, as the budget assumes. The machine's load average is printed
beside the figures: numbers taken while other work runs are "under contention".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.results_file import run_facts, write_block
from tests.support.events import http_api_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.loans import MIDDLING_LOAN
from tests.support.paths import LAMBDA_ROOT, REPO_ROOT

DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"
BUDGET = {
    "handler_p50_us": 250.0,
    "handler_p99_us": 1000.0,
    "bins_us": 10.0,
    "cold_start_s": 0.5,
    "http_rps": 10_000.0,
    "http_p99_ms": 5.0,
}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class HandlerLatency:
    samples: int
    p50_us: float
    p99_us: float
    bare_mangum_p50_us: float
    bare_mangum_p99_us: float
    without_bins_p50_us: float
    without_bins_p99_us: float
    bins_p50_us: float  # record one loan + take the counts, timed alone


@dataclass
class ColdStart:
    runs: int
    median_s: float
    min_s: float


@dataclass
class HttpThroughput:
    workers: int
    connections: int
    duration_s: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


class BenchmarkError(RuntimeError):
    """A prerequisite is missing; the message says how to get it."""


def _require_artifacts(artifacts: Path) -> None:
    if not (artifacts / "manifest.json").is_file():
        raise BenchmarkError(f"no artifact folder at {artifacts}: run `make train` first")


def _percentiles_us(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def measure_handler_latency(artifacts: Path, samples: int = 20_000) -> HandlerLatency:
    """``main.handler`` in this process; EMF lines go to /dev/null (the write is still timed)."""
    _require_artifacts(artifacts)
    os.environ["ARTIFACT_DIR"] = str(artifacts)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    sys.path.insert(0, str(LAMBDA_ROOT))
    from mangum import Mangum

    import main

    bare = Mangum(main.app, lifespan="off")
    event = http_api_event("/predict", MIDDLING_LOAN)
    context: Any = FakeLambdaContext()  # duck-typed like the runtime's context object
    observability = main.service.observability
    bins = observability.reference_bins
    if bins is None:
        raise BenchmarkError("the artifact folder has no reference.json: retrain it")
    results = {}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for name, call in (("handler", main.handler), ("bare", bare), ("no-bins", main.handler)):
            observability.reference_bins = None if name == "no-bins" else bins
            for _ in range(1000):
                call(event, context)
            timings = []
            for _ in range(samples):
                started = time.perf_counter_ns()
                response = call(event, context)
                timings.append(time.perf_counter_ns() - started)
            if response["statusCode"] != 200:
                raise BenchmarkError(f"/predict answered {response['statusCode']}")
            results[name] = _percentiles_us(timings)
        observability.reference_bins = bins
    results["bins"] = _bins_cost_us(
        bins, [MIDDLING_LOAN[name] for name in main.service.bundle.manifest.features], samples
    )
    return HandlerLatency(
        samples=samples,
        p50_us=results["handler"][0],
        p99_us=results["handler"][1],
        bare_mangum_p50_us=results["bare"][0],
        bare_mangum_p99_us=results["bare"][1],
        without_bins_p50_us=results["no-bins"][0],
        without_bins_p99_us=results["no-bins"][1],
        bins_p50_us=results["bins"][0],
    )


def _bins_cost_us(bins: Any, loan: list[float], samples: int) -> tuple[float, float]:
    """One loan counted and the counts taken, as one Lambda invocation does: p50 / p99."""
    import numpy as np

    raw = np.asarray([loan], dtype=np.float64)
    answers = [{"probability": 0.123456}]
    timings = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        bins.record(raw, answers)
        bins.take()
        timings.append(time.perf_counter_ns() - started)
    return _percentiles_us(timings)


def measure_cold_start(artifacts: Path, runs: int = 7) -> ColdStart:
    """Wall time from spawning ``python`` until it has imported ``main`` (model loaded)."""
    _require_artifacts(artifacts)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "ARTIFACT_DIR": str(artifacts),
        "PYTHONPATH": str(LAMBDA_ROOT),
    }
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", "import main; print('ready', flush=True)"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        durations.append(time.perf_counter() - started)
        process.wait(timeout=60)
        if line.strip() != "ready":
            raise BenchmarkError(
                f"main did not import: {process.stderr.read() if process.stderr else ''}"
            )
    return ColdStart(runs=runs, median_s=statistics.median(durations), min_s=min(durations))


def _wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchmarkError(
            "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`"
        )
    return path


def _wrk_latency_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise BenchmarkError(f"could not read the {label} latency from wrk:\n{text}")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def measure_http_throughput(
    artifacts: Path, workers: int = 2, connections: int = 8, duration_s: int = 10, port: int = 8931
) -> HttpThroughput:
    """uvicorn with ``workers`` processes, ``wrk`` keeping ``connections`` connections busy."""
    _require_artifacts(artifacts)
    wrk = _wrk_path()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "ARTIFACT_DIR": str(artifacts),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "main:app",
            "--app-dir",
            str(LAMBDA_ROOT),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise BenchmarkError("uvicorn did not start") from None
                time.sleep(0.2)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT % json.dumps(MIDDLING_LOAN))
        url = f"http://127.0.0.1:{port}/predict"
        base = [wrk, "-t2", f"-c{connections}", "-s", script.name, "--latency"]
        subprocess.run([*base, "-d3s", url], capture_output=True, check=True)  # warm-up
        run = subprocess.run(
            [*base, f"-d{duration_s}s", url], capture_output=True, text=True, check=True
        )
        os.unlink(script.name)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = run.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(r"Socket errors:.*", text)
    if rps is None:
        raise BenchmarkError(f"could not read wrk's output:\n{text}")
    return HttpThroughput(
        workers=workers,
        connections=connections,
        duration_s=duration_s,
        requests_per_s=float(rps.group(1)),
        p50_ms=_wrk_latency_ms(text, "50%"),
        p99_ms=_wrk_latency_ms(text, "99%"),
        errors=int(errors.group(1)) if errors else (1 if socket_errors else 0),
    )


def _verdict(ok: bool) -> str:
    return "meets budget" if ok else "OVER BUDGET"


def report_rows(
    handler: HandlerLatency, cold: ColdStart, http: HttpThroughput
) -> list[tuple[str, str, str, str]]:
    """(figure, measured, budget, verdict) for the table."""
    bare = f"{handler.bare_mangum_p50_us:.0f} / {handler.bare_mangum_p99_us:.0f} us"
    return [
        (
            "handler(event, ctx) p50",
            f"{handler.p50_us:.0f} us",
            "<= 250 us",
            _verdict(handler.p50_us <= BUDGET["handler_p50_us"]),
        ),
        (
            "handler(event, ctx) p99",
            f"{handler.p99_us:.0f} us",
            "<= 1000 us",
            _verdict(handler.p99_us <= BUDGET["handler_p99_us"]),
        ),
        ("  same, bare Mangum: p50 / p99", bare, "", ""),
        (
            "  same, without reference bins: p50 / p99",
            f"{handler.without_bins_p50_us:.0f} / {handler.without_bins_p99_us:.0f} us",
            "",
            "",
        ),
        (
            "  reference bins of one loan (p50)",
            f"{handler.bins_p50_us:.1f} us",
            "<= 10 us",
            _verdict(handler.bins_p50_us <= BUDGET["bins_us"]),
        ),
        (
            "fresh process to main loaded (median)",
            f"{cold.median_s:.3f} s",
            "<= 0.5 s",
            _verdict(cold.median_s <= BUDGET["cold_start_s"]),
        ),
        (
            f"uvicorn {http.workers} workers, {http.connections} connections",
            f"{http.requests_per_s:.0f} /s",
            ">= 10000 /s",
            _verdict(http.requests_per_s >= BUDGET["http_rps"]),
        ),
        (
            "  latency p50 / p99",
            f"{http.p50_ms:.2f} / {http.p99_ms:.2f} ms",
            "p99 <= 5 ms",
            _verdict(http.p99_ms <= BUDGET["http_p99_ms"]),
        ),
        ("  non-2xx responses", str(http.errors), "0", _verdict(http.errors == 0)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds (default 10)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    try:
        cold = measure_cold_start(args.artifacts)
        http = measure_http_throughput(args.artifacts, duration_s=args.duration)
        handler = measure_handler_latency(args.artifacts)
    except BenchmarkError as exc:
        print(f"bench/serving.py: {exc}", file=sys.stderr)
        return 2
    load_after = os.getloadavg()[0]
    if args.json:
        report = {
            "handler": asdict(handler),
            "cold_start": asdict(cold),
            "http": asdict(http),
            "load_average": [load_before, load_after],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(report))
        return 0
    # Judged by the load BEFORE the run: the 1-minute average after it includes this benchmark's
    # own 10 s of wrk against two workers, which alone lifts it above 1 on a quiet machine.
    contention = "; UNDER CONTENTION" if load_before > 0.5 else ""
    print(
        f"Serving benchmark ({os.cpu_count()} CPUs; load average {load_before:.2f} before, "
        f"{load_after:.2f} after{contention})"
    )
    rows = report_rows(handler, cold, http)
    for name, value, budget, verdict in rows:
        print(f"  {name:40s} {value:>18s}  {budget:>12s}  {verdict}")
    command = f"python -m bench.serving --artifacts {args.artifacts} --duration {args.duration}"
    lines = [
        "## Serving: the Lambda handler, a fresh process, uvicorn (`bench/serving.py`)",
        "",
        run_facts(load_before, load_after, command),
        f"- Handler: {handler.samples:,} calls of one `POST /predict` (HTTP API event) in process; "
        f"cold start: median of {cold.runs}; uvicorn: {http.workers} workers, "
        f"{http.connections} keep-alive connections, {http.duration_s} s of `wrk`.",
        "",
        "| figure | measured | budget | |",
        "|---|---:|---|---|",
        *(
            f"| {name.strip()} | {value} | {budget} | {verdict} |"
            for name, value, budget, verdict in rows
        ),
    ]
    write_block("serving", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
