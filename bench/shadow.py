"""Shadow challenger cost: the Lambda handler's p50/p99 with shadowing at 100 % vs off.

``python -m bench.shadow [--artifacts DIR]``. Builds, in this process, two handlers on the same
artifact folder with a challenger beside it (a copy of the champion's files under its own model
version): one with ``SHADOW_SAMPLE_RATE=0``, one with ``1``. Rounds alternate between them so
background load hits both alike; each round times ``handler(event, context)`` for a single-loan
``POST /predict`` (API Gateway HTTP API event). It also checks that both answer the same bytes.
Budget: p99 with shadowing within 15 % of p99 without. A benchmark, not a test: figures from a
loaded machine say so (load average printed).
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
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_ROOT = REPO_ROOT / "lambda"
DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"
BUDGET_P99_RATIO = 1.15
SAMPLE_LOAN = {
    "credit_lines_outstanding": 1,
    "loan_amt_outstanding": 4500.0,
    "total_debt_outstanding": 7800.0,
    "income": 72000.0,
    "years_employed": 5,
    "fico_score": 640,
}


def copy_as_challenger(source: Path, destination: Path, model_version: str) -> Path:
    """The champion's files as a challenger of another version: every file that names its model
    is restamped and re-hashed in the manifest, so the copy verifies like a real second model."""
    import hashlib

    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("report", "challenger"))
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest["model_version"] = model_version
    for name in manifest["files"]:
        path = destination / name
        if path.suffix != ".json":
            continue
        content = json.loads(path.read_text())
        if isinstance(content, dict) and "model_version" in content:
            content["model_version"] = model_version
            path.write_text(json.dumps(content))
            manifest["files"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def _event() -> dict[str, Any]:
    from bench.serving import _http_api_event

    event = _http_api_event("/predict", SAMPLE_LOAN)
    event["headers"]["x-request-id"] = "bench-shadow"
    return event


def _handler(artifacts: Path, rate: float) -> Any:
    if str(LAMBDA_ROOT) not in sys.path:
        sys.path.insert(0, str(LAMBDA_ROOT))
    from loan_service.application import build_service, create_app
    from loan_service.lambda_adapter import build_lambda_handler
    from loan_service.settings import Settings

    settings = Settings(artifact_dir=artifacts, shadow_sample_rate=rate, mlflow_tracking_uri=None)
    service = build_service(settings, LAMBDA_ROOT, log_stream=io.StringIO())
    return build_lambda_handler(create_app(settings, service=service), service), service


def _percentiles_us(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def measure(artifacts: Path, rounds: int, per_round: int) -> dict[str, Any]:
    from bench.serving import _FakeContext

    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as scratch:
        folder = Path(scratch) / "artifacts"
        shutil.copytree(artifacts, folder, ignore=shutil.ignore_patterns("report", "challenger"))
        version = json.loads((folder / "manifest.json").read_text())["model_version"]
        copy_as_challenger(folder, folder / "challenger", f"{version}-challenger")
        handlers = {"off": _handler(folder, 0.0), "on": _handler(folder, 1.0)}
        event = _event()
        context = _FakeContext()
        timings: dict[str, list[int]] = {"off": [], "on": []}
        bodies = {}
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
