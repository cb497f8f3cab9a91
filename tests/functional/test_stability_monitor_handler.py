"""The scheduled stability check end to end: the service answers loans through its Lambda
handler, its EMF documents are summed the way Logs Insights sums them, and ``monitor_handler``
publishes exactly the PSI/CSI that ``loan-default monitor`` computes on the same loans."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from botocore.stub import ANY, Stubber

from loan_default.monitoring.window import WindowCounts
from loan_service.stability_monitor import bin_queries, window_end_of
from tests.support.default_book import FEATURES
from tests.support.events import load_project_event, response_json, shape_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.monitoring_fixtures import expect_bin_query, insights_rows, stubbed_client
from tests.support.serving_fixtures import build_test_handler

LOG_GROUP = "/aws/lambda/LoanDefaultServerless-FunctionLogs"


def random_loans(n: int, seed: int) -> list[dict[str, Any]]:
    """Valid applicants of the default book, spread over its ranges."""
    rng = np.random.default_rng(seed)
    return [
        {
            "credit_lines_outstanding": int(rng.integers(0, 6)),
            "loan_amt_outstanding": round(float(rng.uniform(500, 9000)), 2),
            "total_debt_outstanding": round(float(rng.uniform(1000, 30000)), 2),
            "income": round(float(rng.uniform(20000, 120000)), 2),
            "years_employed": int(rng.integers(0, 11)),
            "fico_score": int(rng.integers(450, 851)),
        }
        for _ in range(n)
    ]


def test_the_published_figures_are_the_monitor_commands_on_the_same_loans(
    trained_artifacts: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    service_handler, service = build_test_handler(
        trained_artifacts, on_lambda=True, log_stream=io.StringIO()
    )
    loans = random_loans(300, seed=5)
    base = load_project_event("apigw-http-v2-prod-stage.json")
    capsys.readouterr()
    probabilities: list[float] = []
    for start in range(0, len(loans), 100):
        body = {"loans": loans[start : start + 100]}
        answer = service_handler(
            shape_event(base, "POST", "/prod/predict/batch", body=body), FakeLambdaContext()
        )
        assert answer["statusCode"] == 200
        probabilities += [p["probability"] for p in response_json(answer)["predictions"]]
    documents = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if '"_aws"' in line and '"score_bins"' in line
    ]
    assert len(documents) == 3

    reference = service.bundle.reference
    assert reference is not None
    (query,) = bin_queries(reference)
    event = load_project_event("eventbridge-scheduled.json")
    logs, cloudwatch = stubbed_client("logs"), stubbed_client("cloudwatch")
    published: list[dict[str, Any]] = []
    cloudwatch.meta.events.register(
        "provide-client-params.cloudwatch.PutMetricData",
        lambda params, **_: published.append(params),
    )
    end = window_end_of(event, lambda: pytest.fail("the event carries the scheduled time"))
    monkeypatch.setenv("SERVICE_LOG_GROUP", LOG_GROUP)
    monkeypatch.setenv("ARTIFACT_DIR", str(trained_artifacts))
    monkeypatch.setattr("boto3.client", {"logs": logs, "cloudwatch": cloudwatch}.get)
    import monitor_handler

    monitor_handler.baked_reference.cache_clear()
    with Stubber(logs) as logs_stub, Stubber(cloudwatch) as cloudwatch_stub:
        rows = insights_rows(query, documents, service.model_version)
        expect_bin_query(logs_stub, query, rows, LOG_GROUP, end)
        cloudwatch_stub.add_response("put_metric_data", {}, {"Namespace": ANY, "MetricData": ANY})
        monkeypatch.setattr("loan_service.stability_monitor.POLL_SECONDS", 0.0)
        summary = monitor_handler.handler(event, FakeLambdaContext())
        logs_stub.assert_no_pending_responses()

    # loan-default monitor's own pass over a scored window of the same loans.
    window = WindowCounts(reference=reference, master_scale=service.bundle.master_scale)
    columns = {name: [loan[name] for loan in loans] for name in FEATURES}
    window.add(pa.RecordBatch.from_pydict({**columns, "probability": probabilities}))
    expected = window.summary()

    (call,) = published
    values = {
        (m["MetricName"], *(d["Value"] for d in m["Dimensions"][1:])): m["Value"]
        for m in call["MetricData"]
    }
    assert values[("MonitoredLoans",)] == 300.0
    assert values[("ScorePSI",)] == pytest.approx(expected["score_psi"], abs=1e-12)
    for name in FEATURES:
        assert values[("FeatureCSI", name)] == pytest.approx(
            expected["features"][name]["csi"], abs=1e-12
        )
    assert summary["verdict"] in {"stable", "investigate", "significant"}
    assert summary["window"]["loans"] == 300


def test_a_failed_query_fails_the_invocation_with_one_logged_line(
    trained_artifacts: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logs = stubbed_client("logs")
    monkeypatch.setenv("SERVICE_LOG_GROUP", LOG_GROUP)
    monkeypatch.setenv("ARTIFACT_DIR", str(trained_artifacts))
    monkeypatch.setattr("boto3.client", {"logs": logs, "cloudwatch": None}.get)
    import monitor_handler

    monitor_handler.baked_reference.cache_clear()
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-7"}, None)
        stub.add_response("get_query_results", {"status": "Failed", "results": []}, None)
        with pytest.raises(RuntimeError, match="ended Failed"):
            monitor_handler.handler(
                load_project_event("eventbridge-scheduled.json"), FakeLambdaContext()
            )
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage() == (
        f"stability check failed: Logs Insights query q-7 over {LOG_GROUP} ended Failed"
    )
