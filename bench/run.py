"""``make bench``: the service against the ORIGINAL design, in one run, on this machine.

The machine is shared and noisy, so the headline figures are RATIOS of two designs measured back to
back in the same run: the service (FastAPI + ONNX Runtime under uvicorn with httptools and uvloop,
2 workers) against the original design kept in ``bench/`` (Flask + gunicorn, 2 workers x 2
threads, a pickled scaler and random forest called through scikit-learn on every request).

Sections, each printed as a table and written to ``bench/results.md``:

* HTTP: the same keep-alive load for both designs (wrk, 8 connections, 10 s, rotating loans from
  the loan book); requests/s, p50, p99, errors.
* Lambda handler in process: p50/p99 of ``main.handler(event, context)`` for one prediction.
* Cold start: a fresh process to its first answer (median of several runs), in process and as an
  HTTP server, for both designs.
* Batch: rows/s through ``/predict/batch`` (1000-loan bodies) and through the predictor directly
  on 1,000,000 rows, for both model types (logistic regression and random forest).
* Training: wall time of ``python -m training`` on the reference data and on 1,000,000 synthetic
  rows.

Every figure lives in that one file; the docs link to it. Exit status: 1 when a request failed or
a goal was missed, else 0.

    .venv/bin/python -m bench.run                 # everything (what `make bench` runs)
    .venv/bin/python -m bench.run --quick         # smoke run: short loads, 100k rows, no 1M
                                                  # training, results in the temp folder
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench import probes
from bench.results_file import RESULTS_FILE
from bench.wrk import LoadResult, ensure_wrk, run_wrk, write_lua_script
from tests.support.loans import loan_rows
from tests.support.paths import LAMBDA_ROOT, PROJECT_CSV, REPO_ROOT
from tests.support.servers import (
    Server,
    free_port,
    gunicorn_command,
    pinned,
    reference_env,
    running_reference,
    running_service,
    service_env,
    start_server,
    uvicorn_command,
)

REFERENCE_DATA: Final = REPO_ROOT.parent / "shared" / "data" / "Loan_Data.csv"

QUICK_RESULTS_FILE: Final = Path(tempfile.gettempdir()) / "loan-bench-results-quick.md"
ROTATING_LOANS: Final = 64
BATCH_SIZE: Final = 1000
WARMUP_SECONDS: Final = 2

# Goals: the throughput ratio against the original design, and the serving budgets.
THROUGHPUT_GOAL: Final = "HTTP throughput >= 25x the original design"
GOAL_THROUGHPUT_RATIO: Final = 25.0
GOAL_HANDLER_P50_US: Final = 250.0
GOAL_HANDLER_P99_US: Final = 1000.0
GOAL_COLD_START_S: Final = 0.5
GOAL_HTTP_RPS: Final = 10_000.0
GOAL_HTTP_P99_MS: Final = 5.0


@dataclass(frozen=True)
class BenchConfig:
    duration_s: int = 10
    rounds: int = 5  # single 10 s rounds on this shared VM vary by 10-20 %; the median of 5 holds
    connections: int = 8
    load_threads: int = 1
    cold_runs: int = 5
    handler_requests: int = 20_000
    predictor_rows: int = 1_000_000
    training_rows: int = 1_000_000
    train_large: bool = True
    server_cpus: str | None = None
    load_cpus: str | None = None
    results_file: Path = RESULTS_FILE
    command: str = ""


@dataclass
class Results:
    """Everything measured; rendered to the terminal table and results.md."""

    facts: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    http: dict[str, LoadResult] = field(default_factory=dict)  # the median round per server
    http_rounds: dict[str, list[LoadResult]] = field(default_factory=dict)
    batch_http: dict[str, LoadResult] = field(default_factory=dict)
    handler: dict[str, Any] = field(default_factory=dict)
    cold_start: dict[str, list[float]] = field(default_factory=dict)
    predictor: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, float | str] = field(default_factory=dict)


# ---- small helpers -------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def stage(name: str) -> Iterator[None]:
    began = time.perf_counter()
    say(f"== {name} ...")
    yield
    say(f"   {name}: {time.perf_counter() - began:.1f} s")


def run_checked(command: Sequence[str], log: Path, cwd: Path = REPO_ROOT) -> float:
    """Run ``command`` to completion (output to ``log``); return its wall time in seconds."""
    with log.open("wb") as handle:
        started = time.perf_counter()
        completed = subprocess.run(
            list(command), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
        elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} failed ({completed.returncode}):\n"
            f"{log.read_text(errors='replace')[-3000:]}"
        )
    return elapsed


def command_output(*command: str) -> str:
    """stdout of a small command run in the repository ('' when it fails)."""
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return completed.stdout.strip()


def machine_facts() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = command_output("git", "rev-parse", "--short", "HEAD")
    dirty = command_output("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": command_output("nproc"),
        "arch": command_output("uname", "-m"),
        "kernel": platform.release(),
        "cpu": cpu_model or "unknown",
        "python": platform.python_version(),
        "commit": (commit or "unknown") + (" (with uncommitted changes)" if dirty else ""),
        "load_before": os.getloadavg(),
    }


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


# ---- the measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    service: Path  # python -m training's own choice
    by_type: dict[str, Path]  # logistic_regression / random_forest -> artifact folder
    reference: Path  # pickled scaler + forest of the original design


def manifest_of(folder: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def prepare_models(work: Path, results: Results) -> Models:
    """Train the service's model (its own selection), the other model type, and the reference."""
    python = sys.executable
    service = work / "artifacts"
    seconds = run_checked(
        [
            python,
            "-m",
            "training",
            "--data",
            str(PROJECT_CSV),
            "--out",
            str(service),
            "--no-mlflow",
            "--quiet",
        ],
        work / "train-service.log",
    )
    results.training["project data (Data/Loan_Data.csv, 10,000 rows)"] = seconds
    chosen = manifest_of(service)["model"]["name"]
    by_type = {chosen: service}
    for other in ("logistic_regression", "random_forest"):
        if other not in by_type:
            folder = work / f"artifacts-{other}"
            run_checked(
                [
                    python,
                    "-m",
                    "tests.support.candidates",
                    "--candidate",
                    other,
                    "--out",
                    str(folder),
                ],
                work / f"train-{other}.log",
            )
            by_type[other] = folder
    for name, folder in by_type.items():
        manifest = manifest_of(folder)
        results.models[name] = {
            "model_version": manifest["model_version"],
            "f1": manifest["metrics"][name]["f1"],
            "served_by_default": folder == service,
        }
    reference = work / "reference-model"
    run_checked(
        [
            python,
            "-m",
            "bench.reference_model",
            "--data",
            str(PROJECT_CSV),
            "--out",
            str(reference),
        ],
        work / "train-reference.log",
    )
    return Models(service=service, by_type=by_type, reference=reference)


def load(server: Server, script: Path, config: BenchConfig, duration_s: int) -> LoadResult:
    return run_wrk(
        server.port,
        script,
        duration_s=duration_s,
        connections=config.connections,
        threads=config.load_threads,
        cpus=config.load_cpus,
    )


def measure_http(models: Models, config: BenchConfig, work: Path, results: Results) -> None:
    """Same wrk load against each server; the service also gets the 1000-loan batch load.

    The service (its default model) and the original design run side by side, and the wrk runs
    alternate between them round by round (S R, R S, S R, ...), so a burst of noise from other
    processes hits both designs alike; each design's median round is reported.
    """
    loans = loan_rows(PROJECT_CSV, max(ROTATING_LOANS, BATCH_SIZE))
    single = write_lua_script(
        work / "predict.lua", "/predict", [json.dumps(loan) for loan in loans[:ROTATING_LOANS]]
    )
    batch = write_lua_script(
        work / "predict-batch.lua", "/predict/batch", [json.dumps({"loans": loans[:BATCH_SIZE]})]
    )

    def other_model_run(model_type: str) -> None:
        folder = models.by_type[model_type]
        log = work / f"uvicorn-{model_type}.log"
        with running_service(folder, log, cpus=config.server_cpus) as server:
            load(server, single, config, WARMUP_SECONDS)
            results.http[f"service/{model_type}"] = load(server, single, config, config.duration_s)
            results.batch_http[model_type] = load(server, batch, config, config.duration_s)

    default_type = next(name for name, path in models.by_type.items() if path == models.service)
    service_key = f"service/{default_type}"
    with (
        running_service(
            models.service, work / f"uvicorn-{default_type}.log", cpus=config.server_cpus
        ) as service,
        running_reference(
            models.reference, work / "gunicorn-reference.log", cpus=config.server_cpus
        ) as reference,
    ):
        for server in (service, reference):
            load(server, single, config, WARMUP_SECONDS)
        rounds: dict[str, list[LoadResult]] = {service_key: [], "reference": []}
        for index in range(config.rounds):
            order = [(service_key, service), ("reference", reference)]
            for key, server in order[:: -1 if index % 2 else 1]:
                rounds[key].append(load(server, single, config, config.duration_s))
        results.http_rounds = rounds
        for key, runs in rounds.items():
            results.http[key] = median_run(runs)
        results.batch_http[default_type] = load(service, batch, config, config.duration_s)
    for model_type in models.by_type:
        if model_type != default_type:
            other_model_run(model_type)


def median_run(runs: Sequence[LoadResult]) -> LoadResult:
    """The run with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.requests_per_second)
    return ordered[(len(ordered) - 1) // 2]


def first_answer_seconds(command: Sequence[str], cwd: Path) -> float:
    """Spawn ``command``; seconds until it prints ``ANSWERED 200``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert process.stdout is not None
    elapsed = None
    for line in process.stdout:
        if line.startswith(probes.ANSWERED_MARKER):
            elapsed = time.perf_counter() - started
            if line.split()[1] != "200":
                raise RuntimeError(f"{shlex.join(command)} answered {line.strip()}")
            break
    process.stdout.close()
    process.wait(60)
    if elapsed is None:
        raise RuntimeError(f"{shlex.join(command)} exited {process.returncode} without answering")
    return elapsed


def server_first_answer_seconds(
    name: str, command: Sequence[str], *, env: dict[str, str], cwd: Path, port: int, log: Path
) -> float:
    """Spawn an HTTP server; seconds until its first ``POST /predict`` answers 200."""
    started = time.perf_counter()
    server = start_server(name, command, port=port, cwd=cwd, env=env, log_path=log)
    try:
        server.wait_ready()
        return time.perf_counter() - started
    finally:
        server.stop()


def measure_cold_start(models: Models, config: BenchConfig, work: Path, results: Results) -> None:
    """Alternate the designs run by run, so a burst of noise hits both alike."""
    python = sys.executable
    main_command = [python, "-m", "bench.probes", "answer-main", "--artifacts", str(models.service)]
    reference_command = [
        python,
        "-m",
        "bench.probes",
        "answer-reference",
        "--model-dir",
        str(models.reference),
    ]
    series: dict[str, list[float]] = {
        "service: import main + first handler answer": [],
        "reference: import Flask app + unpickle + first answer": [],
        "service: uvicorn (1 worker) spawn to first HTTP 200": [],
        "reference: gunicorn (1 worker) spawn to first HTTP 200": [],
    }
    keys = list(series)
    for run in range(config.cold_runs):
        series[keys[0]].append(first_answer_seconds(main_command, REPO_ROOT))
        series[keys[1]].append(first_answer_seconds(reference_command, REPO_ROOT))
        port = free_port()
        series[keys[2]].append(
            server_first_answer_seconds(
                "uvicorn",
                pinned(uvicorn_command(port, workers=1), config.server_cpus),
                env=service_env(models.service),
                cwd=LAMBDA_ROOT,
                port=port,
                log=work / f"cold-uvicorn-{run}.log",
            )
        )
        port = free_port()
        series[keys[3]].append(
            server_first_answer_seconds(
                "gunicorn",
                pinned(gunicorn_command(port, workers=1), config.server_cpus),
                env=reference_env(models.reference),
                cwd=REPO_ROOT,
                port=port,
                log=work / f"cold-gunicorn-{run}.log",
            )
        )
    results.cold_start = series


def measure_handler(models: Models, config: BenchConfig, work: Path, results: Results) -> None:
    out = work / "handler.json"
    command = [
        sys.executable,
        "-m",
        "bench.probes",
        "handler-latency",
        "--artifacts",
        str(models.service),
        "--requests",
        str(config.handler_requests),
        "--json",
        str(out),
    ]
    subprocess.run(
        pinned(command, config.server_cpus), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, check=True
    )
    results.handler = json.loads(out.read_text())


def measure_predictor(models: Models, config: BenchConfig, work: Path, results: Results) -> None:
    for model_type, folder in models.by_type.items():
        out = work / f"predictor-{model_type}.json"
        command = [
            sys.executable,
            "-m",
            "bench.probes",
            "predictor-throughput",
            "--artifacts",
            str(folder),
            "--rows",
            str(config.predictor_rows),
            "--json",
            str(out),
        ]
        subprocess.run(pinned(command, config.server_cpus), cwd=REPO_ROOT, check=True)
        results.predictor[model_type] = json.loads(out.read_text())


def measure_training(config: BenchConfig, work: Path, results: Results) -> None:
    python = sys.executable
    if REFERENCE_DATA.is_file():
        results.training["reference data (../shared/data/Loan_Data.csv)"] = run_checked(
            [
                python,
                "-m",
                "training",
                "--data",
                str(REFERENCE_DATA),
                "--out",
                str(work / "train-reference-data"),
                "--no-mlflow",
                "--quiet",
            ],
            work / "train-reference-data.log",
        )
    else:
        results.training["reference data (../shared/data/Loan_Data.csv)"] = "skipped: absent"
    if not config.train_large:
        results.training[f"{config.training_rows:,} synthetic rows"] = "not measured in this run"
        return
    csv_path = work / f"loans-{config.training_rows}.csv"
    results.training[f"synthesize {config.training_rows:,} rows"] = run_checked(
        [
            python,
            "-m",
            "training.synthesize",
            "--rows",
            str(config.training_rows),
            "--seed",
            "2024",
            "--out",
            str(csv_path),
        ],
        work / "synthesize.log",
    )
    results.training[f"{config.training_rows:,} synthetic rows"] = run_checked(
        [
            python,
            "-m",
            "training",
            "--data",
            str(csv_path),
            "--out",
            str(work / "train-large"),
            "--no-mlflow",
            "--quiet",
        ],
        work / "train-large.log",
    )


# ---- CPU accounting: how much of the machine did OTHER processes take? ---------------------------


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy CPU seconds and this process's own (children included once waited)."""

    wall: float
    machine_busy: float
    own: float

    @classmethod
    def take(cls) -> CpuSample:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(value) for value in fields]
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy = sum(values[index] for index in (0, 1, 2, 5, 6, 7) if index < len(values))
        own = os.times()
        return cls(
            wall=time.monotonic(),
            machine_busy=busy / ticks,
            own=own.user + own.system + own.children_user + own.children_system,
        )


def others_share(before: CpuSample, after: CpuSample, cores: int) -> float:
    """Fraction of the machine's CPU capacity used by processes this run did not start."""
    elapsed = after.wall - before.wall
    if elapsed <= 0:
        return 0.0
    others = (after.machine_busy - before.machine_busy) - (after.own - before.own)
    return max(0.0, others) / (elapsed * cores)


CONTENTION_SHARE: Final = 0.10


# ---- rendering -----------------------------------------------------------------------------------


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _rps(value: float) -> str:
    return f"{value:,.0f}"


def _times(value: float) -> str:
    return f"{value:,.1f}x"


def _seconds(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:,.1f} s"


def goals(results: Results) -> list[tuple[str, bool, str]]:
    """(goal, met, measured) for the throughput ratio and the serving budgets."""
    checks: list[tuple[str, bool, str]] = []
    service = next((r for k, r in results.http.items() if k.startswith("service/")), None)
    reference = results.http.get("reference")
    if service is not None and reference is not None:
        speedup = ratio(service.requests_per_second, reference.requests_per_second)
        checks.append(
            (
                THROUGHPUT_GOAL,
                speedup >= GOAL_THROUGHPUT_RATIO,
                _times(speedup),
            )
        )
        checks.append(
            (
                "uvicorn, 2 workers, 8 connections: >= 10,000 predictions/s",
                service.requests_per_second >= GOAL_HTTP_RPS,
                f"{_rps(service.requests_per_second)}/s",
            )
        )
        checks.append(
            (
                "uvicorn p99 <= 5 ms",
                service.p99_us / 1000 <= GOAL_HTTP_P99_MS,
                _ms(service.p99_us),
            )
        )
    if results.handler:
        checks.append(
            (
                "handler in process p50 <= 250 us",
                results.handler["p50_us"] <= GOAL_HANDLER_P50_US,
                f"{results.handler['p50_us']:.0f} us",
            )
        )
        checks.append(
            (
                "handler in process p99 <= 1 ms",
                results.handler["p99_us"] <= GOAL_HANDLER_P99_US,
                f"{results.handler['p99_us']:.0f} us",
            )
        )
    main_cold = results.cold_start.get("service: import main + first handler answer")
    if main_cold:
        median = statistics.median(main_cold)
        checks.append(
            (
                "fresh process to main imported and answering <= 0.5 s",
                median <= GOAL_COLD_START_S,
                f"{median:.3f} s",
            )
        )
    return checks


def errors_total(results: Results) -> int:
    runs = [run for rounds in results.http_rounds.values() for run in rounds]
    runs += [run for key, run in results.http.items() if key not in results.http_rounds]
    runs += list(results.batch_http.values())
    return sum(run.errors for run in runs)


def headline_rows(results: Results) -> list[tuple[str, str, str, str]]:
    """(figure, service, original design, ratio) for the top of results.md."""
    rows: list[tuple[str, str, str, str]] = []
    service_key = next((k for k in results.http if k.startswith("service/")), None)
    reference = results.http.get("reference")
    if service_key is not None and reference is not None:
        service = results.http[service_key]
        rows.append(
            (
                "HTTP throughput, `POST /predict` (requests/s)",
                _rps(service.requests_per_second),
                _rps(reference.requests_per_second),
                f"**{_times(ratio(service.requests_per_second, reference.requests_per_second))}**",
            )
        )
        rows.append(
            (
                "HTTP latency p50",
                _ms(service.p50_us),
                _ms(reference.p50_us),
                f"{_times(ratio(reference.p50_us, service.p50_us))} lower",
            )
        )
        rows.append(
            (
                "HTTP latency p99",
                _ms(service.p99_us),
                _ms(reference.p99_us),
                f"{_times(ratio(reference.p99_us, service.p99_us))} lower",
            )
        )
    cold = results.cold_start
    main_key = "service: import main + first handler answer"
    reference_key = "reference: import Flask app + unpickle + first answer"
    if cold.get(main_key) and cold.get(reference_key):
        service_s = statistics.median(cold[main_key])
        reference_s = statistics.median(cold[reference_key])
        rows.append(
            (
                "cold start, fresh process to first answer (median)",
                f"{service_s:.3f} s",
                f"{reference_s:.3f} s",
                f"{_times(ratio(reference_s, service_s))} faster",
            )
        )
    return rows


def render(results: Results, config: BenchConfig) -> str:
    facts = results.facts
    lines: list[str] = ["# Benchmark results", ""]
    lines += [
        f"- Date: {facts['date']}",
        f"- Machine: {facts['nproc']} cores (`nproc`), `{facts['arch']}` (`uname -m`), "
        f"{facts['cpu']}, Linux {facts['kernel']}",
        f"- Python {facts['python']}; commit {facts['commit']}",
        f"- Command: `{config.command}`",
        f"- Load average (1 min) before / after: {facts['load_before'][0]:.2f} / "
        f"{facts['load_after'][0]:.2f}",
        f"- CPU taken by other processes during the run: {facts['others_share_run']:.0%} of the "
        f"machine (HTTP section: {facts['others_share_http']:.0%})",
        "",
    ]
    if facts["contended"]:
        lines += [
            "> **Measured under contention**: other processes used a noticeable share of the CPU "
            "while this ran. Absolute figures are pessimistic; the ratios (both designs measured "
            "side by side in this run, under the same load) are the figures to quote.",
            "",
        ]
    lines += ["## Headline (ratios measured in this one run)", ""]
    lines += ["| figure | service | original design | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in headline_rows(results)]
    lines += ["", "## Goals", "", "| goal | measured | |", "|---|---:|---|"]
    lines += [
        f"| {name} | {figure} | {'met' if met else '**missed**'} |"
        for name, met, figure in goals(results)
    ]

    lines += ["", "## HTTP: the same keep-alive load for both designs", ""]
    lines += [
        f"wrk, {config.connections} keep-alive connections, {config.load_threads} thread, "
        f"{config.duration_s} s per run after a {WARMUP_SECONDS} s warm-up, `POST /predict` "
        f"with {ROTATING_LOANS} loans from `Data/Loan_Data.csv` in rotation (Lua script, "
        f"`--latency`). The two designs run side by side and the runs alternate between them, "
        f"{config.rounds} round{'s' if config.rounds != 1 else ''} each, so noise from other "
        "processes hits both alike. "
        "Service: `uvicorn main:app --workers 2 --http httptools --loop uvloop "
        "--no-access-log`. Original design: `gunicorn --workers 2 --threads 2` + Flask, "
        "`StandardScaler` + `RandomForestClassifier` (scikit-learn defaults) unpickled at start, "
        "`predict_proba` per request. CPU placement: "
        + (f"servers on CPUs {config.server_cpus}" if config.server_cpus else "servers unpinned")
        + ", "
        + (f"wrk on CPUs {config.load_cpus}" if config.load_cpus else "wrk unpinned")
        + " (identical for both designs).",
        "",
        "| server | model | requests/s | p50 | p90 | p99 | max | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, load_result in results.http.items():
        label, model = (
            ("original design (gunicorn + Flask)", "random forest + scaler, pickled")
            if key == "reference"
            else ("service (uvicorn)", key.split("/", 1)[1].replace("_", " ") + ", ONNX")
        )
        lines.append(
            f"| {label} | {model} | {_rps(load_result.requests_per_second)} | "
            f"{_ms(load_result.p50_us)} | {_ms(load_result.p90_us)} | {_ms(load_result.p99_us)} | "
            f"{_ms(load_result.max_us)} | {load_result.errors} |"
        )
    if len(next(iter(results.http_rounds.values()), [])) > 1:
        service_key = next(key for key in results.http_rounds if key != "reference")
        pairs = zip(results.http_rounds[service_key], results.http_rounds["reference"], strict=True)
        lines += [
            "",
            "Every round (requests/s, service / original design, ratio): "
            + "; ".join(
                f"{_rps(s.requests_per_second)} / {_rps(r.requests_per_second)}, "
                f"{_times(ratio(s.requests_per_second, r.requests_per_second))}"
                for s, r in pairs
            )
            + ". The table shows each design's median round.",
        ]

    if results.handler:
        handler = results.handler
        lines += ["", "## Lambda handler in process", ""]
        lines += [
            f"`main.handler(event, context)` with an {handler['event']}, {handler['samples']:,} "
            "calls after 1,000 warm-up calls, in a fresh process (`bench/serving.py`'s "
            "measurement, Powertools' EMF output written to /dev/null inside the clock). The bare "
            "Mangum adapter, without the Powertools decorators, for comparison.",
            "",
            "| | p50 | p99 |",
            "|---|---:|---:|",
            f"| `main.handler` | {handler['p50_us']:.0f} us | {handler['p99_us']:.0f} us |",
            f"| bare Mangum | {handler['bare_mangum_p50_us']:.0f} us | "
            f"{handler['bare_mangum_p99_us']:.0f} us |",
            f"| `main.handler` without reference bins | {handler['without_bins_p50_us']:.0f} us | "
            f"{handler['without_bins_p99_us']:.0f} us |",
            "",
            f"Reference bins (counting one loan and taking the counts for its EMF document, timed "
            f"alone): p50 {handler['bins_p50_us']:.1f} us, budget 10 us.",
        ]

    if results.cold_start:
        lines += ["", "## Cold start: a fresh process to its first answer", ""]
        lines += [
            f"Median of {config.cold_runs} runs, the designs alternating run by run. In process: "
            "`python -m bench.probes answer-main|answer-reference` (interpreter start, imports, "
            "artifact verification / unpickling, one prediction). HTTP: server spawn to the "
            "first `POST /predict` answered 200 (polled every 5 ms).",
            "",
            "| what | median | min | max |",
            "|---|---:|---:|---:|",
        ]
        for name, values in results.cold_start.items():
            lines.append(
                f"| {name} | {statistics.median(values):.3f} s | {min(values):.3f} s | "
                f"{max(values):.3f} s |"
            )

    if results.batch_http or results.predictor:
        lines += ["", "## Batch throughput, both model types", ""]
        lines += [
            f"HTTP: `POST /predict/batch` with {BATCH_SIZE}-loan bodies, same wrk settings. "
            f"Predictor: `DefaultRiskModel` on {config.predictor_rows:,} synthetic rows "
            "(`training.synthesize`), ONNX Runtime with one thread, no HTTP or JSON: PD only (one "
            "call for all rows) and PD + reasons (1000-row calls, each loan with its six "
            "counterfactual rows, as `/predict/batch` runs it).",
            "",
            "| model | held-out F1 | /predict/batch rows/s | batch p50 | batch p99 | "
            "predictor PD only rows/s | predictor PD + reasons rows/s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for model_type in results.models:
            batch = results.batch_http.get(model_type)
            predictor = results.predictor.get(model_type, {})
            trained = results.models[model_type]
            lines.append(
                f"| {model_type.replace('_', ' ')}"
                + (" (served by default)" if trained["served_by_default"] else "")
                + f" | {trained['f1']:.4f} | "
                + (
                    f"{_rps(batch.requests_per_second * BATCH_SIZE)} | {_ms(batch.p50_us)} | "
                    f"{_ms(batch.p99_us)}"
                    if batch
                    else "- | - | -"
                )
                + " | "
                + (
                    f"{_rps(predictor['pd_only_rows_per_second'])} | "
                    f"{_rps(predictor['with_reasons_rows_per_second'])}"
                    if predictor
                    else "- | -"
                )
                + " |"
            )

    if results.training:
        lines += ["", "## Training wall time", ""]
        lines += [
            "`python -m training --data CSV --out DIR --no-mlflow --quiet` (both candidates, "
            "cross-validation, calibration, ONNX export with its parity check, report).",
            "",
            "| data | wall time |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {_seconds(value)} |" for name, value in results.training.items()]

    return "\n".join(lines) + "\n"


# ---- entry point ---------------------------------------------------------------------------------


def parse_config(argv: Sequence[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating wrk runs per design for the headline"
    )
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--handler-requests", type=int, default=20_000)
    parser.add_argument("--predictor-rows", type=int, default=1_000_000)
    parser.add_argument("--training-rows", type=int, default=1_000_000)
    parser.add_argument("--server-cpus", help="taskset CPU list for the servers (default: all)")
    parser.add_argument("--load-cpus", help="taskset CPU list for wrk (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 3 s loads, 2 cold starts, 100k rows, no 1M training",
    )
    parser.add_argument(
        "--skip-large-training",
        action="store_true",
        help="everything but the training run on --training-rows synthetic rows (the longest part)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help=f"where to write the markdown (default {RESULTS_FILE.relative_to(REPO_ROOT)}; "
        "--quick writes to the temp folder)",
    )
    args = parser.parse_args(argv)
    given = list(argv if argv is not None else sys.argv[1:])
    if os.environ.get("MAKELEVEL"):  # started by `make bench`
        command = "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(given))}" if given else "")
    else:
        command = shlex.join([".venv/bin/python", "-m", "bench.run", *given])
    if args.quick:
        return BenchConfig(
            duration_s=3,
            rounds=1,
            connections=args.connections,
            cold_runs=2,
            handler_requests=2000,
            predictor_rows=100_000,
            training_rows=args.training_rows,
            train_large=False,
            server_cpus=args.server_cpus,
            load_cpus=args.load_cpus,
            results_file=args.results or QUICK_RESULTS_FILE,
            command=command,
        )
    return BenchConfig(
        duration_s=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        cold_runs=args.cold_runs,
        handler_requests=args.handler_requests,
        predictor_rows=args.predictor_rows,
        training_rows=args.training_rows,
        train_large=not args.skip_large_training,
        server_cpus=args.server_cpus,
        load_cpus=args.load_cpus,
        results_file=args.results or RESULTS_FILE,
        command=command,
    )


def run(config: BenchConfig, work: Path) -> Results:
    """Every section in turn; CPU samples around the run and the HTTP section measure contention."""
    results = Results(facts=machine_facts())
    cores = int(results.facts["nproc"] or 1)
    run_start = CpuSample.take()
    with stage("models: the service's own training run, the other model type, the reference"):
        models = prepare_models(work, results)
    http_start = CpuSample.take()
    with stage("HTTP: wrk against both designs, and /predict/batch for both model types"):
        measure_http(models, config, work, results)
    http_end = CpuSample.take()
    with stage("Lambda handler in process"):
        measure_handler(models, config, work, results)
    with stage("cold starts"):
        measure_cold_start(models, config, work, results)
    with stage("predictor on many rows"):
        measure_predictor(models, config, work, results)
    with stage("training wall time"):
        measure_training(config, work, results)
    run_end = CpuSample.take()
    results.facts["load_after"] = os.getloadavg()
    results.facts["others_share_run"] = others_share(run_start, run_end, cores)
    results.facts["others_share_http"] = others_share(http_start, http_end, cores)
    results.facts["contended"] = (
        max(results.facts["others_share_run"], results.facts["others_share_http"])
        >= CONTENTION_SHARE
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="loan-bench-") as tmp:
        work = Path(tmp)
        say(f"benchmark workspace {work} (logs of every server and training run)")
        try:
            results = run(config, work)
        except Exception:
            say(f"benchmark failed; logs in {work}:")
            for log in sorted(work.glob("*.log")):
                say(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
            raise
    markdown = render(results, config)
    say("\n" + markdown)
    config.results_file.write_text(markdown, encoding="utf-8")
    say(f"wrote {config.results_file}")
    failed_requests = errors_total(results)
    missed = [name for name, met, _ in goals(results) if not met]
    if failed_requests:
        say(f"FAILED: {failed_requests} requests failed under load")
    if missed:
        say(
            "goals missed: "
            + "; ".join(missed)
            + (" (measured under contention)" if results.facts["contended"] else "")
        )
    return 1 if failed_requests or missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
