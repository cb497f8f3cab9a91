"""Request-path counters and their EMF publication; readable local log lines."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic_core import to_json

from loan_service.observability import (
    LATENCY_RESERVOIR_SIZE,
    Observability,
    PredictionMetrics,
    readable_log_line,
)
from loan_service.prediction_log import DisabledPredictionLog
from loan_service.reference_bins import ReferenceBinCounter
from tests.support.lambda_context import FakeLambdaContext
from tests.support.monitoring_fixtures import synthetic_book, synthetic_reference
from tests.support.serving_fixtures import make_settings


def emf_documents(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith('{"_aws"')]


@pytest.fixture
def observability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Observability:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    settings = make_settings(tmp_path, service_name="loan-default-emf-tests")
    return Observability(settings, DisabledPredictionLog(), stream=io.StringIO())


def test_a_window_of_requests_becomes_one_emf_document(
    observability: Observability, capsys: pytest.CaptureFixture[str]
) -> None:
    observability.counters.record(predictions=1, defaults=1, latency_ms=0.21)
    observability.counters.record(predictions=10, defaults=3, latency_ms=1.5)
    capsys.readouterr()
    observability.flush_server_metrics()
    (document,) = emf_documents(capsys.readouterr().out)
    assert document["Predictions"] == [11.0]
    assert document["DefaultsPredicted"] == [4.0]
    assert document["PredictionLatency"] == [0.21, 1.5]
    assert document["service"] == "loan-default-emf-tests"
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "LoanDefault"
    assert directive["Dimensions"] == [["service"]]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {
        "Predictions": "Count",
        "DefaultsPredicted": "Count",
        "ProbabilitySum": "None",
        "PredictionLatency": "Milliseconds",
    }
    assert observability.counters.requests == 0
    assert observability.counters.latencies_ms == []
    assert observability.counters.total_predictions == 11


def test_drops_are_published_and_an_empty_window_prints_nothing(
    observability: Observability, capsys: pytest.CaptureFixture[str]
) -> None:
    assert observability.counters.metric_set(dropped=0) == {}
    assert observability.counters.metric_set(dropped=3) == {
        "MlflowDropped": {"Unit": "Count", "StorageResolution": 60, "Value": [3.0]}
    }
    capsys.readouterr()
    observability.flush_server_metrics()
    assert capsys.readouterr().out == ""


def test_the_first_lambda_invocation_adds_powertools_cold_start_document(
    observability: Observability, capsys: pytest.CaptureFixture[str]
) -> None:
    context = FakeLambdaContext()
    observability.counters.record(predictions=1, defaults=0, latency_ms=0.3)
    capsys.readouterr()
    observability.emit_invocation_metrics(context)
    first = emf_documents(capsys.readouterr().out)
    observability.counters.record(predictions=1, defaults=0, latency_ms=0.3)
    observability.emit_invocation_metrics(context)
    second = emf_documents(capsys.readouterr().out)
    assert [("ColdStart" in d, "Predictions" in d) for d in first] == [(True, False), (False, True)]
    assert [("ColdStart" in d, "Predictions" in d) for d in second] == [(False, True)]


def test_powertools_switch_turns_metrics_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    quiet = Observability(make_settings(tmp_path), DisabledPredictionLog(), stream=io.StringIO())
    quiet.counters.record(predictions=1, defaults=0, latency_ms=0.3)
    capsys.readouterr()
    quiet.emit_invocation_metrics(FakeLambdaContext())
    assert capsys.readouterr().out == ""


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


def test_with_a_model_version_the_same_document_also_publishes_per_model_behaviour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Approval rate and mean PD of a period are sums over this directive: weighted per loan."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    settings = make_settings(tmp_path, service_name="loan-default-emf-model")
    observability = Observability(
        settings, DisabledPredictionLog(), stream=io.StringIO(), model_version="20261201.1-ab"
    )
    observability.counters.record(1, 1, 0.2, probability_sum=0.9)
    observability.counters.record(3, 0, 0.4, probability_sum=0.15)
    capsys.readouterr()
    observability.flush_server_metrics()

    (document,) = emf_documents(capsys.readouterr().out)
    by_service, by_model = document["_aws"]["CloudWatchMetrics"]
    assert by_service["Dimensions"] == [["service"]]
    assert by_model["Dimensions"] == [["service", "model_version"]]
    assert {m["Name"] for m in by_model["Metrics"]} == {
        "Predictions",
        "DefaultsPredicted",
        "ProbabilitySum",
    }
    assert document["model_version"] == "20261201.1-ab"
    approval_rate = 1 - document["DefaultsPredicted"][0] / document["Predictions"][0]
    mean_pd = document["ProbabilitySum"][0] / document["Predictions"][0]
    assert approval_rate == pytest.approx(0.75)
    assert mean_pd == pytest.approx(1.05 / 4)


@pytest.mark.parametrize("dropped", [0, 2])
@pytest.mark.parametrize("model_version", [None, "20261201.1-ab"])
@pytest.mark.parametrize("with_bins", [False, True])
def test_the_emf_line_is_the_serialized_powertools_document(
    tmp_path: Path, dropped: int, model_version: str | None, with_bins: bool
) -> None:
    """``emf_line`` reuses each shape's fixed text; it must stay the document, byte for byte."""
    book, reference = synthetic_book(), synthetic_reference()
    raw = np.array([[52_000.0, 1.0, 640.0], [18_000.0, 0.0, 701.0]])
    answers = [{"probability": 0.03125}, {"probability": 0.5}]
    by_line, by_document = (
        Observability(
            make_settings(tmp_path, service_name="loan-default-emf-line"),
            DisabledPredictionLog(),
            stream=io.StringIO(),
            model_version=model_version,
            reference_bins=ReferenceBinCounter(reference, book) if with_bins else None,
        )
        for _ in range(2)
    )
    for timestamp_ms in (1_796_200_135_877, 1_796_200_135_878):  # the second reuses the frame
        for observability in (by_line, by_document):
            observability.record_bins(raw, answers)
            observability.counters.record(2, 1, 0.25, probability_sum=0.53125)
        line = by_line.emf_line(by_line.counters.metric_set(dropped), timestamp_ms)
        document = by_document.emf_document(by_document.counters.metric_set(dropped), timestamp_ms)
        assert line == to_json(document).decode() + "\n"
        parsed = json.loads(line)
        assert parsed["_aws"]["Timestamp"] == timestamp_ms
        assert ("score_bins" in parsed) is with_bins
        assert ("model_version" in parsed) is (model_version is not None)
        assert ("MlflowDropped" in parsed) is (dropped > 0)
