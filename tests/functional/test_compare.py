"""``loan-default compare``: swap sets, PSI, grade migration, outcomes; HTML + JSON + one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loan_default.cli import main as cli
from loan_default.compare import psi

# Six loans. A declines 3 and 4; B declines 2 and 3: one swap-in (4), one swap-out (2).
A = {"probability": [0.01, 0.1, 0.3, 0.9, 0.6, 0.05], "prediction": [0, 0, 0, 1, 1, 0]}
B = {"probability": [0.02, 0.1, 0.55, 0.8, 0.4, 0.05], "prediction": [0, 0, 1, 1, 0, 0]}
GRADES_A = [1, 2, 4, 6, 5, 1]
GRADES_B = [1, 2, 5, 6, 4, 1]
DEFAULTS = [0, 0, 1, 1, 0, 0]


def write(path: Path, columns: dict[str, list[float]], **extra: list[int]) -> Path:
    frame = pd.DataFrame({"customer_id": range(6), **columns, **extra})
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def test_two_scored_files_give_swap_sets_migration_and_outcome_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    a = write(tmp_path / "a.parquet", A, grade=GRADES_A)
    b = write(tmp_path / "b.csv", B, grade=GRADES_B)
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"default": DEFAULTS}).to_csv(outcomes, index=False)
    out = tmp_path / "report"

    status = cli(["compare", str(a), str(b), "--out", str(out), "--outcomes", str(outcomes)])

    assert status == 0
    report = json.loads((out / "compare.json").read_text())
    assert report["loans"] == 6
    assert report["agreement_rate"] == pytest.approx(4 / 6)
    assert (report["swap_in"], report["swap_out"]) == (1, 1)
    assert report["approval_rate"] == {"a": pytest.approx(4 / 6), "b": pytest.approx(4 / 6)}
    assert report["score_psi"] == pytest.approx(
        psi(np.asarray(A["probability"]), np.asarray(B["probability"]))
    )
    migration = report["grade_migration"]
    assert migration["grades"] == [1, 2, 4, 5, 6]
    counts = np.asarray(migration["counts"])
    assert counts.sum() == 6
    assert counts[2, 3] == 1  # grade 4 -> 5
    assert counts[3, 2] == 1  # grade 5 -> 4
    assert migration["unchanged_rate"] == pytest.approx(4 / 6)
    assert report["outcomes"]["swap_out"] == {
        "loans": 1,
        "defaults": 1,
        "observed_default_rate": 1.0,
    }
    assert report["outcomes"]["swap_in"]["observed_default_rate"] == 0.0
    assert report["outcomes"]["both_decline"]["observed_default_rate"] == 1.0
    page = (out / "compare.html").read_text()
    assert "swap-ins" in page
    assert "Grade migration" in page

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = mlflow.get_run(report["mlflow_run_id"])
    assert run.data.metrics["swap_in"] == 1.0
    assert run.data.metrics["agreement_rate"] == pytest.approx(4 / 6)
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert artifacts == {"compare.json", "compare.html"}


def test_logged_shadow_pairs_are_compared_champion_against_challenger(tmp_path: Path) -> None:
    lines = ['{"level":"INFO","message":"warming up"}', "not json at all"]
    for index in range(6):
        pair = {
            "event": "shadow",
            "request_id": f"r{index}",
            "champion": {
                "model_version": "v1",
                "answers": [
                    {"probability": A["probability"][index], "prediction": A["prediction"][index]}
                ],
            },
            "challenger": {
                "model_version": "v2",
                "answers": [
                    {"probability": B["probability"][index], "prediction": B["prediction"][index]}
                ],
            },
        }
        lines.append(json.dumps({"level": "INFO", "message": "shadow", "pair": pair}))
    pairs = tmp_path / "shadow.jsonl"
    pairs.write_text("\n".join(lines) + "\n")

    status = cli(["compare", str(pairs), "--out", str(tmp_path / "out"), "--no-mlflow"])

    assert status == 0
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert (report["a"], report["b"]) == ("champion v1", "challenger v2")
    assert (report["swap_in"], report["swap_out"], report["loans"]) == (1, 1, 6)
    assert "grade_migration" not in report


@pytest.mark.parametrize(
    ("make_b", "message"),
    [
        (lambda p: write(p / "b.csv", {"probability": B["probability"]}), "no 'prediction' column"),
        (lambda p: p / "missing.csv", "no such file"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_b, message: str
) -> None:
    a = write(tmp_path / "a.csv", A)
    b = make_b(tmp_path)

    status = cli(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--no-mlflow"])

    assert status == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_files_of_different_lengths_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path / "a.csv", A)
    short = tmp_path / "b.csv"
    pd.DataFrame({k: v[:4] for k, v in B.items()}).to_csv(short, index=False)

    assert cli(["compare", str(a), str(short), "--out", str(tmp_path / "o"), "--no-mlflow"]) == 2
    assert "compare the same loans in the same order" in capsys.readouterr().err


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(1, 5, size=5000)
    assert psi(scores, scores) == pytest.approx(0.0)
    assert psi(scores, np.clip(scores + 0.1, 0, 1)) > 0.25
    saturated = np.concatenate([np.zeros(4000), rng.uniform(0, 1, 1000)])
    assert psi(saturated, saturated) == pytest.approx(0.0)
