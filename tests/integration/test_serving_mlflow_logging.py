"""Prediction logging over OTLP against a real ``mlflow server`` (SQLite backend), from this venv
and from the Lambda image's task root (which has no MLflow package at all, only OpenTelemetry's
exporter), with a tracking URI that is not a server, and with no server.

Every prediction becomes one MLflow trace, found by its request id, whichever batch carried it; a
burst goes out in far fewer round trips than predictions; re-sending a batch (a retry after a
timeout that did land) duplicates nothing; a dead or unreachable tracking server changes neither
the answers nor their latency (p99 within 2x of logging off, measured interleaved in the same test
so both sides share the machine's noise).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loan_service.lambda_adapter import LambdaHandler
from loan_service.prediction_log import (
    TRACE_NAME,
    BackgroundPredictionLog,
    MlflowTraceExporter,
    PredictionRecord,
)
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES
from tests.support.events import load_project_event, response_json, shape_event
from tests.support.faults_network import black_hole_port
from tests.support.lambda_context import FakeLambdaContext
from tests.support.loans import MIDDLING_LOAN, RISKY_LOAN, TYPICAL_LOAN
from tests.support.servers import free_port, running_mlflow_server
from tests.support.serving_fixtures import (
    build_test_handler,
    percentile,
    start_uvicorn,
    stop_process,
    stopped_gracefully,
    wait_for_http,
)
from tools.image_emulation import (
    EMULATED_CONTEXT_SOURCE,
    build_image,
    isolated_python,
    lambda_environment,
)

pytestmark = pytest.mark.slow
LATENCY_SAMPLES = 4000


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free port with a SQLite store, polled until /health answers."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    """The logger configures the MLflow client through os.environ and mlflow's global URI."""
    saved_environ = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved_environ)
    if "mlflow" in sys.modules:
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None


def predict_event(loan: dict[str, Any], request_id: str) -> dict[str, Any]:
    """An HTTP API event whose gateway request id is ``request_id``: on Lambda the service takes
    its request id from API Gateway (each request its own), not from a client header."""
    event = shape_event(
        load_project_event("apigw-http-v2-prod-stage.json"),
        "POST",
        "/prod/predict",
        body=loan,
        headers={"content-type": "application/json"},
    )
    event["requestContext"]["requestId"] = request_id
    return event


def experiment_id_of(tracking_uri: str, experiment_name: str) -> str:
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment_name)
    assert experiment is not None, f"experiment {experiment_name} was never created"
    return str(experiment.experiment_id)


def traces_of(tracking_uri: str, experiment_name: str, include_spans: bool = True) -> list[Any]:
    """Every trace of the experiment (search_traces pages hold at most 500)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    location = experiment_id_of(tracking_uri, experiment_name)
    found: list[Any] = []
    page_token = None
    while True:
        page = client.search_traces(
            locations=[location],
            max_results=500,
            page_token=page_token,
            include_spans=include_spans,
        )
        found.extend(page)
        page_token = page.token
        if not page_token:
            return found


def trace_by_request_id(tracking_uri: str, experiment_name: str, request_id: str) -> Any:
    """The documented lookup: one tag filter."""
    from mlflow import MlflowClient

    (found,) = MlflowClient(tracking_uri=tracking_uri).search_traces(
        locations=[experiment_id_of(tracking_uri, experiment_name)],
        filter_string=f"tags.request_id = '{request_id}'",
    )
    return found


def logger_of(service: PredictionService) -> BackgroundPredictionLog:
    log = service.prediction_log
    assert isinstance(log, BackgroundPredictionLog)
    return log


def test_n_predictions_become_n_queryable_traces(
    trained_artifacts: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN logging to a real server WHEN 25 single predictions and one batch of 3 are served
    THEN 26 traces exist, each found by its request id, with inputs, outputs, model version and
    latency."""
    experiment = f"serving-test-{uuid.uuid4().hex[:8]}"
    handler, service = build_test_handler(
        trained_artifacts, mlflow_tracking_uri=mlflow_server, mlflow_experiment_name=experiment
    )
    answers = {}
    for i in range(25):
        response = handler(predict_event(TYPICAL_LOAN, f"trace-{i}"), FakeLambdaContext())
        answers[f"trace-{i}"] = response_json(response)
    batch_event = predict_event({"loans": [RISKY_LOAN, MIDDLING_LOAN, TYPICAL_LOAN]}, "trace-b")
    batch_event["rawPath"] = batch_event["requestContext"]["http"]["path"] = "/prod/predict/batch"
    assert handler(batch_event, FakeLambdaContext())["statusCode"] == 200
    try:
        assert logger_of(service).wait_until_idle(120)
        status = service.prediction_log.status()
        assert (status.exported, status.failed, status.dropped) == (26, 0, 0)
    finally:
        service.prediction_log.close()

    traces = traces_of(mlflow_server, experiment)
    assert len(traces) == 26
    assert {t.info.tags["request_id"] for t in traces} == {*answers, "trace-b"}

    found = trace_by_request_id(mlflow_server, experiment, "trace-7")
    (span,) = found.data.spans
    assert span.name == TRACE_NAME
    assert span.inputs == {k: float(v) for k, v in TYPICAL_LOAN.items()}
    assert span.outputs == answers["trace-7"]
    assert found.info.tags["model_version"] == service.model_version
    assert found.info.tags["mlflow.traceName"] == TRACE_NAME
    assert found.info.request_preview.startswith('{"credit_lines_outstanding"')
    assert found.info.response_preview.startswith('{"probability"')
    assert str(found.info.state) == "OK"
    assert span.attributes["endpoint"] == "/predict"
    assert 0 < span.attributes["latency_ms"] < 1000
    assert span.end_time_ns - span.start_time_ns == round(span.attributes["latency_ms"] * 1e6)
    batch = trace_by_request_id(mlflow_server, experiment, "trace-b")
    assert batch.data.spans[0].attributes["n_loans"] == 3
    assert batch.data.spans[0].attributes["endpoint"] == "/predict/batch"
    assert len(batch.data.spans[0].outputs["predictions"]) == 3
    capsys.readouterr()


def test_a_burst_goes_out_in_few_round_trips_and_every_prediction_is_found_by_request_id(
    trained_artifacts: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN logging to a real server WHEN 600 predictions are served back to back THEN all 600
    traces land, in at most a tenth as many round trips, and each request id names exactly one
    trace."""
    experiment = f"serving-burst-{uuid.uuid4().hex[:8]}"
    handler, service = build_test_handler(
        trained_artifacts,
        mlflow_tracking_uri=mlflow_server,
        mlflow_experiment_name=experiment,
        prediction_log_queue_size=1000,
    )
    log = logger_of(service)
    request_ids = [f"burst-{i}" for i in range(600)]
    try:
        for request_id in request_ids:
            response = handler(predict_event(MIDDLING_LOAN, request_id), FakeLambdaContext())
            assert response["statusCode"] == 200
        assert log.wait_until_idle(180)
        status = log.status()
        assert (status.exported, status.failed, status.dropped) == (600, 0, 0)
        assert log.batches_exported <= 60, log.batches_exported
    finally:
        log.close()

    traces = traces_of(mlflow_server, experiment, include_spans=False)
    found_ids = sorted(t.info.tags["request_id"] for t in traces)
    assert found_ids == sorted(request_ids)  # each once
    for request_id in ("burst-0", "burst-299", "burst-599"):
        trace = trace_by_request_id(mlflow_server, experiment, request_id)
        assert trace.data.spans[0].outputs["request_id"] == request_id
    capsys.readouterr()


def test_a_resent_batch_overwrites_its_traces_instead_of_duplicating_them(
    trained_artifacts: Path, mlflow_server: str
) -> None:
    """A send whose answer timed out may have landed: the retry re-sends the same trace ids."""
    experiment = f"serving-resend-{uuid.uuid4().hex[:8]}"
    exporter = MlflowTraceExporter(mlflow_server, experiment, features=FEATURES)
    exporter.prepare()
    exporter.connect()
    _, service = build_test_handler(trained_artifacts)
    records: list[PredictionRecord] = []
    for i in range(20):
        raw = np.array([[MIDDLING_LOAN[name] for name in FEATURES]], dtype=float)
        answers = service.assessor.assess_matrix(raw, f"resend-{i}")
        records.append(
            PredictionRecord(time.time_ns(), 200_000, f"resend-{i}", "/predict", raw, answers)
        )
    payload = exporter.encode(records)
    exporter.send(payload)
    exporter.send(payload)
    traces = traces_of(mlflow_server, experiment)
    request_ids = sorted(record.request_id for record in records)
    assert sorted(t.info.tags["request_id"] for t in traces) == request_ids
    assert all(len(t.data.spans) == 1 for t in traces)


def test_a_database_tracking_uri_turns_logging_off_with_one_error_and_answers_unchanged(
    trained_artifacts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only an MLflow server receives spans over OTLP: ``sqlite:///`` is refused once, not
    retried, and predictions are answered as with logging off."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    handler, service = build_test_handler(trained_artifacts, mlflow_tracking_uri=tracking_uri)
    try:
        wait_for_state(service, "stopped", timeout=30)
        for i in range(5):
            response = handler(predict_event(RISKY_LOAN, f"local-{i}"), FakeLambdaContext())
            assert response["statusCode"] == 200
        status = service.prediction_log.status()
        assert (status.enabled, status.exported) == (True, 0)
    finally:
        service.prediction_log.close(timeout=0)
    refusals = [r for r in caplog.records if "prediction logging is off" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert "must be an MLflow server" in refusals[0].getMessage()
    assert not (tmp_path / "mlflow.db").exists()


# Runs in the emulated image: main.handler answers the events, then the logger is given time to
# export (on Lambda, later invocations would give it that time).
_IMAGE_DRIVER = (
    "import json, os, sys\n"
    + EMULATED_CONTEXT_SOURCE
    + r"""
from main import handler, service

events = json.load(open(sys.argv[1], encoding="utf-8"))
codes = [handler(event, Context(f"emulated-{i}"))["statusCode"] for i, event in enumerate(events)]
idle = service.prediction_log.wait_until_idle(120)
print("RESULT " + json.dumps({
    "codes": codes,
    "idle": idle,
    "status": service.prediction_log.status().model_dump(),
    "mlflow_loaded": any(m.split(".")[0] == "mlflow" for m in sys.modules),
}), flush=True)
"""
)


def test_the_lambda_image_without_any_mlflow_package_logs_every_prediction(
    trained_artifacts: Path,
    mlflow_server: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """GIVEN the image's task root (Dockerfile.lambda emulated: CPython 3.12, the runtime set:
    OpenTelemetry's OTLP exporter, no MLflow package) WHEN main.handler answers 30 events with
    MLFLOW_TRACKING_URI at a real server THEN all 30 traces land, found by request id."""
    # a short workspace: the build's TMPDIR holds multiprocessing's AF_UNIX sockets (108 bytes)
    image = build_image(tmp_path_factory.mktemp("image"), trained_artifacts)
    assert list(image.task_root.glob("opentelemetry_exporter_otlp_proto_http-*.dist-info"))
    assert not list(image.task_root.glob("mlflow*")), "an MLflow package in the image"
    experiment = f"serving-image-{uuid.uuid4().hex[:8]}"
    request_ids = [f"image-{i}" for i in range(30)]
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps([predict_event(TYPICAL_LOAN, rid) for rid in request_ids]))
    environment = lambda_environment(
        image, {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": experiment}
    )
    done = subprocess.run(
        [*isolated_python(image), "-c", _IMAGE_DRIVER, str(events_file)],
        cwd=image.task_root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    assert lines, output
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["codes"] == [200] * 30
    assert result["idle"] is True
    assert result["status"]["exported"] == 30, result["status"]
    assert result["mlflow_loaded"] is False
    traces = traces_of(mlflow_server, experiment, include_spans=False)
    assert sorted(t.info.tags["request_id"] for t in traces) == sorted(request_ids)


def test_sigterm_drains_queued_records_before_uvicorn_exits(
    trained_artifacts: Path, mlflow_server: str
) -> None:
    experiment = f"serving-drain-{uuid.uuid4().hex[:8]}"
    port = free_port()
    process = start_uvicorn(
        trained_artifacts,
        port,
        env={"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": experiment},
    )
    wait_for_http(f"http://127.0.0.1:{port}/health", process)
    body = json.dumps(TYPICAL_LOAN).encode()
    for i in range(10):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            headers={"content-type": "application/json", "x-request-id": f"drain-{i}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    status, output = stop_process(process, timeout=60)
    assert stopped_gracefully(status, output), output
    traces = traces_of(mlflow_server, experiment)
    assert {t.info.tags["request_id"] for t in traces} == {f"drain-{i}" for i in range(10)}


def wait_for_state(service: PredictionService, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.prediction_log.status().state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"logger never reached {state}: {service.prediction_log.status()}")


def interleaved_latencies(
    logging_on: LambdaHandler, logging_off: LambdaHandler, samples: int
) -> tuple[list[float], list[float]]:
    """Alternate the two handlers call by call, so machine noise hits both alike."""
    on: list[float] = []
    off: list[float] = []
    context = FakeLambdaContext()
    for i in range(samples):
        event = predict_event(MIDDLING_LOAN, f"fault-{i}")
        for handler, sink in ((logging_on, on), (logging_off, off)):
            started = time.perf_counter()
            response = handler(event, context)
            sink.append(time.perf_counter() - started)
            assert response["statusCode"] == 200
    return on, off


@pytest.mark.parametrize(
    "tracking_uri",
    [
        pytest.param("closed-port", id="closed-port"),
        pytest.param("black-hole", id="non-routable"),
    ],
)
def test_a_dead_tracking_server_changes_neither_answers_nor_latency(
    trained_artifacts: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN MLFLOW_TRACKING_URI at a closed port / a loopback black hole (SYNs dropped, as
    towards a non-routable address) WHEN thousands of
    predictions are served THEN all succeed, records are held then dropped and counted, and p99
    latency stays within 2x of the same service with logging off."""
    with contextlib.ExitStack() as dead_peer:
        port = (
            free_port()
            if tracking_uri == "closed-port"
            else dead_peer.enter_context(black_hole_port())
        )
        _serve_against_a_dead_server(trained_artifacts, f"http://127.0.0.1:{port}", capsys)


def _serve_against_a_dead_server(
    trained_artifacts: Path, uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logging_on, on_service = build_test_handler(
        trained_artifacts, mlflow_tracking_uri=uri, prediction_log_queue_size=1000
    )
    logging_off, _ = build_test_handler(trained_artifacts)
    try:
        wait_for_state(on_service, "backoff", timeout=30)
        interleaved_latencies(logging_on, logging_off, 300)  # warm both paths
        on, off = interleaved_latencies(logging_on, logging_off, LATENCY_SAMPLES)
        p99_on, p99_off = percentile(on, 0.99), percentile(off, 0.99)
        status = on_service.prediction_log.status()
        assert status.exported == 0
        assert status.queued + status.dropped == LATENCY_SAMPLES + 300
        assert status.dropped > 0
        assert p99_on <= 2 * p99_off, (
            f"p99 with logging {p99_on * 1e6:.0f} us vs off {p99_off * 1e6:.0f} us; "
            f"p50 {percentile(on, 0.5) * 1e6:.0f} vs {percentile(off, 0.5) * 1e6:.0f} us"
        )
    finally:
        on_service.prediction_log.close(timeout=0)
        capsys.readouterr()
