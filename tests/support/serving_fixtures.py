"""Helpers the serving tests share: settings, app and handler builders, a uvicorn process.

A plain module (not a conftest): each test module imports what it uses and declares its own small
fixtures, so it is obvious where everything comes from. Models always come from the
``trained_artifacts`` fixture (a real ``python -m training`` run), never from a hand-made file.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra_cdk.ecs_entry import GRACEFUL_STOP_STATUSES
from loan_service.application import ServiceApp, build_service, create_app
from loan_service.lambda_adapter import LambdaHandler, build_lambda_handler
from loan_service.prediction_log import PredictionLog
from loan_service.service import PredictionService
from loan_service.settings import Settings
from tests.support.paths import LAMBDA_ROOT, REPO_ROOT, SHARED_EVENTS_DIR
from tests.support.servers import uvicorn_command

needs_shared_events = pytest.mark.skipif(
    not SHARED_EVENTS_DIR.is_dir(), reason=f"{SHARED_EVENTS_DIR} is absent"
)
"""For tests on AWS's own sample events (../shared/events): skipped where they are absent."""


def make_settings(artifact_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: every field given explicitly, so the caller's environment is ignored."""
    values: dict[str, Any] = {
        "artifact_dir": artifact_dir,
        "model_runtime": "onnx",
        "recovery_rate": 0.10,
        "log_level": "INFO",
        "api_base_path": "",
        "mlflow_tracking_uri": None,
        "mlflow_experiment_name": "loan-default-serving",
        "mlflow_tracking_token_secret_arn": None,
        "prediction_log_queue_size": 1000,
        "service_name": "loan-default",
        "metrics_namespace": "LoanDefault",
        "on_lambda": False,
        "on_ecs": False,
        "shadow_sample_rate": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


def build_test_app(
    artifact_dir: Path,
    prediction_log: PredictionLog | None = None,
    log_stream: io.StringIO | None = None,
    **overrides: Any,
) -> tuple[ServiceApp, PredictionService]:
    settings = make_settings(artifact_dir, **overrides)
    service = build_service(
        settings, LAMBDA_ROOT, prediction_log=prediction_log, log_stream=log_stream
    )
    return create_app(settings, service=service), service


def build_test_handler(
    artifact_dir: Path, log_stream: io.StringIO | None = None, **overrides: Any
) -> tuple[LambdaHandler, PredictionService]:
    app, service = build_test_app(artifact_dir, log_stream=log_stream, **overrides)
    return build_lambda_handler(app, service), service


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def lines(stream: io.StringIO) -> Iterator[str]:
    yield from (line for line in stream.getvalue().splitlines() if line.strip())


def start_uvicorn(
    artifact_dir: Path, port: int, env: dict[str, str] | None = None, workers: int = 1
) -> subprocess.Popen[str]:
    """The service under uvicorn (``servers.uvicorn_command``: httptools + uvloop, the server
    ``make serve`` starts through ``http_server``) on ``port``, at INFO so its shutdown shows."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    command = [*uvicorn_command(port, workers, log_level="info"), "--app-dir", str(LAMBDA_ROOT)]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**clean, "ARTIFACT_DIR": str(artifact_dir), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_http(url: str, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; fail early (with its output) if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"process exited with {process.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[str], timeout: float = 20.0) -> tuple[int, str]:
    """SIGTERM, wait (SIGKILL after ``timeout``); returns the exit status and the output.

    uvicorn >= 0.29 re-raises a captured SIGTERM after its graceful shutdown, so a clean stop
    ends with status -15 and "Application shutdown complete." in the output.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    output = process.stdout.read() if process.stdout else ""
    return int(process.returncode), output


def stopped_gracefully(status: int, output: str) -> bool:
    return status in GRACEFUL_STOP_STATUSES and "Application shutdown complete." in output
