"""One MLflow run per monitoring window, on a real ``mlflow server``: the figures as metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.monitoring_fixtures import scored_frame, write_scored
from tests.support.paths import PROJECT_CSV, REPO_ROOT
from tests.support.servers import running_mlflow_server

pytestmark = pytest.mark.slow


def test_each_window_is_one_run_with_its_figures(trained_artifacts: Path, tmp_path: Path) -> None:
    loans = pd.read_csv(PROJECT_CSV, nrows=3000).drop(columns=["default"])
    scored = write_scored(tmp_path / "scored.parquet", scored_frame(trained_artifacts, loans))
    home = tmp_path / "mlflow"
    home.mkdir()
    with running_mlflow_server(home) as uri:
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO_ROOT)}
        for window in ("first", "second"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "loan_default",
                    "monitor",
                    "--artifacts",
                    str(trained_artifacts),
                    "--scored",
                    str(scored),
                    "--out",
                    str(tmp_path / window),
                ],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            assert "warning" not in done.stderr
        import mlflow

        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("loan-default-monitoring")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    result = json.loads((tmp_path / "second" / "monitor.json").read_text())
    run = next(r for r in runs if r.info.run_id == result["mlflow_run_id"])
    assert run.data.metrics["score_psi"] == pytest.approx(result["score_psi"])
    assert run.data.metrics["grade_psi"] == pytest.approx(result["grade_psi"])
    assert run.data.metrics["csi.fico_score"] == pytest.approx(
        result["features"]["fico_score"]["csi"]
    )
    assert run.data.metrics["loans"] == 3000
    assert run.data.tags["model_version"] == result["model_version"]
    assert run.data.tags["verdict"] == result["verdict"]
