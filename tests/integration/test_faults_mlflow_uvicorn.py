"""A dead MLflow tracking server, with the real HTTP server and its logs on (the ECS/``make serve``
path; the in-process Lambda path and the latency ratio are covered in test_serving_mlflow_logging).

Two faults, both on loopback: the tracking URI at a closed port (connection refused at once) and
at a black-hole port (SYNs dropped: every connect hangs until the client's timeout, as towards a
non-routable address). In both, uvicorn serves one process with ``LOG_LEVEL=INFO``, prediction
logging switched on and a small queue (100 records), and:

* every prediction is answered, and none waits on the network (the MLflow client's timeout is 2 s;
  the slowest answer stays far below it);
* ``/health`` shows logging enabled and backing off, nothing exported, and every record either
  queued or dropped and counted;
* the log says what is wrong in a few WARNING lines (backoff, not one line per request), with no
  traceback;
* SIGTERM still shuts the server down promptly and gracefully (the logger's drain is bounded).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.faults_network import black_hole_port, closed_port, connect_outcome
from tests.support.loans import loan_rows
from tests.support.paths import PROJECT_CSV
from tests.support.servers import Server, get_json, running_service

PREDICTIONS: Final = 400
BATCHES: Final = 20
BATCH_SIZE: Final = 10
QUEUE_SIZE: Final = 100
NEVER_WAITED_ON_NETWORK_SECONDS: Final = 1.0  # half the MLflow client's 2 s timeout
BACKOFF_STATE_TIMEOUT_SECONDS: Final = 20.0
SHUTDOWN_BOUND_SECONDS: Final = 20.0
CONNECT_WARNING: Final = "MLflow prediction logging cannot connect"
MAX_CONNECT_WARNINGS: Final = 8

pytestmark = pytest.mark.slow


@dataclass
class FaultRun:
    latencies: list[float]
    statuses: list[int]
    health: dict[str, Any]
    log: str
    returncode: int | None
    shutdown_seconds: float


@contextlib.contextmanager
def dead_tracking_uri(fault: str) -> Iterator[str]:
    if fault == "closed-port":
        port = closed_port()
        assert connect_outcome(port) == "refused"
        yield f"http://127.0.0.1:{port}"
    else:
        with black_hole_port() as port:
            yield f"http://127.0.0.1:{port}"


def _post(connection: http.client.HTTPConnection, path: str, body: Any) -> tuple[int, float]:
    started = time.perf_counter()
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def _health_when_backing_off(server: Server) -> dict[str, Any]:
    deadline = time.monotonic() + BACKOFF_STATE_TIMEOUT_SECONDS
    while True:
        status, health = get_json(server.port, "/health")
        assert status == 200, health
        if health["prediction_log"]["state"] == "backoff" or time.monotonic() > deadline:
            return dict(health)
        time.sleep(0.2)


def serve_with_dead_tracking_server(fault: str, artifacts: Path, log: Path) -> FaultRun:
    loans = loan_rows(PROJECT_CSV, PREDICTIONS)
    with (
        dead_tracking_uri(fault) as uri,
        running_service(
            artifacts,
            log,
            workers=1,
            log_level="info",
            MLFLOW_TRACKING_URI=uri,
            MLFLOW_EXPERIMENT_NAME="faults",
            LOG_LEVEL="INFO",
            PREDICTION_LOG_QUEUE_SIZE=str(QUEUE_SIZE),
        ) as server,
    ):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        answers = [_post(connection, "/predict", loan) for loan in loans]
        answers += [
            _post(connection, "/predict/batch", {"loans": loans[i : i + BATCH_SIZE]})
            for i in range(0, BATCHES * BATCH_SIZE, BATCH_SIZE)
        ]
        connection.close()
        health = _health_when_backing_off(server)
        stop_sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            returncode: int | None = server.process.wait(SHUTDOWN_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            returncode = None
        shutdown_seconds = time.monotonic() - stop_sent
    return FaultRun(
        latencies=[latency for _, latency in answers],
        statuses=[status for status, _ in answers],
        health=health,
        log=server.log_text(),
        returncode=returncode,
        shutdown_seconds=shutdown_seconds,
    )


@pytest.fixture(scope="module", params=["closed-port", "black-hole"])
def fault_run(
    request: pytest.FixtureRequest,
    trained_artifacts: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> FaultRun:
    log = tmp_path_factory.mktemp("mlflow-fault") / f"uvicorn-{request.param}.log"
    return serve_with_dead_tracking_server(request.param, trained_artifacts, log)


def test_the_black_hole_drops_connects_while_the_closed_port_refuses_them() -> None:
    assert connect_outcome(closed_port()) == "refused"
    with black_hole_port() as port:
        assert connect_outcome(port) == "timeout"


def test_every_prediction_is_answered_without_waiting_on_the_network(fault_run: FaultRun) -> None:
    assert fault_run.statuses == [200] * (PREDICTIONS + BATCHES)
    slowest = max(fault_run.latencies)
    assert slowest < NEVER_WAITED_ON_NETWORK_SECONDS, f"slowest answer took {slowest:.3f} s"


def test_health_shows_logging_backing_off_with_every_record_queued_or_counted_as_dropped(
    fault_run: FaultRun,
) -> None:
    log_status = fault_run.health["prediction_log"]
    assert log_status["enabled"] is True
    assert log_status["state"] == "backoff", log_status
    assert log_status["exported"] == 0
    # Every answered request is one record: the readiness probe, the singles and the batches.
    records = 1 + PREDICTIONS + BATCHES
    assert log_status["queued"] + log_status["dropped"] + log_status["failed"] == records
    assert log_status["queued"] <= QUEUE_SIZE
    assert log_status["dropped"] >= records - QUEUE_SIZE - 1
    assert fault_run.health["predictions_served"] >= PREDICTIONS + BATCHES * BATCH_SIZE


def test_the_log_names_the_problem_a_few_times_not_once_per_request(fault_run: FaultRun) -> None:
    warnings = [line for line in fault_run.log.splitlines() if CONNECT_WARNING in line]
    assert 1 <= len(warnings) <= MAX_CONNECT_WARNINGS, warnings
    assert "Traceback" not in fault_run.log


def test_sigterm_still_shuts_the_server_down_promptly_and_gracefully(fault_run: FaultRun) -> None:
    assert fault_run.returncode is not None, "no exit within the bound"
    assert fault_run.shutdown_seconds < SHUTDOWN_BOUND_SECONDS
    assert "Application shutdown complete." in fault_run.log
    # 0, or the SIGTERM uvicorn re-raises after a graceful single-process shutdown (see
    # test_faults_sigterm for that finding).
    assert fault_run.returncode in (0, -signal.SIGTERM)
