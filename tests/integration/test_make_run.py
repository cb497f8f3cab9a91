"""``make run`` as a newcomer runs it: a local ``mlflow server`` starts, the service logs every
prediction to it as an MLflow trace, and Ctrl-C stops both (no server left behind).

The Makefile is run for real (``make run``), with the install step skipped (the suite's venv is
the one ``make run`` would build) and its ports and MLflow store moved into a temp folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.loans import TYPICAL_LOAN
from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port

pytestmark = pytest.mark.slow
READY_SECONDS = 300.0
STOP_SECONDS = 60.0


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_until_up(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"make run exited {process.returncode}"
        try:
            get_json(url)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def port_is_closed(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    except OSError:
        return True
    return False


def test_make_run_logs_predictions_to_a_local_mlflow_server_it_starts_and_stops(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    service_port, mlflow_port = free_port(), free_port()
    log = tmp_path / "mlflow-server.log"
    command = [
        "make",
        "--no-print-directory",
        "run",
        "RUN_INSTALLED=",
        f"ARTIFACTS={trained_artifacts}",
        f"PORT={service_port}",
        f"MLFLOW_UI_PORT={mlflow_port}",
        f"MLFLOW_DB={tmp_path / 'mlflow.db'}",
        f"MLFLOW_ARTIFACTS={tmp_path / 'mlartifacts'}",
        f"MLFLOW_SERVER_LOG={log}",
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches make's whole process group, as in a terminal
    )
    try:
        wait_until_up(f"http://127.0.0.1:{service_port}/health", process, READY_SECONDS)
        request = urllib.request.Request(
            f"http://127.0.0.1:{service_port}/predict",
            data=json.dumps(TYPICAL_LOAN).encode(),
            headers={"content-type": "application/json", "x-request-id": "make-run-1"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        trace = wait_for_trace(f"http://127.0.0.1:{mlflow_port}", "make-run-1")
        assert trace.data.spans[0].outputs == answer
        assert trace.data.spans[0].inputs == {k: float(v) for k, v in TYPICAL_LOAN.items()}
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=STOP_SECONDS)
    assert "MLflow stopped" in output, output
    assert port_is_closed(service_port), output
    assert port_is_closed(mlflow_port), output
    assert (tmp_path / "mlflow.db").exists()


def wait_for_trace(tracking_uri: str, request_id: str, timeout: float = 120.0) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("loan-default-serving")
        if experiment is not None:
            found = client.search_traces(
                locations=[experiment.experiment_id],
                filter_string=f"tags.request_id = '{request_id}'",
            )
            if found:
                return found[0]
        time.sleep(1)
    raise AssertionError(f"no trace with request id {request_id}")
