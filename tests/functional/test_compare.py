"""``loan-default compare``: swap sets, PSI, grade migration, outcomes; HTML + JSON + one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
        "with_outcome": 1,
        "defaults": 1,
        "observed_default_rate": 1.0,
    }
    assert report["outcomes_join"] == {"on": "row order", "outcomes": 6, "matched": 6}
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


def compare_files_with_outcomes(a: Path, b: Path, outcomes: Path, out: Path) -> int:
    arguments = ["compare", str(a), str(b), "--outcomes", str(outcomes), "--out", str(out)]
    return cli([*arguments, "--no-mlflow"])


def test_scored_files_join_outcomes_on_an_id_column_both_carry(tmp_path: Path) -> None:
    # GIVEN scored files with customer_id 0..5 and outcomes by customer_id, in another order,
    # missing customer 1, plus a customer these files do not hold
    a = write(tmp_path / "a.csv", A)
    b = write(tmp_path / "b.csv", B)
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"customer_id": [5, 3, 2, 0, 4, 99], "default": [0, 1, 1, 0, 0, 1]}).to_csv(
        outcomes, index=False
    )

    # WHEN compared
    status = compare_files_with_outcomes(a, b, outcomes, tmp_path / "out")

    # THEN each loan got its own customer's outcome
    assert status == 0
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert report["outcomes"]["swap_out"]["observed_default_rate"] == 1.0  # customer 2
    assert report["outcomes"]["swap_in"]["observed_default_rate"] == 0.0  # customer 4
    assert report["outcomes"]["both_approve"] == {  # customers 0, 1, 5; 1 has none
        "loans": 3,
        "with_outcome": 2,
        "defaults": 0,
        "observed_default_rate": 0.0,
    }
    assert report["outcomes_join"] == {
        "on": "customer_id",
        "outcomes": 6,
        "matched": 5,
        "loans_without_outcome": 1,
        "outcomes_without_loan": 1,
    }


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ({"customer_id": [10, 11], "default": [0, 1]}, "none of its 2 outcomes matches a scored"),
        (
            {"customer_id": [1, 2, 1], "default": [0, 1, 1]},
            "the same customer_id has two outcomes (data rows 1 and 3)",
        ),
    ],
    ids=["no-match", "twice"],
)
def test_bad_outcomes_for_scored_files_are_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outcomes: dict[str, list[Any]], message: str
) -> None:
    a = write(tmp_path / "a.csv", A)
    b = write(tmp_path / "b.csv", B)
    outcomes_csv = tmp_path / "outcomes.csv"
    pd.DataFrame(outcomes).to_csv(outcomes_csv, index=False)

    status = compare_files_with_outcomes(a, b, outcomes_csv, tmp_path / "o")

    assert status == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert error.count("\n") == 1
    assert not (tmp_path / "o").exists()


def answers(side: dict[str, list[float]], rows: range) -> list[dict[str, float]]:
    return [
        {"probability": side["probability"][row], "prediction": side["prediction"][row]}
        for row in rows
    ]


def write_pairs(path: Path, batch_from: int = 6) -> Path:
    """The six loans as logged pairs: loans before ``batch_from`` one request each (r0, r1 ...),
    the rest together in one batch request ("batch")."""
    lines = ['{"level":"INFO","message":"warming up"}', "not json at all"]
    requests = [(f"r{row}", range(row, row + 1)) for row in range(batch_from)]
    if batch_from < 6:
        requests.append(("batch", range(batch_from, 6)))
    for request_id, rows in requests:
        pair = {
            "event": "shadow",
            "request_id": request_id,
            "champion": {"model_version": "v1", "answers": answers(A, rows)},
            "challenger": {"model_version": "v2", "answers": answers(B, rows)},
        }
        lines.append(json.dumps({"level": "INFO", "message": "shadow", "pair": pair}))
    path.write_text("\n".join(lines) + "\n")
    return path


def compare_with_outcomes(pairs: Path, outcomes: Path, out: Path) -> int:
    return cli(
        ["compare", str(pairs), "--outcomes", str(outcomes), "--out", str(out), "--no-mlflow"]
    )


def test_logged_shadow_pairs_are_compared_champion_against_challenger(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "shadow.jsonl")

    status = cli(["compare", str(pairs), "--out", str(tmp_path / "out"), "--no-mlflow"])

    assert status == 0
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert (report["a"], report["b"]) == ("champion v1", "challenger v2")
    assert (report["swap_in"], report["swap_out"], report["loans"]) == (1, 1, 6)
    assert "grade_migration" not in report


def test_logged_pairs_join_outcomes_on_request_id_and_position_in_a_batch(tmp_path: Path) -> None:
    # GIVEN loans 0-3 as single requests r0..r3, loans 4 and 5 as one batch request; outcomes
    # for every loan but r1, in another order, plus two requests that were never shadowed
    pairs = write_pairs(tmp_path / "shadow.jsonl", batch_from=4)
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame(
        {
            "request_id": ["batch", "r3", "unshadowed-1", "r0", "batch", "r2", "unshadowed-2"],
            "loan": [2, 1, 1, 1, 1, 1, 1],
            "default": [0, 1, 1, 0, 0, 1, 0],
        }
    ).to_csv(outcomes, index=False)

    # WHEN compared with them
    status = compare_with_outcomes(pairs, outcomes, tmp_path / "out")

    # THEN each swap set's rate counts exactly the loans whose outcome joined
    assert status == 0
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    # swap-out: loan 2 (r2, defaulted); swap-in: loan 4 (batch loan 1, repaid)
    assert report["outcomes"]["swap_out"] == {
        "loans": 1,
        "with_outcome": 1,
        "defaults": 1,
        "observed_default_rate": 1.0,
    }
    assert report["outcomes"]["swap_in"]["observed_default_rate"] == 0.0
    # both approve: loans 0, 1, 5; r1 has no outcome
    assert report["outcomes"]["both_approve"] == {
        "loans": 3,
        "with_outcome": 2,
        "defaults": 0,
        "observed_default_rate": 0.0,
    }
    assert report["outcomes_join"] == {
        "on": "request_id, loan",
        "outcomes": 7,
        "matched": 5,
        "loans_without_outcome": 1,
        "outcomes_without_pair": 2,
    }
    assert "5 of 7 outcomes matched" in (tmp_path / "out" / "compare.html").read_text()


def test_single_loan_requests_need_no_loan_column(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "shadow.jsonl")
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"request_id": [f"r{row}" for row in range(6)], "default": DEFAULTS}).to_csv(
        outcomes, index=False
    )

    status = compare_with_outcomes(pairs, outcomes, tmp_path / "out")

    assert status == 0
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert report["outcomes"]["swap_out"]["observed_default_rate"] == 1.0
    assert report["outcomes"]["both_decline"]["observed_default_rate"] == 1.0
    assert report["outcomes_join"]["matched"] == 6


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        (
            {"request_id": ["elsewhere-1", "elsewhere-2"], "default": [0, 1]},
            "none of its 2 outcomes matches a logged pair (first outcome: request "
            "'elsewhere-1', first pair: request 'r0')",
        ),
        (
            {"customer_id": ["r0", "r1"], "default": [0, 1]},
            "no 'request_id' column: logged pairs carry no loan id",
        ),
        ({"request_id": ["r0", "r1"], "outcome": [0, 1]}, "no 'default' column"),
        ({"request_id": ["r0", "r1"], "default": [0, 2]}, "'default' must be 0 or 1 (data row 2)"),
        (
            {"request_id": ["r0", "r1", "r0"], "default": [0, 1, 1]},
            "request 'r0' loan 1 has two outcomes (data rows 1 and 3)",
        ),
        (
            {"request_id": ["r0", "batch"], "default": [0, 1]},
            "request 'batch' scored 2 loans: add a 'loan' column",
        ),
        (
            {"request_id": ["r0", "batch"], "loan": [1, 0], "default": [0, 1]},
            "'loan' must be the loan's position in its request, a whole number from 1 (data row 2)",
        ),
    ],
    ids=["no-match", "no-request-id", "no-default", "not-0-1", "twice", "batch-no-loan", "loan-0"],
)
def test_bad_outcomes_for_logged_pairs_are_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outcomes: dict[str, list[Any]], message: str
) -> None:
    pairs = write_pairs(tmp_path / "shadow.jsonl", batch_from=4)
    outcomes_csv = tmp_path / "outcomes.csv"
    pd.DataFrame(outcomes).to_csv(outcomes_csv, index=False)

    status = compare_with_outcomes(pairs, outcomes_csv, tmp_path / "out")

    assert status == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


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
