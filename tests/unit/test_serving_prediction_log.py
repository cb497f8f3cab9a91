"""The background prediction log: cheap enqueue, bounded queue, counted drops, batching, retries,
back-off, drain; the OTLP span a record becomes (encoded by OpenTelemetry's own encoder and decoded
the way the MLflow server's /v1/traces handler does, in process, no network); and how a tracking
URI becomes the exporter's endpoint and credentials.

The batching tests drive ``BackgroundPredictionLog`` with a test double of the ``BatchExporter``
protocol; the real exporter is exercised against a real ``mlflow server`` in
tests/integration/test_serving_mlflow_logging.py.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from loan_service.prediction_log import (
    TRACE_NAME,
    BackgroundPredictionLog,
    DisabledPredictionLog,
    PredictionRecord,
    TrackingServer,
    UnsupportedTrackingStore,
    prediction_span_factory,
    token_from_secret_string,
    tracking_session,
)
from tests.support.default_book import FEATURES

RAW = np.zeros((1, 6))


class ScriptedExporter:
    """Records every batch it is given. Connects after ``connect_failures`` failures; send
    attempt i fails when i is in ``failing``; ``connect_gate``/``send_gate`` park the thread."""

    def __init__(
        self,
        connect_failures: int = 0,
        failing: frozenset[int] = frozenset(),
        unsupported: bool = False,
    ) -> None:
        self.connect_failures = connect_failures
        self.failing = failing
        self.unsupported = unsupported
        self.connect_attempts = 0
        self.send_attempts = 0
        self.sent_payloads: list[object] = []
        self.batches: list[list[str]] = []  # request ids, per batch that landed
        self.connect_gate = threading.Event()
        self.connect_gate.set()
        self.send_gate = threading.Event()
        self.send_gate.set()
        self.in_send = threading.Event()  # set once the thread has entered send()
        self.closed = False

    def prepare(self) -> None:
        return None

    def connect(self) -> None:
        self.connect_gate.wait()
        self.connect_attempts += 1
        if self.unsupported:
            raise UnsupportedTrackingStore("FileStore cannot store spans")
        if self.connect_attempts <= self.connect_failures:
            raise ConnectionError("server down")

    def encode(self, records: Sequence[PredictionRecord]) -> object:
        if any(record.request_id == "poison" for record in records):
            raise ValueError("cannot encode")
        return [record.request_id for record in records]

    def send(self, payload: object) -> None:
        self.in_send.set()
        self.send_gate.wait()
        attempt = self.send_attempts
        self.send_attempts += 1
        self.sent_payloads.append(payload)
        if attempt in self.failing:
            raise ConnectionError("export failed")
        assert isinstance(payload, list)
        self.batches.append(payload)

    def close(self) -> None:
        self.closed = True

    @property
    def exported(self) -> list[str]:
        return [request_id for batch in self.batches for request_id in batch]


def record(log: BackgroundPredictionLog, request_id: str, loans: int = 1) -> None:
    log.record(
        PredictionRecord(time.time_ns(), 150_000, request_id, "/predict", np.zeros((loans, 6)), [])
    )


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def test_enqueue_costs_well_under_50_microseconds_at_the_median() -> None:
    """GIVEN a logger whose thread is parked WHEN 20,000 records are enqueued THEN the median
    enqueue, and the median drop once the queue is full, each take <= 50 us."""
    exporter = ScriptedExporter()
    exporter.connect_gate.clear()  # the thread blocks in connect(): nothing is consumed
    log = BackgroundPredictionLog(exporter, capacity=10_000).start()
    try:
        timings = []
        for i in range(20_000):
            started = time.perf_counter_ns()
            log.record(PredictionRecord(started, 1000, f"r{i}", "/predict", RAW, ()))
            timings.append(time.perf_counter_ns() - started)
        enqueue_median_us = statistics.median(timings[:10_000]) / 1000
        drop_median_us = statistics.median(timings[10_000:]) / 1000
        assert enqueue_median_us <= 50, enqueue_median_us
        assert drop_median_us <= 50, drop_median_us
        assert log.status().dropped == 10_000
    finally:
        exporter.connect_gate.set()
        log.close(timeout=5)


def test_a_full_queue_drops_new_records_and_counts_every_drop() -> None:
    exporter = ScriptedExporter()
    exporter.connect_gate.clear()
    log = BackgroundPredictionLog(exporter, capacity=5).start()
    for i in range(20):
        record(log, f"r{i}")
    status = log.status()
    assert (status.queued, status.dropped) == (5, 15)
    assert log.take_new_drops() == 15
    assert log.take_new_drops() == 0
    record(log, "one-more")
    assert log.take_new_drops() == 1
    exporter.connect_gate.set()
    assert log.wait_until_idle(5)
    assert exporter.exported == ["r0", "r1", "r2", "r3", "r4"]
    log.close()


def test_a_backlog_is_exported_in_full_batches_in_arrival_order() -> None:
    """GIVEN 450 records queued while the thread is parked WHEN it connects THEN they go out
    in three round trips of 200, 200 and 50 records, in order."""
    exporter = ScriptedExporter()
    exporter.connect_gate.clear()
    log = BackgroundPredictionLog(exporter, capacity=1000, max_batch_records=200).start()
    for i in range(450):
        record(log, f"r{i}")
    exporter.connect_gate.set()
    assert log.wait_until_idle(5)
    assert [len(batch) for batch in exporter.batches] == [200, 200, 50]
    assert exporter.exported == [f"r{i}" for i in range(450)]
    status = log.status()
    assert (status.exported, status.failed, status.queued) == (450, 0, 0)
    assert log.batches_exported == 3
    log.close()


def test_records_arriving_during_an_export_form_the_next_batch() -> None:
    """GIVEN one export in flight WHEN 30 records arrive meanwhile THEN the next round trip
    carries all 30: batches grow with the load."""
    exporter = ScriptedExporter()
    log = BackgroundPredictionLog(exporter, capacity=100).start()
    wait_for(lambda: log.status().state == "ok")
    exporter.send_gate.clear()
    record(log, "first")
    assert exporter.in_send.wait(5)
    for i in range(30):
        record(log, f"r{i}")
    exporter.send_gate.set()
    assert log.wait_until_idle(5)
    assert [len(batch) for batch in exporter.batches] == [1, 30]
    log.close()


def test_a_lone_record_is_exported_at_once_without_waiting_for_a_batch_to_fill() -> None:
    exporter = ScriptedExporter()
    log = BackgroundPredictionLog(exporter, capacity=100).start()
    wait_for(lambda: log.status().state == "ok")
    started = time.monotonic()
    record(log, "alone")
    assert log.wait_until_idle(5)
    assert time.monotonic() - started < 0.5
    assert exporter.batches == [["alone"]]
    log.close()


def test_a_batch_stops_growing_once_it_holds_the_loan_cap() -> None:
    """Batch requests carry up to 1000 loans each: the loan cap bounds one round trip's size."""
    exporter = ScriptedExporter()
    exporter.connect_gate.clear()
    log = BackgroundPredictionLog(exporter, capacity=100, max_batch_loans=1000).start()
    for i in range(5):
        record(log, f"b{i}", loans=600)
    exporter.connect_gate.set()
    assert log.wait_until_idle(5)
    assert exporter.batches == [["b0", "b1"], ["b2", "b3"], ["b4"]]
    log.close()


def test_a_failed_batch_is_resent_unchanged_after_backing_off() -> None:
    """GIVEN the first two sends fail WHEN a batch is exported THEN the same encoded payload is
    sent three times (ids chosen once: a send that landed before failing is overwritten, not
    duplicated), after back-offs of 0.05 s and 0.10 s, and nothing is counted as failed."""
    exporter = ScriptedExporter(failing=frozenset({0, 1}))
    log = BackgroundPredictionLog(exporter, capacity=100, backoff_initial=0.05).start()
    wait_for(lambda: log.status().state == "ok")
    started = time.monotonic()
    for i in range(5):
        record(log, f"r{i}")
    assert log.wait_until_idle(10)
    elapsed = time.monotonic() - started
    assert exporter.send_attempts == 3
    first = exporter.sent_payloads[0]
    assert all(payload is first for payload in exporter.sent_payloads)
    status = log.status()
    assert (status.exported, status.failed, status.state) == (5, 0, "ok")
    assert elapsed >= 0.05 + 0.10 * 0.9
    log.close()


def test_a_batch_that_fails_every_attempt_is_counted_failed_and_the_next_one_proceeds() -> None:
    exporter = ScriptedExporter(failing=frozenset({0, 1, 2}))
    exporter.connect_gate.clear()
    log = BackgroundPredictionLog(
        exporter, capacity=100, max_batch_records=4, max_attempts=3, backoff_initial=0.01
    ).start()
    for i in range(6):
        record(log, f"r{i}")
    exporter.connect_gate.set()
    assert log.wait_until_idle(10)
    status = log.status()
    assert (status.failed, status.exported, status.state) == (4, 2, "ok")
    assert exporter.exported == ["r4", "r5"]
    log.close()


def test_a_batch_that_cannot_be_encoded_is_counted_failed_without_a_send() -> None:
    exporter = ScriptedExporter()
    exporter.connect_gate.clear()
    log = BackgroundPredictionLog(exporter, capacity=100, max_batch_records=2).start()
    for request_id in ("poison", "r1", "r2"):
        record(log, request_id)
    exporter.connect_gate.set()
    assert log.wait_until_idle(5)
    assert (log.status().failed, log.status().exported) == (2, 1)
    assert exporter.send_attempts == 1
    log.close()


def test_records_in_an_export_in_flight_count_as_queued() -> None:
    exporter = ScriptedExporter()
    exporter.send_gate.clear()
    log = BackgroundPredictionLog(exporter, capacity=100).start()
    for i in range(7):
        record(log, f"r{i}")
    assert exporter.in_send.wait(5)
    status = log.status()
    assert (status.queued, status.exported, status.failed) == (7, 0, 0)
    exporter.send_gate.set()
    assert log.wait_until_idle(5)
    log.close()


def test_every_queued_record_is_exported_in_order_once_connected() -> None:
    exporter = ScriptedExporter(connect_failures=2)
    log = BackgroundPredictionLog(exporter, capacity=100, backoff_initial=0.01).start()
    for i in range(30):
        record(log, f"r{i}")
    assert log.wait_until_idle(10)
    assert exporter.connect_attempts == 3
    assert exporter.exported == [f"r{i}" for i in range(30)]
    assert log.status().state == "ok"
    assert log.status().exported == 30
    log.close()


def test_backoff_doubles_up_to_the_cap() -> None:
    exporter = ScriptedExporter(connect_failures=10_000)
    log = BackgroundPredictionLog(
        exporter, capacity=10, backoff_initial=0.01, backoff_max=0.04
    ).start()
    time.sleep(0.5)
    log.close(timeout=0)
    # 0.01 + 0.02 + 0.04 + 0.04 ... : about 12 attempts in 0.5 s, far fewer than a busy loop
    assert 5 <= exporter.connect_attempts <= 20, exporter.connect_attempts
    assert log.status().state == "stopped"


def test_a_store_that_cannot_take_spans_stops_logging_once_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GIVEN a tracking URI whose store cannot ingest spans (a ./mlruns folder) THEN the thread
    says so once and stops; records then fill the queue and are dropped and counted."""
    exporter = ScriptedExporter(unsupported=True)
    with caplog.at_level(logging.ERROR, logger="loan_service.prediction_log"):
        log = BackgroundPredictionLog(exporter, capacity=3).start()
        wait_for(lambda: log.status().state == "stopped")
    for i in range(5):
        record(log, f"r{i}")
    assert exporter.connect_attempts == 1
    assert (log.status().queued, log.status().dropped) == (3, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "MLflow prediction logging is off: FileStore cannot store spans"
    ]
    log.close(timeout=0)


def test_close_drains_what_is_queued_then_stops_the_thread() -> None:
    exporter = ScriptedExporter()
    log = BackgroundPredictionLog(exporter, capacity=100).start()
    for i in range(10):
        record(log, f"r{i}")
    log.close(timeout=5)
    assert len(exporter.exported) == 10
    assert log.status().state == "stopped"
    assert exporter.closed


def test_close_during_a_back_off_counts_the_batch_in_hand_as_failed() -> None:
    exporter = ScriptedExporter(failing=frozenset(range(100)))
    log = BackgroundPredictionLog(exporter, capacity=100, backoff_initial=30).start()
    for i in range(4):
        record(log, f"r{i}")
    wait_for(lambda: exporter.send_attempts == 1)
    started = time.monotonic()
    log.close(timeout=0)
    assert time.monotonic() - started < 2
    status = log.status()
    assert (status.failed, status.exported, status.queued, status.state) == (4, 0, 0, "stopped")


def test_the_disabled_log_accepts_records_and_reports_itself_off() -> None:
    log = DisabledPredictionLog()
    log.record((0, 0, "r", "/predict", RAW, []))
    status = log.status()
    assert (status.enabled, status.state, status.queued, status.dropped) == (
        False,
        "disabled",
        0,
        0,
    )
    assert log.take_new_drops() == 0


@pytest.mark.parametrize(
    ("secret", "token"),
    [
        ("plain-token", "plain-token"),
        ('{"token": "json-token"}', "json-token"),
        ('{"other": 1}', '{"other": 1}'),
    ],
)
def test_the_tracking_token_secret_may_be_plain_or_json(secret: str, token: str) -> None:
    assert token_from_secret_string(secret) == token


# --- the MLflow span a record becomes -------------------------------------------------------------
LOAN = [1.0, 4000.0, 12000.0, 45000.0, 1.0, 560.0]
ANSWER = {
    "probability": 0.81,
    "prediction": 1,
    "threshold": 0.5,
    "message": "High risk of default",
    "risk_band": "high",
    "reasons": [{"feature": "fico_score", "impact": 1.2, "text": "FICO score of 560"}],
    "expected_loss": 2924.28,
    "model_version": "20261128.034112-1a2b3c4d",
    "request_id": "req-1",
}


def as_the_server_decodes_it(span: Any) -> Any:
    """What the MLflow server's /v1/traces handler stores: the OTLP request OTLPSpanExporter
    sends (OpenTelemetry's encoder), parsed from its bytes -> MLflow span."""
    from mlflow.entities import Span
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(encode_spans([span]).SerializeToString())
    (resource_spans,) = request.resource_spans
    ((proto_span,),) = [scope.spans for scope in resource_spans.scope_spans]
    return Span.from_otel_proto(proto_span, resource=resource_spans.resource)


def test_a_single_prediction_becomes_a_root_span_with_its_loan_answer_and_trace_tags() -> None:
    prediction_span = prediction_span_factory(FEATURES)
    started = 1_764_300_000_000_000_000
    record = PredictionRecord(started, 183_000, "req-1", "/predict", np.array([LOAN]), [ANSWER])
    span = as_the_server_decodes_it(prediction_span(record))
    assert span.parent_id is None
    assert span.name == TRACE_NAME
    assert span.inputs == dict(zip(FEATURES, LOAN, strict=True))
    assert span.outputs == ANSWER
    assert (span.start_time_ns, span.end_time_ns) == (started, started + 183_000)
    assert span.trace_id == f"tr-{span._trace_id}"
    attributes = span.attributes
    assert attributes["request_id"] == "req-1"
    assert attributes["model_version"] == ANSWER["model_version"]
    assert attributes["endpoint"] == "/predict"
    assert attributes["latency_ms"] == pytest.approx(0.183)
    assert attributes["n_loans"] == 1
    # mlflow.traceTag.<key> root-span attributes become the trace's tags (and its name)
    assert attributes["mlflow.traceTag.request_id"] == "req-1"
    assert attributes["mlflow.traceTag.model_version"] == ANSWER["model_version"]
    assert attributes["mlflow.traceTag.mlflow.traceName"] == TRACE_NAME


def test_a_batch_request_becomes_one_span_holding_every_loan_and_answer() -> None:
    prediction_span = prediction_span_factory(FEATURES)
    answers = [ANSWER, {**ANSWER, "probability": 0.1}, {**ANSWER, "probability": 0.2}]
    raw = np.array([LOAN, LOAN, LOAN])
    span = as_the_server_decodes_it(
        prediction_span(PredictionRecord(0, 1_000_000, "req-b", "/predict/batch", raw, answers))
    )
    assert span.inputs == {"loans": [dict(zip(FEATURES, LOAN, strict=True))] * 3}
    assert span.outputs == {"predictions": answers}
    assert span.attributes["n_loans"] == 3
    assert span.attributes["endpoint"] == "/predict/batch"


def test_every_record_gets_its_own_trace_even_with_a_repeated_request_id() -> None:
    """Clients may resend an X-Request-ID: each prediction is still its own trace."""
    prediction_span = prediction_span_factory(FEATURES)
    record = PredictionRecord(0, 1, "same", "/predict", np.array([LOAN]), [ANSWER])
    spans = [prediction_span(record) for _ in range(1000)]
    assert len({span.context.trace_id for span in spans}) == 1000
    assert len({span.context.span_id for span in spans}) == 1000


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "./mlruns", "file:///tmp/mlruns", "databricks", "http://"]
)
def test_a_tracking_uri_that_is_not_a_server_is_refused_as_unsupported(uri: str) -> None:
    """Only an MLflow server receives spans over OTLP: retrying a database URI cannot help."""
    with pytest.raises(UnsupportedTrackingStore, match="must be an MLflow server"):
        TrackingServer.from_uri(uri)


@pytest.mark.parametrize(
    ("uri", "base_url", "userinfo"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000", None),
        ("https://mlflow.example.com/", "https://mlflow.example.com", None),
        (
            "http://alice:p%40ss@10.0.0.1:5000/mlflow/?run=1&token=t",
            "http://10.0.0.1:5000/mlflow",
            ("alice", "p@ss"),
        ),
        ("http://[::1]:5000", "http://[::1]:5000", None),
    ],
)
def test_the_endpoint_carries_no_credentials_and_userinfo_becomes_basic_auth(
    uri: str, base_url: str, userinfo: tuple[str, str] | None
) -> None:
    server = TrackingServer.from_uri(uri)
    assert (server.base_url, server.userinfo) == (base_url, userinfo)


def test_mlflow_client_credentials_from_the_environment_reach_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    session = tracking_session(TrackingServer.from_uri("https://h"))
    assert session.headers["Authorization"] == "Bearer tok"
    assert session.auth == ("bob", "pw")
    # the URI's own userinfo wins over the environment's
    session = tracking_session(TrackingServer.from_uri("https://carol:x@h"))
    assert session.auth == ("carol", "x")
