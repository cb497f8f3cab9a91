"""The scheduled stability check against botocore's Stubber (real clients, requests and responses
validated against the service models, no network), on Logs Insights' own answer shapes:
StartQuery -> queryId; GetQueryResults -> status Running, then Complete with results as rows of
``{field, value}`` (values are strings) and ``statistics``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from botocore.stub import ANY, Stubber

from loan_service.reference_bins import ReferenceBinCounter
from loan_service.stability import Reference
from loan_service.stability_monitor import (
    QUERY_TEXT_LIMIT,
    MonitoringError,
    MonitorSettings,
    bin_queries,
    run_check,
)
from tests.support.monitoring_fixtures import (
    SYNTHETIC_VERSION,
    expect_bin_query,
    insights_rows,
    stubbed_client,
    synthetic_book,
    synthetic_reference,
)

LOG_GROUP = "/aws/lambda/LoanDefaultServerless-FunctionLogs"
SETTINGS = MonitorSettings(log_group=LOG_GROUP, query_deadline_seconds=30)
SCHEDULED = {"time": "2026-12-02T06:00:00Z", "detail-type": "Scheduled Event"}
END = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return synthetic_reference()


@pytest.fixture
def logs() -> Iterator[tuple[Any, Stubber]]:
    logs_client = stubbed_client("logs")
    with Stubber(logs_client) as stubber:
        yield logs_client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def cloudwatch() -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """A CloudWatch client whose PutMetricData calls are recorded (and answered by a Stubber)."""
    cw = stubbed_client("cloudwatch")
    published: list[dict[str, Any]] = []
    with Stubber(cw) as stubber:
        for _ in range(3):
            stubber.add_response("put_metric_data", {}, {"Namespace": ANY, "MetricData": ANY})
        cw.meta.events.register(
            "provide-client-params.cloudwatch.PutMetricData",
            lambda params, **_: published.append(params),
        )
        yield cw, published


def window_loans(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """n loans of the synthetic book (income, purpose code, FICO) and their PDs."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(11 + shift, 0.4, n)
    purpose = rng.integers(0, 3, n).astype(float)
    fico = rng.integers(300, 851, n).astype(float)
    return np.column_stack([income, purpose, fico]), np.round(rng.beta(1, 6, n), 6)


def emf_bins(reference: Reference, raw: np.ndarray, probability: np.ndarray) -> list[Any]:
    """The bin fields of the EMF documents the service prints for these loans, 50 per request."""
    counter = ReferenceBinCounter(reference, synthetic_book())
    documents = []
    for start in range(0, len(probability), 50):
        answers = [{"probability": p} for p in probability[start : start + 50].tolist()]
        counter.record(raw[start : start + 50], answers)
        documents.append(counter.take())
    return documents


def independent_psi(reference_shares: np.ndarray, bins: np.ndarray, size: int) -> float:
    observed = np.bincount(bins, minlength=size) / bins.size
    r, o = np.maximum(reference_shares, 1e-4), np.maximum(observed, 1e-4)
    return float(np.sum((o - r) * np.log(o / r)))


def test_one_query_sums_every_reference_bin_by_model_version(reference: Reference) -> None:
    (query,) = bin_queries(reference)
    assert len(query.text) <= QUERY_TEXT_LIMIT
    assert query.text.startswith("filter ispresent(model_version)\n| stats sum(`score_bins.0`)")
    assert query.text.endswith("by model_version")
    expected = [(None, i) for i in range(reference.score.bins)]
    for name, ref in reference.features.items():
        expected += [(name, i) for i in range(ref.bins)]
    assert list(query.columns.values()) == expected
    assert "sum(`feature_bins.purpose.3`) as" in query.text


def test_a_query_longer_than_the_limit_is_split_and_still_covers_every_bin(
    reference: Reference,
) -> None:
    queries = bin_queries(reference, limit=400)
    assert len(queries) > 1
    assert all(len(q.text) <= 400 for q in queries)
    covered = [column for q in queries for column in q.columns.values()]
    assert covered == list(bin_queries(reference)[0].columns.values())


def test_a_window_becomes_score_psi_and_feature_csi_metrics(
    reference: Reference,
    logs: tuple[Any, Stubber],
    cloudwatch: tuple[Any, list[dict[str, Any]]],
) -> None:
    """GIVEN a day of EMF documents whose incomes shifted THEN the published figures are the PSI
    of an independent computation on the same loans, the shifted feature significant."""
    raw, probability = window_loans(3000, seed=11, shift=0.8)
    (query,) = bin_queries(reference)
    rows = insights_rows(query, emf_bins(reference, raw, probability), SYNTHETIC_VERSION)
    rows += insights_rows(query, emf_bins(reference, raw[:40], probability[:40]), "v-previous")
    logs_client, stubber = logs
    expect_bin_query(stubber, query, rows, LOG_GROUP, END)
    cw, published = cloudwatch

    summary = run_check(logs_client, cw, reference, SETTINGS, event=SCHEDULED, sleep=lambda _: None)

    (call,) = published
    assert call["Namespace"] == "LoanDefault/Stability"
    by_name = {
        (m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])): m
        for m in call["MetricData"]
    }
    version = ("model_version", SYNTHETIC_VERSION)
    assert by_name[("MonitoredLoans", (version,))]["Value"] == 3000.0
    score = by_name[("ScorePSI", (version,))]
    expected_score = independent_psi(
        reference.score.shares, reference.score.bin_of_numbers(probability), reference.score.bins
    )
    assert score["Value"] == pytest.approx(expected_score, abs=1e-12)
    assert score["Timestamp"] == END
    for column, name in ((0, "income"), (2, "fico_score")):
        ref = reference.features[name]
        metric = by_name[("FeatureCSI", (version, ("feature", name)))]
        expected = independent_psi(ref.shares, ref.bin_of_numbers(raw[:, column]), ref.bins)
        assert metric["Value"] == pytest.approx(expected, abs=1e-12)
    assert summary["features"]["income"]["verdict"] == "significant"
    assert summary["features"]["fico_score"]["verdict"] == "stable"
    assert summary["features"]["purpose"]["verdict"] == "stable"
    assert summary["verdict"] == "significant"
    assert summary["window"] == {
        "from": "2026-12-01T06:00:00+00:00",
        "to": "2026-12-02T06:00:00+00:00",
        "loans": 3000,
    }
    assert summary["other_model_versions"] == {"v-previous": 40}


def test_an_empty_window_publishes_zero_loans_and_says_so_in_one_line(
    reference: Reference,
    logs: tuple[Any, Stubber],
    cloudwatch: tuple[Any, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (query,) = bin_queries(reference)
    logs_client, stubber = logs
    expect_bin_query(stubber, query, [], LOG_GROUP, END)
    cw, published = cloudwatch
    with caplog.at_level(logging.INFO, logger="loan_service.stability_monitor"):
        summary = run_check(
            logs_client, cw, reference, SETTINGS, event=SCHEDULED, sleep=lambda _: None
        )
    (call,) = published
    assert [m["MetricName"] for m in call["MetricData"]] == ["MonitoredLoans"]
    assert call["MetricData"][0]["Value"] == 0.0
    assert summary["score_psi"] is None
    assert summary["verdict"] is None
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(f"no predictions of model {SYNTHETIC_VERSION} in")
    assert "\n" not in warning.getMessage()


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_a_query_that_does_not_complete_is_one_line_and_publishes_nothing(
    reference: Reference, logs: tuple[Any, Stubber], status: str
) -> None:
    (query,) = bin_queries(reference)
    logs_client, stubber = logs
    stubber.add_response("start_query", {"queryId": "q-1"}, None)
    stubber.add_response("get_query_results", {"status": "Running", "results": []}, None)
    stubber.add_response("get_query_results", {"status": status, "results": []}, None)
    cw = stubbed_client("cloudwatch")
    with Stubber(cw), pytest.raises(MonitoringError) as raised:  # no response: a call would fail
        run_check(logs_client, cw, reference, SETTINGS, event=SCHEDULED, sleep=lambda _: None)
    message = str(raised.value)
    assert message == f"Logs Insights query q-1 over {LOG_GROUP} ended {status}"
    assert query.text  # the query was the real one: the Stubber validated it against the model


def test_a_query_still_running_at_the_deadline_gives_up_in_one_line(
    reference: Reference, logs: tuple[Any, Stubber]
) -> None:
    logs_client, stubber = logs
    stubber.add_response("start_query", {"queryId": "q-slow"}, None)
    for _ in range(3):
        stubber.add_response("get_query_results", {"status": "Running", "results": []}, None)
    ticks = iter([0.0, 10.0, 20.0, 31.0])
    with pytest.raises(MonitoringError) as raised:
        run_check(
            logs_client,
            stubbed_client("cloudwatch"),
            reference,
            SETTINGS,
            event=SCHEDULED,
            sleep=lambda _: None,
            clock=lambda: next(ticks),
        )
    assert str(raised.value) == (
        f"Logs Insights query q-slow over {LOG_GROUP} still Running after 30 s: nothing published"
    )


def test_a_refused_start_is_one_line_naming_the_log_group(
    reference: Reference, logs: tuple[Any, Stubber]
) -> None:
    logs_client, stubber = logs
    stubber.add_client_error(
        "start_query", "ResourceNotFoundException", "The specified log group does not exist."
    )
    with pytest.raises(MonitoringError) as raised:
        run_check(logs_client, stubbed_client("cloudwatch"), reference, SETTINGS, event=SCHEDULED)
    message = str(raised.value)
    assert message.startswith(f"Logs Insights query over {LOG_GROUP} could not start:")
    assert "ResourceNotFoundException" in message
    assert "\n" not in message


def test_settings_come_from_the_environment_and_a_missing_log_group_is_named() -> None:
    settings = MonitorSettings.from_environ(
        {"SERVICE_LOG_GROUP": LOG_GROUP, "STABILITY_WINDOW_HOURS": "6"}
    )
    assert (settings.log_group, settings.window_hours) == (LOG_GROUP, 6)
    with pytest.raises(MonitoringError, match="SERVICE_LOG_GROUP is not set"):
        MonitorSettings.from_environ({})
    with pytest.raises(MonitoringError, match="STABILITY_WINDOW_HOURS must be"):
        MonitorSettings.from_environ(
            {"SERVICE_LOG_GROUP": LOG_GROUP, "STABILITY_WINDOW_HOURS": "0"}
        )
