"""The synthetic generator: reproducible bytes, the reference file's shape and behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.schema import FEATURES, ID_COLUMN, TARGET
from training.synthesize import (
    COLUMNS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    generate_loans,
    main,
    write_loans_csv,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_CSV = REPO_ROOT / "Data" / "Loan_Data.csv"


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return generate_loans(DEFAULT_ROWS, DEFAULT_SEED)


def test_the_committed_file_is_exactly_what_the_documented_command_writes(tmp_path: Path) -> None:
    regenerated = tmp_path / "Loan_Data.csv"

    exit_code = main(
        ["--rows", str(DEFAULT_ROWS), "--seed", str(DEFAULT_SEED), "--out", str(regenerated)]
    )

    assert exit_code == 0
    assert regenerated.read_bytes() == COMMITTED_CSV.read_bytes()


def test_columns_dtypes_and_integer_columns_match_the_reference_schema(loans: pd.DataFrame) -> None:
    assert tuple(loans.columns) == COLUMNS
    for column in (ID_COLUMN, "credit_lines_outstanding", "years_employed", "fico_score", TARGET):
        assert loans[column].dtype == np.int64, column
    for column in ("loan_amt_outstanding", "total_debt_outstanding", "income"):
        assert loans[column].dtype == np.float64, column
    assert loans[ID_COLUMN].is_unique


def test_values_stay_in_the_ranges_training_accepts(loans: pd.DataFrame) -> None:
    assert loans["credit_lines_outstanding"].between(0, 5).all()
    assert loans["years_employed"].between(0, 10).all()
    assert loans["fico_score"].between(300, 850).all()
    assert (loans[["loan_amt_outstanding", "total_debt_outstanding"]] > 0).all().all()
    assert (loans["income"] >= 1000).all()
    assert set(loans[TARGET].unique()) == {0, 1}


def test_marginals_are_close_to_the_reference_summary(loans: pd.DataFrame) -> None:
    # Reference file: mean credit lines 1.46, loan 4,160, debt 8,719, income 70,040,
    # years 4.55, FICO 637.6; default rate 18.51 %.
    expected_means = {
        "credit_lines_outstanding": 1.46,
        "loan_amt_outstanding": 4160.0,
        "total_debt_outstanding": 8719.0,
        "income": 70040.0,
        "years_employed": 4.55,
        "fico_score": 637.6,
    }
    for column, mean in expected_means.items():
        assert loans[column].mean() == pytest.approx(mean, rel=0.03), column
    assert loans[TARGET].mean() == pytest.approx(0.185, abs=0.01)


def test_correlations_follow_the_reference_loan_book(loans: pd.DataFrame) -> None:
    corr = loans[[*list(FEATURES), TARGET]].corr()
    assert corr.loc["total_debt_outstanding", "credit_lines_outstanding"] > 0.8
    assert corr.loc["loan_amt_outstanding", "income"] > 0.8
    assert corr.loc["credit_lines_outstanding", TARGET] > 0.8
    assert corr.loc["fico_score", TARGET] < -0.2
    assert corr.loc["years_employed", TARGET] < -0.2


def test_defaults_are_driven_by_credit_lines_debt_to_income_and_fico(loans: pd.DataFrame) -> None:
    by_lines = loans.groupby("credit_lines_outstanding")[TARGET].mean()
    assert by_lines.loc[0] < 0.01
    assert by_lines.loc[5] > 0.95
    four_lines = loans[loans["credit_lines_outstanding"] == 4]
    debt_to_income = four_lines["total_debt_outstanding"] / four_lines["income"]
    high_debt = four_lines[debt_to_income > debt_to_income.median()][TARGET].mean()
    low_debt = four_lines[debt_to_income <= debt_to_income.median()][TARGET].mean()
    assert high_debt > low_debt
    good_fico = four_lines[four_lines["fico_score"] > 650][TARGET].mean()
    poor_fico = four_lines[four_lines["fico_score"] < 580][TARGET].mean()
    assert poor_fico > good_fico


def test_same_seed_same_loans_other_seed_other_loans() -> None:
    pd.testing.assert_frame_equal(generate_loans(500, 11), generate_loans(500, 11))
    assert not generate_loans(500, 11).equals(generate_loans(500, 12))


def test_amounts_are_written_with_ten_significant_digits(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    write_loans_csv(generate_loans(50, 1), path)
    first_row = path.read_text().splitlines()[1].split(",")
    for amount in first_row[2:5]:
        digits = amount.replace(".", "").lstrip("0")
        assert len(digits) <= 10, amount


def test_zero_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate_loans(0, 1)
