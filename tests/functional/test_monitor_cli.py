"""``loan-default monitor`` end to end on a real trained model and scored files in the score
command's shape: stability verdicts, the report, the back-test against scikit-learn / scipy, and
bad input refused with one line, exit 2 and nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from loan_default import cli
from loan_default.monitoring.backtest import binomial_p, hosmer_lemeshow, jeffreys_p
from tests.support.monitoring_fixtures import scored_frame, write_scored
from tests.support.paths import PROJECT_CSV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    return pd.read_csv(PROJECT_CSV)


@pytest.fixture(scope="module")
def files(
    trained_artifacts: Path, book: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("monitor-inputs")
    loans = book.drop(columns=["default"])
    shifted = loans.copy()
    shifted["fico_score"] = shifted["fico_score"] - 60
    outcomes = folder / "outcomes.csv"
    book[["customer_id", "default"]].to_csv(outcomes, index=False)
    return {
        "scored": write_scored(folder / "scored.parquet", scored_frame(trained_artifacts, loans)),
        "shifted": write_scored(folder / "shifted.csv", scored_frame(trained_artifacts, shifted)),
        "outcomes": outcomes,
    }


def monitor(*args: Any) -> int:
    return cli.main(["monitor", *map(str, args), "--no-mlflow", "--quiet"])


def read(out: Path) -> dict[str, Any]:
    return json.loads((out / "monitor.json").read_text())


def test_the_training_book_itself_is_stable(
    trained_artifacts: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert monitor("--artifacts", trained_artifacts, "--scored", files["scored"], "--out", out) == 0
    result = read(out)
    manifest = json.loads((trained_artifacts / "manifest.json").read_text())
    assert result["model_version"] == manifest["model_version"]
    assert result["window"]["loans"] == 10_000
    assert {"from", "to"} <= set(result["window"])
    assert result["score_psi"] < 0.10
    assert result["grade_psi"] < 0.10
    assert result["verdict"] == "stable"
    assert set(result["features"]) == set(manifest["features"])
    assert all(entry["verdict"] == "stable" for entry in result["features"].values())
    assert sum(g["share"] for g in result["grades"]) == pytest.approx(1.0)
    assert [g["grade"] for g in result["grades"]] == list(
        range(1, len(manifest["grades"]["scale"]) + 1)
    )
    assert result["missing_or_out_of_range_grew"] == [] or all(
        entry["out_of_range_share"] < 0.01 for entry in result["missing_or_out_of_range_grew"]
    )
    assert "backtest" not in result
    page = (out / "report.html").read_text()
    for image in ("score-distribution.png", "grade-shares.png", "feature-csi.png"):
        assert f"src='{image}'" in page
        assert (out / image).read_bytes()[:4] == b"\x89PNG"


def test_a_shifted_feature_is_significant_and_the_others_stay_stable(
    trained_artifacts: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert (
        monitor("--artifacts", trained_artifacts, "--scored", files["shifted"], "--out", out) == 0
    )
    result = read(out)
    features = result["features"]
    assert features["fico_score"]["csi"] >= 0.25
    assert features["fico_score"]["verdict"] == "significant"
    assert all(features[name]["csi"] < 0.10 for name in features if name != "fico_score")
    assert result["verdict"] == "significant"
    grew = {entry["feature"] for entry in result["missing_or_out_of_range_grew"]}
    assert "fico_score" in grew  # scores below the training minimum


def test_the_backtest_agrees_with_scikit_learn_and_scipy(
    trained_artifacts: Path, files: dict[str, Path], book: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code = monitor(
        "--artifacts",
        trained_artifacts,
        "--scored",
        files["scored"],
        "--outcomes",
        files["outcomes"],
        "--out",
        out,
    )
    assert code == 0
    backtest = read(out)["backtest"]
    scored = pd.read_parquet(files["scored"]).merge(
        book[["customer_id", "default"]], on="customer_id"
    )
    pd_, y = scored["probability"].to_numpy(), scored["default"].to_numpy()
    assert backtest["loans"] == len(scored)
    assert backtest["roc_auc"] == pytest.approx(roc_auc_score(y, pd_), abs=1e-12)
    assert backtest["gini"] == pytest.approx(2 * roc_auc_score(y, pd_) - 1, abs=1e-12)
    ks = stats.ks_2samp(pd_[y == 1], pd_[y == 0]).statistic
    assert backtest["ks"] == pytest.approx(ks, abs=1e-12)
    assert backtest["brier"] == pytest.approx(brier_score_loss(y, pd_), abs=1e-12)
    for row in backtest["grades"]:
        members = scored["grade"] == row["grade"]
        assert row["loans"] == int(members.sum())
        assert row["defaults"] == int(scored.loc[members, "default"].sum())
        assert row["predicted_pd"] == pytest.approx(scored.loc[members, "probability"].mean())
        assert row["verdict"] in ("green", "amber", "red")
    assert (out / "backtest-grades.png").is_file()


def test_binomial_and_jeffreys_against_scipy() -> None:
    for loans, defaults, pd_ in ((100, 3, 0.01), (2_000, 45, 0.02), (50, 0, 0.05), (30, 30, 0.9)):
        expected = stats.binomtest(defaults, loans, pd_, alternative="greater").pvalue
        assert binomial_p(loans, defaults, pd_) == pytest.approx(expected, rel=1e-9)
        # Jeffreys: the Beta(d + 1/2, n - d + 1/2) posterior's mass below the PD, integrated.
        a, b = defaults + 0.5, loans - defaults + 0.5
        mass, _ = integrate.quad(lambda p, a=a, b=b: stats.beta.pdf(p, a, b), 0.0, pd_, limit=200)
        assert jeffreys_p(loans, defaults, pd_) == pytest.approx(mass, rel=1e-6, abs=1e-10)


def test_hosmer_lemeshow_against_a_direct_computation() -> None:
    rng = np.random.default_rng(5)
    probability = rng.uniform(0.01, 0.6, 5_000)
    outcome = (rng.random(5_000) < probability).astype(np.int8)
    result = hosmer_lemeshow(probability, outcome)
    groups = np.array_split(np.argsort(probability, kind="stable"), 10)
    statistic = sum(
        (outcome[g].sum() - probability[g].sum()) ** 2
        / (g.size * probability[g].mean() * (1 - probability[g].mean()))
        for g in groups
    )
    assert result["statistic"] == pytest.approx(statistic)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(statistic, 8))
    assert result["p_value"] > 0.01  # a calibrated book passes


def _refused(capsys: pytest.CaptureFixture[str], out: Path, *args: Any) -> str:
    assert monitor(*args, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert not out.exists(), "no partial report"
    return err


def test_bad_input_is_one_line_exit_2_and_no_report(
    trained_artifacts: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report"
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(files["scored"]).head(0).to_parquet(empty, index=False)
    err = _refused(capsys, out, "--artifacts", trained_artifacts, "--scored", empty)
    assert "window is empty" in err

    lacking = tmp_path / "lacking.csv"
    pd.read_parquet(files["scored"]).drop(columns=["fico_score", "probability"]).to_csv(lacking)
    err = _refused(capsys, out, "--artifacts", trained_artifacts, "--scored", lacking)
    assert "lacks the model's column(s) fico_score, probability" in err

    strangers = tmp_path / "strangers.csv"
    pd.DataFrame({"customer_id": [1, 2, 3], "default": [0, 1, 0]}).to_csv(strangers, index=False)
    err = _refused(
        capsys,
        out,
        "--artifacts",
        trained_artifacts,
        "--scored",
        files["scored"],
        "--outcomes",
        strangers,
    )
    assert "matches no scored loan" in err

    other = tmp_path / "other-model"
    shutil.copytree(trained_artifacts, other)
    reference = json.loads((other / "reference.json").read_text())
    reference["model_version"] = "20200101.000000-deadbeef"
    (other / "reference.json").write_text(json.dumps(reference))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["files"]["reference.json"] = hashlib.sha256(
        (other / "reference.json").read_bytes()
    ).hexdigest()
    (other / "manifest.json").write_text(json.dumps(manifest))
    err = _refused(capsys, out, "--artifacts", other, "--scored", files["scored"])
    assert "reference.json belongs to model 20200101.000000-deadbeef" in err


def test_a_window_scored_by_another_model_is_refused(
    trained_artifacts: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = pd.read_parquet(files["scored"])
    frame["model_version"] = "20200101.000000-deadbeef"
    foreign = write_scored(tmp_path / "foreign.parquet", frame)
    err = _refused(capsys, tmp_path / "out", "--artifacts", trained_artifacts, "--scored", foreign)
    assert "scored by model 20200101.000000-deadbeef" in err


def test_an_existing_report_survives_a_refused_run(
    trained_artifacts: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report"
    assert monitor("--artifacts", trained_artifacts, "--scored", files["scored"], "--out", out) == 0
    before = (out / "monitor.json").read_bytes()
    assert (
        monitor("--artifacts", trained_artifacts, "--scored", tmp_path / "nope.csv", "--out", out)
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert (out / "monitor.json").read_bytes() == before


def test_the_score_commands_own_output_is_monitored(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    scored = tmp_path / "scored.parquet"
    arguments = [str(PROJECT_CSV), "--out", str(scored), "--artifacts", str(trained_artifacts)]
    code = cli.main(["score", *arguments, "--quiet"])
    assert code == 0
    out = tmp_path / "report"
    assert monitor("--artifacts", trained_artifacts, "--scored", scored, "--out", out) == 0
    result = read(out)
    assert result["window"]["loans"] == 10_000
    assert result["verdict"] == "stable"
