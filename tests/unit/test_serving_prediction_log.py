"""The background prediction log: cheap enqueue, bounded queue, counted drops, backoff, drain.

The exporter here is a test double of the ``TraceExporter`` protocol; the real MLflow exporter is
exercised against a real ``mlflow server`` in tests/integration/test_serving_mlflow_logging.py.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time

import numpy as np
import pytest

from loan_service.prediction_log import (
    BackgroundPredictionLog,
    DisabledPredictionLog,
    PredictionRecord,
    _FailureSpy,
    configure_mlflow_client_environment,
    token_from_secret_string,
)

RAW = np.zeros((1, 6))


class ScriptedExporter:
    """Connects after ``connect_failures`` failures; export i fails when i is in ``failing``."""

    def __init__(self, connect_failures: int = 0, failing: frozenset[int] = frozenset()) -> None:
        self.connect_failures = connect_failures
        self.failing = failing
        self.connect_attempts = 0
        self.exported: list[str] = []
        self.attempts = 0
        self.release = threading.Event()
        self.release.set()
        self.closed = False

    def prepare(self) -> None:
        return None

    def connect(self) -> None:
        self.release.wait()
        self.connect_attempts += 1
        if self.connect_attempts <= self.connect_failures:
            raise ConnectionError("server down")

    def close(self) -> None:
        self.closed = True

    def export(self, record: PredictionRecord) -> bool:
        attempt = self.attempts
        self.attempts += 1
        if attempt in self.failing:
            return False
        self.exported.append(record[2])
        return True


def record(log: BackgroundPredictionLog, request_id: str) -> None:
    log.record((time.time_ns(), 150_000, request_id, "/predict", RAW, []))


def test_enqueue_costs_well_under_50_microseconds_at_the_median() -> None:
    """GIVEN a logger whose thread is parked WHEN 20,000 records are enqueued THEN the median
    enqueue, and the median drop once the queue is full, each take <= 50 us."""
    exporter = ScriptedExporter()
    exporter.release.clear()  # the thread blocks in connect(): nothing is consumed
    log = BackgroundPredictionLog(exporter, capacity=10_000).start()
    try:
        timings = []
        for i in range(20_000):
            started = time.perf_counter_ns()
            log.record((started, 1000, f"r{i}", "/predict", RAW, ()))
            timings.append(time.perf_counter_ns() - started)
        enqueue_median_us = statistics.median(timings[:10_000]) / 1000
        drop_median_us = statistics.median(timings[10_000:]) / 1000
        assert enqueue_median_us <= 50, enqueue_median_us
        assert drop_median_us <= 50, drop_median_us
        assert log.status().dropped == 10_000
    finally:
        exporter.release.set()
        log.close(timeout=5)


def test_a_full_queue_drops_new_records_and_counts_every_drop() -> None:
    exporter = ScriptedExporter()
    exporter.release.clear()
    log = BackgroundPredictionLog(exporter, capacity=5).start()
    for i in range(20):
        record(log, f"r{i}")
    status = log.status()
    assert (status.queued, status.dropped) == (5, 15)
    assert log.take_new_drops() == 15
    assert log.take_new_drops() == 0
    record(log, "one-more")
    assert log.take_new_drops() == 1
    exporter.release.set()
    assert log.wait_until_idle(5)
    assert exporter.exported == ["r0", "r1", "r2", "r3", "r4"]
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


def test_failed_exports_are_counted_backed_off_and_then_recover() -> None:
    exporter = ScriptedExporter(failing=frozenset({0, 1}))
    log = BackgroundPredictionLog(exporter, capacity=100, backoff_initial=0.05).start()
    started = time.monotonic()
    for i in range(5):
        record(log, f"r{i}")
    assert log.wait_until_idle(10)
    elapsed = time.monotonic() - started
    status = log.status()
    assert (status.failed, status.exported, status.state) == (2, 3, "ok")
    assert exporter.exported == ["r2", "r3", "r4"]
    assert elapsed >= 0.05 + 0.10 * 0.9  # backed off 0.05 s, then 0.10 s
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


def test_close_drains_what_is_queued_then_stops_the_thread() -> None:
    exporter = ScriptedExporter()
    log = BackgroundPredictionLog(exporter, capacity=100).start()
    for i in range(10):
        record(log, f"r{i}")
    log.close(timeout=5)
    assert len(exporter.exported) == 10
    assert log.status().state == "stopped"
    assert exporter.closed


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


def test_the_failure_spy_notices_and_mutes_mlflow_export_warnings() -> None:
    spy = _FailureSpy()
    logger = logging.getLogger("tests.serving.fake_mlflow_exporter")
    logger.addFilter(spy)
    try:
        seen: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())

        handler = Collect()
        logger.addHandler(handler)
        logger.debug("span details")
        assert spy.failed is False
        logger.warning("Failed to send trace to MLflow backend: connection refused")
        assert spy.failed is True
        assert "connection refused" in spy.last_message
        assert seen == []  # muted: our own state-change warnings replace one line per trace
    finally:
        logger.removeFilter(spy)
        logger.removeHandler(handler)


def test_mlflow_client_retries_are_forced_off_and_export_is_synchronous(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", raising=False)
    configure_mlflow_client_environment()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
    assert os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] == "false"


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
