"""``monitor --from DATE --to DATE``: the predictions the service logged to MLflow as the window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from loan_default import cli
from loan_service.prediction_log import BackgroundPredictionLog
from tests.support.default_book import FEATURES
from tests.support.paths import PROJECT_CSV
from tests.support.servers import running_mlflow_server
from tests.support.serving_fixtures import build_test_app

pytestmark = pytest.mark.slow


def test_logged_predictions_between_two_dates_are_the_window(
    trained_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service logs to a real ``mlflow server`` over OTLP; monitor reads the same traces."""
    home = tmp_path / "mlflow-server"
    home.mkdir()
    with running_mlflow_server(home) as uri:
        _log_then_monitor(trained_artifacts, tmp_path, monkeypatch, uri)


def _log_then_monitor(
    trained_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    experiment = "serving-monitor-test"
    app, service = build_test_app(
        trained_artifacts, mlflow_tracking_uri=uri, mlflow_experiment_name=experiment
    )
    loans = pd.read_csv(PROJECT_CSV, nrows=400)[list(FEATURES)].to_dict(orient="records")
    with TestClient(app) as client:
        for start in range(0, 300, 100):
            assert client.post(
                "/predict/batch", json={"loans": loans[start : start + 100]}
            ).is_success
        for loan in loans[300:]:
            assert client.post("/predict", json=loan).is_success
        log = service.prediction_log
        assert isinstance(log, BackgroundPredictionLog)
        assert log.wait_until_idle(180)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    # The reader's 5 s default is for a server of its own; this one shares 2 cores with the suite.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    today = datetime.now(UTC).date()
    out = tmp_path / "report"
    arguments = ["--artifacts", str(trained_artifacts), "--out", str(out), "--no-mlflow"]
    window = ["--from", str(today - timedelta(days=1)), "--to", str(today)]
    assert cli.main(["monitor", *arguments, *window, "--quiet"]) == 0
    result = json.loads((out / "monitor.json").read_text())
    assert result["window"]["loans"] == 400
    assert result["window"]["from"].startswith(str(today - timedelta(days=1)))
    assert result["model_version"] == service.model_version
    assert sum(grade["loans"] for grade in result["grades"]) == 400
    # A window before any prediction is empty: one line, exit 2.
    past = ["--from", "2001-01-01", "--to", "2001-01-31"]
    assert cli.main(["monitor", *arguments, *past, "--quiet"]) == 2
