"""``training.cli.main`` in-process: bad data leaves no folder, reproducibility, zero warnings,
progress and ``--quiet``, and an export failure that must not damage the previous folder.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from training import pipeline
from training.cli import EXIT_BAD_DATA, main
from training.synthesize import generate_loans, write_loans_csv

PROJECT_CSV = Path(__file__).resolve().parents[2] / "Data" / "Loan_Data.csv"
HEADER = (
    "customer_id,credit_lines_outstanding,loan_amt_outstanding,total_debt_outstanding,"
    "income,years_employed,fico_score,default"
)
GOOD_ROWS = [
    "1001,0,3000.5,4000.25,50000,3,620,0",
    "1002,5,4100.75,21000.5,61000,2,560,1",
    "1003,1,2900,7000,65000,6,700,0",
    "1004,4,5200,18000,72000,1,590,1",
]

BAD_BOOKS = {
    "missing column": (
        HEADER.replace(",fico_score", "") + "\n1,0,3000,4000,50000,3,0\n",
        ["column 'fico_score': required column is missing"],
    ),
    "non-numeric": (
        HEADER + "\n" + GOOD_ROWS[0] + "\n" + GOOD_ROWS[1].replace("61000", "sixty-one k") + "\n",
        ["column 'income': not a number", "first data row: 2"],
    ),
    "NaN": (
        HEADER + "\n" + "\n".join(GOOD_ROWS[:2]) + "\n1003,1,NaN,7000,65000,6,700,0\n",
        ["column 'loan_amt_outstanding': missing value", "first data row: 3"],
    ),
    "negative amount": (
        HEADER + "\n" + GOOD_ROWS[0] + "\n1002,5,4100,-21000,61000,2,560,1\n",
        ["column 'total_debt_outstanding': negative value", "first data row: 2"],
    ),
    "FICO out of range": (
        HEADER + "\n" + "\n".join(GOOD_ROWS) + "\n1005,0,3000,4000,50000,3,870,0\n",
        ["column 'fico_score': FICO score outside 300..850", "first data row: 5"],
    ),
    "one class only": (
        HEADER + "\n" + "\n".join(row[:-1] + "0" for row in GOOD_ROWS) + "\n",
        ["column 'default': only one class present"],
    ),
    "empty file": ("", ["the file is empty"]),
    "unreadable CSV": ("\x00\x01\x02garbage\n" * 3 + "a,b\n1,2,3,4\n", ["not a readable CSV"]),
    "constant feature": (
        HEADER
        + "\n"
        + "\n".join(
            f"{i},{i % 6},{3000 + i},{4000 + 9 * i},{50000 + 99 * i},4,{600 + i},{int(i % 4 == 0)}"
            for i in range(60)
        )
        + "\n",
        ["column 'years_employed': constant column"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BOOKS))
def test_bad_data_exits_non_zero_names_the_problem_and_writes_no_folder(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected_fragments = BAD_BOOKS[case]
    data = tmp_path / "loans.csv"
    data.write_text(text)
    out = tmp_path / "artifacts"

    exit_code = main(["--data", str(data), "--out", str(out), "--no-mlflow", "--quiet"])

    error_text = capsys.readouterr().err
    assert exit_code == EXIT_BAD_DATA
    for fragment in expected_fragments:
        assert fragment in error_text
    assert "no artifact folder was written" in error_text
    assert list(tmp_path.iterdir()) == [data]


def test_bad_data_leaves_an_existing_artifact_folder_exactly_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "manifest.json").write_text('{"model_version": "previous"}')
    data = tmp_path / "loans.csv"
    data.write_text(BAD_BOOKS["FICO out of range"][0])

    exit_code = main(["--data", str(data), "--out", str(out), "--no-mlflow"])

    assert exit_code == EXIT_BAD_DATA
    assert capsys.readouterr().out == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["artifacts", "loans.csv"]
    assert [path.name for path in out.iterdir()] == ["manifest.json"]
    assert (out / "manifest.json").read_text() == '{"model_version": "previous"}'


@pytest.fixture(scope="module")
def small_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 600-loan synthetic book: a complete training run in a couple of seconds."""
    path = tmp_path_factory.mktemp("small") / "loans.csv"
    write_loans_csv(generate_loans(600, 3), path)
    return path


def test_quiet_prints_nothing_and_still_writes_the_folder(
    small_book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "artifacts"
    exit_code = main(["--data", str(small_book), "--out", str(out), "--no-mlflow", "--quiet"])
    captured = capsys.readouterr()
    assert exit_code == 0
    assert (captured.out, captured.err) == ("", "")
    assert (out / "manifest.json").is_file()


def test_an_export_failure_keeps_the_previous_folder_and_leaves_no_staging_folder(
    small_book: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "manifest.json").write_text("previous")

    def broken_conversion(*args: object, **kwargs: object) -> None:
        raise RuntimeError("skl2onnx failed")

    monkeypatch.setattr(pipeline, "convert_to_onnx", broken_conversion)
    with pytest.raises(RuntimeError, match="skl2onnx failed"):
        main(["--data", str(small_book), "--out", str(out), "--no-mlflow", "--quiet"])

    assert sorted(path.name for path in tmp_path.iterdir()) == ["artifacts"]
    assert (out / "manifest.json").read_text() == "previous"


def test_same_data_and_seed_give_identical_stats_and_metrics_and_no_warning_at_all(
    trained_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN the session's folder trained on Data/Loan_Data.csv with seed 7 (a separate process)
    WHEN training runs again in-process with every warning turned into an error
    THEN it succeeds, prints its stages with timings and the report's path, and stats.json is
    byte-identical and every metric equal."""
    out = tmp_path / "artifacts"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exit_code = main(
            ["--data", str(PROJECT_CSV), "--out", str(out), "--no-mlflow", "--seed", "7"]
        )
    printed = capsys.readouterr().out

    assert exit_code == 0
    assert (out / "stats.json").read_bytes() == (trained_artifacts / "stats.json").read_bytes()
    first = json.loads((trained_artifacts / "manifest.json").read_text())
    second = json.loads((out / "manifest.json").read_text())
    assert second["metrics"] == first["metrics"]
    assert second["model"] == first["model"]
    assert second["model_version"] != first["model_version"]
    for stage in ("load and validate", "logistic_regression:", "random_forest:", "MLflow"):
        assert stage in printed
    assert re.search(r"^\[\s*\d+\.\ds\] load and validate .* \(\d+\.\ds\)$", printed, re.M)
    assert f"Report: {out / 'report' / 'index.html'}" in printed
