"""Request-path counters and their EMF publication; readable local log lines."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools import Metrics

from loan_service.observability import LATENCY_RESERVOIR_SIZE, PredictionMetrics, readable_log_line


@pytest.fixture
def metrics() -> Metrics:
    emf = Metrics(namespace="LoanDefaultTests", service="loan-default")
    emf.clear_metrics()
    return emf


def emf_documents(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith('{"_aws"')]


def test_a_window_of_requests_becomes_one_emf_document(
    metrics: Metrics, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    counters = PredictionMetrics()
    counters.record(predictions=1, defaults=1, latency_ms=0.21)
    counters.record(predictions=10, defaults=3, latency_ms=1.5)
    assert counters.publish(metrics, dropped=4) is True
    metrics.flush_metrics()
    (document,) = emf_documents(capsys.readouterr().out)
    assert document["Predictions"] == [11.0]
    assert document["DefaultsPredicted"] == [4.0]
    assert document["PredictionLatency"] == [0.21, 1.5]
    assert document["MlflowDropped"] == [4.0]
    names = {m["Name"]: m["Unit"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}  # type: ignore[index]
    assert names["PredictionLatency"] == "Milliseconds"
    assert names["Predictions"] == "Count"
    assert counters.requests == 0
    assert counters.latencies_ms == []
    assert counters.total_predictions == 11


def test_nothing_to_publish_adds_no_metric(metrics: Metrics) -> None:
    assert PredictionMetrics().publish(metrics, dropped=0) is False
    assert metrics.metric_set == {}


def test_latencies_are_a_bounded_uniform_sample_and_counts_stay_exact() -> None:
    counters = PredictionMetrics()
    for i in range(10_000):
        counters.record(predictions=1, defaults=i % 2, latency_ms=float(i))
    assert len(counters.latencies_ms) == LATENCY_RESERVOIR_SIZE
    assert (counters.predictions, counters.defaults) == (10_000, 5_000)
    # a uniform sample of 0..9999 has its mean near 5000, far from the first 100 (mean 49.5)
    assert 3500 < sum(counters.latencies_ms) / LATENCY_RESERVOIR_SIZE < 6500


def test_local_log_lines_are_readable_with_extras_and_tracebacks() -> None:
    line = readable_log_line(
        {
            "level": "ERROR",
            "location": "errors.py:99",
            "message": "unhandled error answering POST /predict",
            "timestamp": "09:14:02",
            "service": "loan-default",
            "request_id": "abc",
            "exception": "Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        }
    )
    first, *rest = line.splitlines()
    assert first == "09:14:02 ERROR   unhandled error answering POST /predict  [request_id=abc]"
    assert rest[-1] == "RuntimeError: boom"
