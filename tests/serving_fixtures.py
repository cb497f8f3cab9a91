"""Helpers the serving tests share: sample loans, Lambda events and context, app builders.

A plain module (not a conftest): each test module imports what it uses and declares its own small
fixtures, so it is obvious where everything comes from. Models always come from the
``trained_artifacts`` fixture (a real ``python -m training`` run), never from a hand-made file.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from loan_service.application import build_service, create_app
from loan_service.lambda_adapter import LambdaHandler, build_lambda_handler
from loan_service.prediction_log import PredictionLog
from loan_service.service import PredictionService
from loan_service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_ROOT = REPO_ROOT / "lambda"
PROJECT_EVENTS_DIR = Path(__file__).resolve().parent / "functional" / "events"
SHARED_EVENTS_DIR = REPO_ROOT.parent / "shared" / "events"

TYPICAL_LOAN: dict[str, Any] = {
    "credit_lines_outstanding": 1,
    "loan_amt_outstanding": 4500.0,
    "total_debt_outstanding": 7800.0,
    "income": 72000.0,
    "years_employed": 5,
    "fico_score": 640,
}
# Five credit lines and debt at 62 % of income: the textbook risky applicant.
RISKY_LOAN: dict[str, Any] = {
    "credit_lines_outstanding": 5,
    "loan_amt_outstanding": 6000.0,
    "total_debt_outstanding": 25000.0,
    "income": 40000.0,
    "years_employed": 2,
    "fico_score": 580,
}
# Every feature on the safe side of the training mean.
SAFE_LOAN: dict[str, Any] = {
    "credit_lines_outstanding": 0,
    "loan_amt_outstanding": 3000.0,
    "total_debt_outstanding": 2000.0,
    "income": 90000.0,
    "years_employed": 8,
    "fico_score": 780,
}
# A PD strictly between 0.001 and 0.999 with the trained model: its reasons are well separated.
MIDDLING_LOAN: dict[str, Any] = {
    "credit_lines_outstanding": 1,
    "loan_amt_outstanding": 4000.0,
    "total_debt_outstanding": 12000.0,
    "income": 45000.0,
    "years_employed": 1,
    "fico_score": 560,
}


@dataclass
class FakeLambdaContext:
    """The attributes the Lambda Python runtime's context object has (Powertools reads them)."""

    function_name: str = "loan-default-predict"
    function_version: str = "$LATEST"
    invoked_function_arn: str = (
        "arn:aws:lambda:eu-west-1:123456789012:function:loan-default-predict"
    )
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "6f1c0f7e-2b8e-4e7a-9d55-3f1d2c4b5a69"
    log_group_name: str = "/aws/lambda/loan-default-predict"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


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
) -> tuple[FastAPI, PredictionService]:
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


def load_project_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((PROJECT_EVENTS_DIR / name).read_text())
    return event


def load_shared_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((SHARED_EVENTS_DIR / name).read_text())
    return event


def shape_event(
    event: dict[str, Any],
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """Point a real event shape at ``method path`` with a JSON ``body`` (the shape's own keys)."""
    shaped = copy.deepcopy(event)
    text = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    if text is not None and base64_body:
        shaped["body"] = base64.b64encode(text.encode()).decode()
    else:
        shaped["body"] = text
    shaped["isBase64Encoded"] = bool(base64_body and text is not None)
    new_headers = {"content-type": "application/json"} if headers is None else dict(headers)
    context = shaped.setdefault("requestContext", {})
    if shaped.get("version") == "2.0":  # HTTP API v2 and function URLs
        shaped["rawPath"] = path
        shaped["rawQueryString"] = ""
        shaped.pop("cookies", None)
        context.setdefault("http", {})
        context["http"]["method"] = method
        context["http"]["path"] = path
        shaped["headers"] = new_headers
    else:  # REST v1 and ALB
        shaped["httpMethod"] = method
        shaped["path"] = path
        shaped["queryStringParameters"] = None
        shaped["multiValueQueryStringParameters"] = None
        shaped["headers"] = new_headers
        if "multiValueHeaders" in shaped:
            shaped["multiValueHeaders"] = {key: [value] for key, value in new_headers.items()}
        if "httpMethod" in context:
            context["httpMethod"] = method
    return shaped


def response_json(response: dict[str, Any]) -> Any:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def response_header(response: dict[str, Any], name: str) -> str | None:
    headers = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    value = headers.get(name.lower())
    if value is None:
        multi = {
            key.lower(): values for key, values in (response.get("multiValueHeaders") or {}).items()
        }
        values = multi.get(name.lower())
        value = values[0] if values else None
    return value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def lines(stream: io.StringIO) -> Iterator[str]:
    yield from (line for line in stream.getvalue().splitlines() if line.strip())


UVICORN_ARGS = ("--app-dir", str(LAMBDA_ROOT), "--http", "httptools", "--loop", "uvloop")


def start_uvicorn(
    artifact_dir: Path, port: int, env: dict[str, str] | None = None, workers: int = 1
) -> subprocess.Popen[str]:
    """``python -m uvicorn main:app`` with httptools + uvloop (the server ``make serve`` starts
    through ``http_server``), on ``port``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "main:app",
        *UVICORN_ARGS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--workers",
        str(workers),
    ]
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
    return status in (0, -signal.SIGTERM) and "Application shutdown complete." in output
