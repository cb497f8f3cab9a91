"""Image budgets, measured on the emulated Lambda image (``tools/image_emulation.py``).

Builds the task root from Dockerfile.lambda's own instructions, then prints its size (largest
entries first) and the cold start, process start to first response, through the Runtime Interface
Client and through a bare interpreter, with ``MLFLOW_TRACKING_URI`` unset and set (to a closed
loopback port: the prediction log's imports are what the cold start pays for; its thread connects
after the answer). Exit status 1 when a budget is missed::

    .venv/bin/python -m bench.image                 # median of 7 cold starts; trains if needed
    .venv/bin/python -m bench.image --runs 11 --artifacts artifacts
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.before_after import COLD_START_BUDGET_S, COLD_START_MLFLOW_BUDGET_S
from bench.results_file import run_facts, write_block
from tools.image_emulation import (
    CACHE_DIR,
    IMAGE_TASK_ROOT,
    REPO_ROOT,
    EmulatedImage,
    EmulationError,
    RuntimeApiEmulator,
    build_context,
    build_image,
    context_bytes,
    invoke_handler_in_fresh_process,
    largest_entries,
    load_event,
    runtime_interface_client,
    tree_bytes,
)

TASK_ROOT_BUDGET_BYTES = 185 * 1000**2
# The cold-start budgets are before_after's (the same figures, measured there from the checkout).
COLD_START_BUDGET_SECONDS = COLD_START_BUDGET_S  # MLFLOW_TRACKING_URI unset
COLD_START_LOGGING_BUDGET_SECONDS = COLD_START_MLFLOW_BUDGET_S  # set: the OTLP exporter is imported


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), NaN where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def measure_cold_starts(
    image: EmulatedImage, runs: int, extra_env: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Seconds from process start to the first response, through both entry paths, ``runs`` times.

    ``runtime_interface_client``: ``python -m awslambdaric main.handler`` against the emulated
    Runtime API, timed until the /response POST arrives (what Lambda's cold start is), plus the CPU
    seconds that process had used by then (``cpu``: far less sensitive to other processes on a
    shared machine than the wall clock). ``direct``: a bare interpreter importing main.handler and
    calling it once.
    """
    event = load_event("apigw-http-v2-predict.json")
    timings: dict[str, list[float]] = {"runtime_interface_client": [], "cpu": [], "direct": []}
    for _ in range(runs):
        with RuntimeApiEmulator() as api:
            started = time.perf_counter()
            with runtime_interface_client(image, api, extra_env) as process:
                outcome = api.invoke(event)
                if outcome.kind != "response":
                    raise EmulationError(f"cold start run failed: {outcome}\n{process.output()}")
                timings["cpu"].append(_cpu_seconds(process.process.pid))
            timings["runtime_interface_client"].append(outcome.received_at - started)
        run = invoke_handler_in_fresh_process(image, [event], extra_env=extra_env)
        timings["direct"].append(run.first_response_seconds)
    return timings


def _find_artifacts(explicit: Path | None, workspace: Path) -> Path:
    if explicit is not None:
        return explicit
    if (REPO_ROOT / "artifacts" / "manifest.json").is_file():
        return REPO_ROOT / "artifacts"
    out = workspace / "artifacts"
    print("artifacts/ is missing: training a model into a temporary folder ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "training", "--no-mlflow", "--quiet", "--out", str(out)],
        cwd=REPO_ROOT,
        check=True,
    )
    return out


def _mb(size: int) -> str:
    return f"{size / 1000**2:.1f} MB ({size / 2**20:.1f} MiB)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="cold starts to measure (median shown)")
    parser.add_argument("--artifacts", type=Path, help="artifact folder (default: artifacts/)")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="emulated-image-", dir=CACHE_DIR) as tmp:
        workspace = Path(tmp)
        artifacts = _find_artifacts(args.artifacts, workspace)
        started = time.perf_counter()
        image = build_image(workspace / "build", artifacts)
        print(f"emulated build: {time.perf_counter() - started:.1f} s; {image.python.note}")

        task_root_size = tree_bytes(image.task_root)
        context = build_context(REPO_ROOT, replace={"artifacts": artifacts})
        print(f"\nbuild context ({len(context)} files): {_mb(context_bytes(context))}")
        print(f"task root {IMAGE_TASK_ROOT} (uncompressed): {_mb(task_root_size)}")
        largest = largest_entries(image.task_root)
        for name, size in largest:
            print(f"  {size / 1000**2:8.1f} MB  {name}")

        logging_env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}"}
        variants = {
            "MLFLOW_TRACKING_URI unset": measure_cold_starts(image, args.runs),
            "MLFLOW_TRACKING_URI set": measure_cold_starts(image, args.runs, logging_env),
        }
    load_after = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    contention = max(load_before, load_after) >= 0.5 * cores
    labels = {
        "runtime_interface_client": "awslambdaric, wall clock",
        "cpu": "awslambdaric, CPU time",
        "direct": "bare handler, wall clock",
    }
    budgets = [
        ("task root <= 185 MB", task_root_size <= TASK_ROOT_BUDGET_BYTES, _mb(task_root_size))
    ]
    limits = {
        "MLFLOW_TRACKING_URI unset": COLD_START_BUDGET_SECONDS,
        "MLFLOW_TRACKING_URI set": COLD_START_LOGGING_BUDGET_SECONDS,
    }
    for variant, timings in variants.items():
        print(f"\ncold start, {variant}, process start -> first response ({args.runs} runs each):")
        for path_name, values in timings.items():
            print(
                f"  {labels[path_name]:26s} median {statistics.median(values):.3f} s  "
                f"min {min(values):.3f} s  max {max(values):.3f} s"
            )
        cold_start = statistics.median(timings["runtime_interface_client"])
        figure = f"{cold_start:.3f} s (median wall clock, awslambdaric)"
        if contention:
            cpu = statistics.median(timings["cpu"])
            figure += f"; under contention - CPU time {cpu:.3f} s: measure again when idle"
        limit = limits[variant]
        budgets.append((f"cold start, {variant} <= {limit} s", cold_start <= limit, figure))
    print(
        f"\n  load average {load_before:.2f} before, {load_after:.2f} after, {cores} cores"
        + (": measured under contention" if contention else "")
    )
    print("\nbudgets:")
    for name, met, figure in budgets:
        print(f"  {'met ' if met else 'MISSED'}  {name:44s} {figure}")
    command = f"python -m bench.image --runs {args.runs}" + (
        f" --artifacts {args.artifacts}" if args.artifacts else ""
    )
    lines = [
        "## Image: the emulated Lambda task root (`bench/image.py`)",
        "",
        run_facts(load_before, load_after, command),
        f"- Task root {IMAGE_TASK_ROOT}, uncompressed: {_mb(task_root_size)}; largest entries: "
        + ", ".join(f"{name} {size / 1000**2:.1f} MB" for name, size in largest),
        f"- Cold start, process start to first response, {args.runs} runs each "
        "(median / min / max):",
        *(
            f"  - {variant}, {labels[path_name]}: {statistics.median(values):.3f} / "
            f"{min(values):.3f} / {max(values):.3f} s"
            for variant, timings in variants.items()
            for path_name, values in timings.items()
        ),
        "",
        "| budget | measured | |",
        "|---|---|---|",
        *(f"| {name} | {figure} | {'met' if met else 'missed'} |" for name, met, figure in budgets),
    ]
    write_block("image", lines)
    return 0 if all(met for _, met, _ in budgets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
