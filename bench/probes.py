"""Measurements that must run in a FRESH process, one subcommand each; bench.run starts them.

A fresh process per measurement keeps them honest: a cold start has to pay for every import, and
an in-process latency figure must not inherit scikit-learn's threads or the caches of whatever the
benchmark did before. Each subcommand writes its figures as JSON (``--json PATH``) because the
service's own output (Powertools prints one EMF metrics document per Lambda invocation) shares
stdout. The cold-start subcommands print ``ANSWERED <status>`` once the first answer exists; the
parent times the process from spawn to that line.

    .venv/bin/python -m bench.probes handler-latency --artifacts artifacts --json /tmp/h.json
    .venv/bin/python -m bench.probes predictor-throughput --artifacts artifacts --rows 1000000 \
        --json /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from tests.support.events import load_sample_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.paths import LAMBDA_ROOT, REPO_ROOT

ANSWERED_MARKER: Final = "ANSWERED"


def _import_main(artifacts: Path) -> Any:
    """``import main`` the way Lambda does: ``lambda/`` on the path, ARTIFACT_DIR set."""
    os.environ["ARTIFACT_DIR"] = str(artifacts.resolve())
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            del os.environ[name]
    sys.path.insert(0, str(LAMBDA_ROOT))
    import main

    return main


def handler_latency(artifacts: Path, requests: int) -> dict[str, Any]:
    """p50/p99 of ``main.handler(event, context)`` for one prediction, in this fresh process.

    The measurement itself is the serving benchmark's (``bench/serving.py``), reused so
    both reports quote the same figure; it also times the bare Mangum adapter.
    """
    from dataclasses import asdict

    from bench.serving import measure_handler_latency

    figures = asdict(measure_handler_latency(artifacts.resolve(), samples=requests))
    figures["event"] = "API Gateway HTTP API (payload 2.0), POST /predict, one loan"
    return figures


def answer_main(artifacts: Path) -> None:
    """Cold start of the service: import ``main`` (verify + load the model), answer one event."""
    main = _import_main(artifacts)
    response = main.handler(load_sample_event("apigw-http-v2-predict.json"), FakeLambdaContext())
    print(f"{ANSWERED_MARKER} {response['statusCode']}", flush=True)


def answer_reference(model_dir: Path) -> None:
    """Cold start of the original design: import Flask + scikit-learn, unpickle, answer once."""
    sys.path.insert(0, str(REPO_ROOT))
    from bench.reference_app import create_app
    from tests.support.loans import TYPICAL_LOAN

    client = create_app(model_dir).test_client()
    response = client.post("/predict", json=TYPICAL_LOAN)
    print(f"{ANSWERED_MARKER} {response.status_code}", flush=True)


def predictor_throughput(artifacts: Path, rows: int, chunk: int, seed: int) -> dict[str, Any]:
    """Rows/s through the serving predictor (ONNX Runtime, one thread), no HTTP, no JSON.

    ``pd_only``: ``DefaultRiskModel.probability`` on all rows in one call. ``with_reasons``:
    ``DefaultRiskModel.score`` in ``chunk``-row calls, as ``/predict/batch`` runs it (each row
    scored with its six counterfactuals, so 7 model rows per loan).
    """
    sys.path.insert(0, str(LAMBDA_ROOT))
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np

    from loan_service.artifacts import load_artifacts
    from loan_service.predictor import DefaultRiskModel, load_probability_model
    from training.schema import FEATURES
    from training.synthesize import generate_loans

    bundle = load_artifacts(artifacts, FEATURES)
    model = DefaultRiskModel(load_probability_model(bundle, "onnx"), bundle.stats)
    raw = np.ascontiguousarray(
        generate_loans(rows, seed)[list(FEATURES)].to_numpy(dtype=np.float64)
    )
    model.probability(raw[:chunk])  # first-call setup outside the clock
    started = time.perf_counter()
    probabilities = model.probability(raw)
    pd_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, rows, chunk):
        model.score(raw[start : start + chunk])
    reasons_seconds = time.perf_counter() - started
    return {
        "model": bundle.manifest.model.name,
        "runtime": model.runtime,
        "rows": rows,
        "chunk": chunk,
        "pd_only_seconds": round(pd_seconds, 3),
        "pd_only_rows_per_second": round(rows / pd_seconds),
        "with_reasons_seconds": round(reasons_seconds, 3),
        "with_reasons_rows_per_second": round(rows / reasons_seconds),
        "mean_probability": round(float(probabilities.mean()), 4),
    }


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    latency = commands.add_parser("handler-latency", help="in-process Lambda handler p50/p99")
    latency.add_argument("--artifacts", type=Path, required=True)
    latency.add_argument("--requests", type=int, default=20_000)
    latency.add_argument("--json", type=Path, required=True)
    cold_main = commands.add_parser("answer-main", help="cold start: import main, answer once")
    cold_main.add_argument("--artifacts", type=Path, required=True)
    cold_reference = commands.add_parser("answer-reference", help="cold start: original design")
    cold_reference.add_argument("--model-dir", type=Path, required=True)
    throughput = commands.add_parser("predictor-throughput", help="rows/s, no HTTP")
    throughput.add_argument("--artifacts", type=Path, required=True)
    throughput.add_argument("--rows", type=int, default=1_000_000)
    throughput.add_argument("--chunk", type=int, default=1000)
    throughput.add_argument("--seed", type=int, default=7)
    throughput.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "handler-latency":
        _write_json(args.json, handler_latency(args.artifacts, args.requests))
    elif args.command == "answer-main":
        answer_main(args.artifacts)
    elif args.command == "answer-reference":
        answer_reference(args.model_dir)
    else:
        _write_json(
            args.json, predictor_throughput(args.artifacts, args.rows, args.chunk, args.seed)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
