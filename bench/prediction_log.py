"""Prediction-log export capacity: MLflow traces per second, to a local MLflow server over OTLP.

What it measures: the exporter the service runs (``lambda/loan_service/prediction_log.py``), fed a
backlog, as under a load above its capacity. Records are real answers of the trained model
(``/predict`` singles: loan in, full answer out). For each run, in a fresh process, the logger
connects and exports 20 warm-up records first (first calls pay for lazy imports, in the server
too); then N records are enqueued at once and the clock runs until the last one is exported:
N / elapsed is the sustained export rate. Afterwards every request id is looked up in
MLflow: a run counts only if all N traces are there.

Runs, against an ``mlflow server`` started here with a SQLite store and one worker (the only
backend: the service sends traces over OTLP, which only a server receives):

* ``batched``: the service's settings (up to ``MAX_BATCH_RECORDS`` traces per round trip);
* ``per-trace``: the same code with a batch cap of 1 (one round trip per trace);
* ``previous``: the design before batching (one MLflow trace per record through MLflow's own
  tracing exporter), loaded from git history (``PREVIOUS_DESIGN_COMMIT``).

Usage: ``.venv/bin/python -m bench.prediction_log [--records 2000] [--slow-records 200]
[--designs batched,per-trace,previous] [--artifacts DIR] [--json]``.
The load average is printed with every figure: above 1 on this 2-core machine, the figure was
measured under contention.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.support.servers import running_mlflow_server

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_ROOT = REPO_ROOT / "lambda"
DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"
PREVIOUS_DESIGN_COMMIT = "4005d759a8baaa90fdcd3e162f608bcf275f6a50"  # one trace per MLflow call
PREDICTION_LOG_PATH = "lambda/loan_service/prediction_log.py"
DESIGNS = ("batched", "per-trace", "previous")
BACKENDS = ("server",)
CONTENTION_LOAD = 1.0
RUN_TIMEOUT_SECONDS = 900
WARM_UP_RECORDS = 20


@dataclass
class ExportRun:
    backend: str
    design: str
    records: int
    seconds: float
    traces_per_s: float
    round_trips: int
    exported: int
    failed: int
    found_in_mlflow: int
    load_before: float
    load_after: float

    @property
    def under_contention(self) -> bool:
        return max(self.load_before, self.load_after) > CONTENTION_LOAD


class BenchmarkError(RuntimeError):
    """A prerequisite is missing; the message says how to get it."""


# --- worker: one measurement, in a fresh process ----------------------------------------------
def _previous_design_module(workdir: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{PREVIOUS_DESIGN_COMMIT}:{PREDICTION_LOG_PATH}"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = workdir / "previous_prediction_log.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_prediction_log", path)
    if spec is None or spec.loader is None:
        raise BenchmarkError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(artifacts: Path, count: int, run_id: str) -> list[Any]:
    """``count`` /predict records holding real answers of the trained model."""
    import numpy as np

    from loan_service.application import build_service
    from loan_service.prediction_log import DisabledPredictionLog, PredictionRecord
    from loan_service.settings import Settings

    service = build_service(
        Settings(artifact_dir=artifacts), prediction_log=DisabledPredictionLog()
    )
    rng = np.random.default_rng(7)
    loans = np.column_stack(
        [
            rng.integers(0, 6, count),
            rng.uniform(1_000, 10_000, count).round(2),
            rng.uniform(2_000, 30_000, count).round(2),
            rng.uniform(20_000, 120_000, count).round(2),
            rng.integers(0, 11, count),
            rng.integers(400, 851, count),
        ]
    ).astype(float)
    records = []
    for i in range(count):
        raw = loans[i : i + 1]
        request_id = f"{run_id}-{i}"
        answers = service.assessor.assess_matrix(raw, request_id)
        records.append(
            PredictionRecord(time.time_ns(), 180_000, request_id, "/predict", raw, answers)
        )
    return records


def _count_found(tracking_uri: str, experiment_name: str, request_ids: set[str]) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return 0
    found: set[str] = set()
    page_token = None
    while True:
        page = client.search_traces(
            locations=[experiment.experiment_id],
            max_results=500,
            page_token=page_token,
            include_spans=False,
        )
        found.update(trace.info.tags.get("request_id", "") for trace in page)
        page_token = page.token
        if not page_token:
            return len(found & request_ids)


def run_worker(backend: str, design: str, tracking_uri: str, records: int, artifacts: Path) -> None:
    """Measure one (backend, design) pair and print it as one JSON line."""
    sys.path.insert(0, str(LAMBDA_ROOT))
    run_id = f"bench-{design}-{uuid.uuid4().hex[:8]}"
    warm_up = _records(artifacts, WARM_UP_RECORDS, f"{run_id}-warm-up")
    batch = _records(artifacts, records, run_id)
    with tempfile.TemporaryDirectory() as workdir:
        features: dict[str, Any] = {}
        if design == "previous":
            module: Any = _previous_design_module(Path(workdir))
            options: dict[str, Any] = {}
        else:
            import loan_service.prediction_log as module

            options = {"max_batch_records": 1} if design == "per-trace" else {}
            manifest = json.loads((artifacts / "manifest.json").read_text())
            features = {"features": manifest["features"]}
        log = module.BackgroundPredictionLog(
            module.MlflowTraceExporter(tracking_uri, run_id, **features),
            capacity=records,
            **options,
        ).start()
        deadline = time.monotonic() + 120
        while log.status().state != "ok":
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the logger never connected: {log.status()}")
            time.sleep(0.05)
        for record in warm_up:  # first calls pay for lazy imports, in the server too
            log.record(record)
        if not log.wait_until_idle(RUN_TIMEOUT_SECONDS):
            raise BenchmarkError("warm-up export unfinished")
        exported_before = log.status().exported
        round_trips_before = getattr(log, "batches_exported", exported_before)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        for record in batch:
            log.record(record)
        if not log.wait_until_idle(RUN_TIMEOUT_SECONDS):
            raise BenchmarkError(f"export unfinished after {RUN_TIMEOUT_SECONDS} s")
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()[0]
        status = log.status()
        exported = status.exported - exported_before
        round_trips = getattr(log, "batches_exported", status.exported) - round_trips_before
        log.close()
    found = _count_found(tracking_uri, run_id, {record.request_id for record in batch})
    result = ExportRun(
        backend=backend,
        design=design,
        records=records,
        seconds=round(seconds, 3),
        traces_per_s=round(exported / seconds, 1),
        round_trips=round_trips,
        exported=exported,
        failed=status.failed,
        found_in_mlflow=found,
        load_before=load_before,
        load_after=load_after,
    )
    print(json.dumps(asdict(result)))


# --- orchestration ------------------------------------------------------------------------------
def _measure(backend: str, design: str, uri: str, records: int, artifacts: Path) -> ExportRun:
    command = [
        sys.executable,
        "-m",
        "bench.prediction_log",
        "--worker",
        f"{backend},{design},{uri},{records}",
        "--artifacts",
        str(artifacts),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        check=False,
        env=clean,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS + 300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchmarkError(f"{backend}/{design} run failed:\n{done.stderr[-3000:]}")
    return ExportRun(**json.loads(lines[-1]))


def _table(runs: list[ExportRun]) -> str:
    rows = [
        "| backend | design | records | traces/s | round trips | found in MLflow | load avg |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        contention = " (under contention)" if run.under_contention else ""
        rows.append(
            f"| {run.backend} | {run.design} | {run.records:,} | **{run.traces_per_s:,.1f}** | "
            f"{run.round_trips:,} | {run.found_in_mlflow:,}/{run.records:,} | "
            f"{run.load_before:.2f} -> {run.load_after:.2f}{contention} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--records", type=int, default=2000, help="records per batched run")
    parser.add_argument(
        "--slow-records", type=int, default=200, help="records per per-trace/previous run"
    )
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--json", action="store_true", help="print JSON lines instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        backend, design, uri, records = args.worker.split(",")
        run_worker(backend, design, uri, int(records), args.artifacts)
        return 0
    if not (args.artifacts / "manifest.json").exists():
        raise BenchmarkError(f"no trained model in {args.artifacts}: run `make train` first")
    designs = [name for name in args.designs.split(",") if name]
    runs: list[ExportRun] = []
    with tempfile.TemporaryDirectory(prefix="bench-prediction-log-") as home:
        for backend in BACKENDS:
            with running_mlflow_server(Path(home)) as uri:
                for design in designs:
                    records = args.records if design == "batched" else args.slow_records
                    run = _measure(backend, design, uri, records, args.artifacts)
                    runs.append(run)
                    if args.json:
                        print(json.dumps(asdict(run)), flush=True)
    if not args.json:
        print(_table(runs))
        print(f"\n{os.cpu_count()} CPUs; `load avg` is the 1-minute load before -> after the run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
