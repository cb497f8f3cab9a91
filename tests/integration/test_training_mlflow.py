"""MLflow tracking for real: a ``mlflow server`` subprocess, a local SQLite store, and dead servers.

A configured but unreachable tracking server must never hang training: within 10 s it warns and
goes on, and the manifest says ``"unreachable"``. Checked with a closed port (refused at once)
and a loopback black hole that drops SYNs as a non-routable address does (packets vanish; only
a timeout ends the wait; no packet leaves the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from tests.support.faults_network import black_hole_port
from tests.support.servers import free_port, running_mlflow_server
from training.synthesize import generate_loans, write_loans_csv
from training.tracking import REGISTERED_MODEL_NAME, TrainingTracker

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACKING_BUDGET_SECONDS = 10.0
QUIET_CLIENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def train(
    data: Path, out: Path, tracking_uri: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    inherited = {key: value for key, value in os.environ.items() if key != "MLFLOW_REGISTRY_URI"}
    env = {
        **inherited,
        "PYTHONPATH": str(REPO_ROOT),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "training", "--data", str(data), "--out", str(out), *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def stage_seconds(stdout: str, stage: str) -> float:
    match = re.search(rf"\] {re.escape(stage)} \((\d+\.\d)s\)", stdout)
    assert match, f"no '{stage}' stage line in:\n{stdout}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def small_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 synthetic loans: the whole pipeline, MLflow included, in a few seconds."""
    path = tmp_path_factory.mktemp("book") / "loans.csv"
    write_loans_csv(generate_loans(2000, 11), path)
    return path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tracking server (SQLite backend, proxied artifacts) on a free port."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture
def mlflow_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUIET_CLIENT.items():
        monkeypatch.setenv(name, value)


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def assert_run_matches_manifest(client: Any, manifest: dict[str, Any]) -> Any:
    """The run holds both candidates' held-out metrics, the data hash, the plots, the model."""
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    for candidate, metrics in manifest["metrics"].items():
        for key in ("f1", "roc_auc", "brier", "precision", "recall", "pr_auc", "log_loss"):
            assert run.data.metrics[f"{candidate}.{key}"] == pytest.approx(metrics[key])
    assert run.data.params["data_sha256"] == manifest["data"]["sha256"]
    assert run.data.params["chosen_model"] == manifest["model"]["name"]
    assert run.data.tags["model_version"] == manifest["model_version"]
    report = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "report")}
    assert {
        "roc.png",
        "pr.png",
        "calibration.png",
        "confusion_matrix.png",
        "feature_weights.png",
        "score_distribution.png",
        "index.html",
    } <= report
    top_level = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"stats.json", "manifest.json", "onnx"} <= top_level
    return run


def assert_registered_model_serves_like_the_pickle(
    client: Any, manifest: dict[str, Any], out: Path, tracking_uri: str, download_to: Path
) -> None:
    """The registered version comes from this run, carries a signature and an input example,
    and predicts from RAW named columns what best_model.pkl predicts from normalized ones
    (loaded from a download: no global MLflow state)."""
    import mlflow.artifacts
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import Model

    from training.normalization import normalize

    registered = manifest["mlflow"]["registered_model"]
    assert registered["name"] == REGISTERED_MODEL_NAME
    assert registered["alias"] == "challenger"
    version = client.get_model_version(REGISTERED_MODEL_NAME, registered["version"])
    assert version.run_id == manifest["mlflow_run_id"]
    assert "challenger" in version.aliases
    assert version.source.startswith("models:/m-")  # MLflow 3: versions point at logged models
    logged_model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged_model.source_run_id == manifest["mlflow_run_id"]
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=logged_model.artifact_location,
        dst_path=str(download_to),
        tracking_uri=tracking_uri,
    )
    info = Model.load(local)
    assert info.signature is not None
    assert info.saved_input_example_info is not None
    raw = pd.DataFrame(
        {
            "credit_lines_outstanding": [0, 1, 2, 5],
            "loan_amt_outstanding": [1500.0, 4500.0, 6000.0, 9000.0],
            "total_debt_outstanding": [2000.0, 7800.0, 25000.0, 30000.0],
            "income": [90000.0, 72000.0, 40000.0, 30000.0],
            "years_employed": [8, 5, 2, 0],
            "fico_score": [780, 640, 580, 520],
        }
    )
    stats = json.loads((out / "stats.json").read_text())
    expected = joblib.load(out / "best_model.pkl").predict_proba(
        normalize(raw.to_numpy(np.float64), stats)
    )[:, 1]
    answer = mlflow.pyfunc.load_model(local).predict(raw)
    np.testing.assert_allclose(answer["probability"], expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_client_env")
def test_training_logs_and_registers_the_model_on_a_real_tracking_server(
    mlflow_server: str, small_book: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"

    result = train(small_book, out, mlflow_server, "--quiet")

    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mlflow"]["status"] == "tracked"
    assert manifest["mlflow"]["tracking_uri"] == mlflow_server
    client = client_for(mlflow_server)
    assert_run_matches_manifest(client, manifest)
    assert_registered_model_serves_like_the_pickle(
        client, manifest, out, mlflow_server, tmp_path / "download"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_client_env")
def test_training_tracks_into_a_local_sqlite_store_with_artifacts_beside_it(
    small_book: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    out = tmp_path / "artifacts"

    result = train(small_book, out, uri, "--quiet")

    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mlflow"]["status"] == "tracked"
    assert manifest["mlflow"]["registered_model"]["name"] == REGISTERED_MODEL_NAME
    assert (store / "mlruns" / manifest["mlflow_run_id"]).is_dir()
    client = client_for(uri)
    assert_run_matches_manifest(client, manifest)
    assert_registered_model_serves_like_the_pickle(
        client, manifest, out, uri, tmp_path / "download"
    )


@contextlib.contextmanager
def dead_tracking_uri(kind: str) -> Iterator[str]:
    """A tracking URI nobody answers: a closed port (refused at once) or a loopback black hole
    (SYNs dropped, as towards a non-routable address, without a packet leaving the machine)."""
    if kind == "closed-port":
        yield f"http://127.0.0.1:{free_port()}"
        return
    with black_hole_port() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "tracking_uri",
    [pytest.param("closed-port", id="closed-port"), pytest.param("black-hole", id="non-routable")],
)
def test_an_unreachable_server_is_given_up_on_within_the_budget(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dead_tracking_uri(tracking_uri) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        began = time.monotonic()
        with TrainingTracker(enabled=True) as tracker:
            pass
        elapsed = time.monotonic() - began

    assert elapsed < TRACKING_BUDGET_SECONDS
    assert tracker.status == "unreachable"
    assert tracker.run_id is None
    assert tracker.detail is not None
    assert tracker.summary()["tracking_uri"] == uri


@pytest.mark.slow
@pytest.mark.parametrize(
    "tracking_uri",
    [pytest.param("closed-port", id="closed-port"), pytest.param("black-hole", id="non-routable")],
)
def test_training_with_an_unreachable_server_warns_finishes_and_records_it(
    tracking_uri: str, small_book: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    with dead_tracking_uri(tracking_uri) as uri:
        result = train(small_book, out, uri)

    assert result.returncode == 0, result.stderr
    assert stage_seconds(result.stdout, "MLflow tracking") < TRACKING_BUDGET_SECONDS
    assert f"warning: MLflow tracking at {uri}" in result.stderr
    assert "training goes on" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mlflow_run_id"] is None
    assert manifest["mlflow"]["status"] == "unreachable"
    assert manifest["mlflow"]["tracking_uri"] == uri
    assert manifest["mlflow"]["registered_model"] is None
