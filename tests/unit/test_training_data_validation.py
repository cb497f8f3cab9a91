"""Every bad-data case of the data rules (and a few more) is refused with the column and rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import DataValidationError, load_loan_book
from training.schema import FEATURES, TARGET

HEADER = (
    "customer_id,credit_lines_outstanding,loan_amt_outstanding,total_debt_outstanding,"
    "income,years_employed,fico_score,default"
)


def valid_rows(count: int = 30) -> list[list[str]]:
    """A small loan book that passes every rule: both classes, no constant feature."""
    rows = []
    for index in range(count):
        rows.append(
            [
                str(1_000_000 + index),
                str(index % 6),
                f"{3000 + 17.5 * index:.4f}",
                f"{5000 + 230.25 * index:.4f}",
                f"{50000 + 900 * index:.2f}",
                str(index % 11),
                str(560 + 7 * index),
                "1" if index % 3 == 0 else "0",
            ]
        )
    return rows


def write_book(folder: Path, rows: list[list[str]], header: str = HEADER) -> Path:
    path = folder / "loans.csv"
    path.write_text(header + "\n" + "\n".join(",".join(row) for row in rows) + "\n")
    return path


def column_index(name: str) -> int:
    return HEADER.split(",").index(name)


def with_cell(rows: list[list[str]], data_row: int, column: str, value: str) -> list[list[str]]:
    """Set the cell of 1-based ``data_row`` in ``column``."""
    rows[data_row - 1][column_index(column)] = value
    return rows


def rejection(path: Path) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        load_loan_book(path)
    return caught.value


def test_a_valid_loan_book_loads_as_float_features_in_contract_order_and_int_target(
    tmp_path: Path,
) -> None:
    book = load_loan_book(write_book(tmp_path, valid_rows()))

    assert book.features.shape == (30, len(FEATURES))
    assert book.features.dtype == np.float64
    assert book.target.dtype == np.int64
    assert book.features[2].tolist() == [2.0, 3035.0, 5460.5, 51800.0, 2.0, 574.0]
    assert book.rows == 30
    assert book.default_rate == pytest.approx(10 / 30)
    assert len(book.sha256) == 64


def test_extra_columns_and_a_missing_customer_id_are_ignored(tmp_path: Path) -> None:
    rows = [[*row[1:], "ignored"] for row in valid_rows()]
    header = ",".join(HEADER.split(",")[1:]) + ",branch"
    book = load_loan_book(write_book(tmp_path, rows, header=header))
    assert book.rows == 30


@pytest.mark.parametrize("missing", ["fico_score", TARGET])
def test_missing_column_is_named(tmp_path: Path, missing: str) -> None:
    drop = column_index(missing)
    header = ",".join(name for i, name in enumerate(HEADER.split(",")) if i != drop)
    rows = [[cell for i, cell in enumerate(row) if i != drop] for row in valid_rows()]

    error = rejection(write_book(tmp_path, rows, header=header))

    assert error.column == missing
    assert f"column '{missing}': required column is missing" in str(error)


def test_non_numeric_cell_names_column_and_1_based_data_rows(tmp_path: Path) -> None:
    rows = with_cell(valid_rows(), 4, "income", "fifty thousand")
    rows = with_cell(rows, 9, "income", "12.5k")

    error = rejection(write_book(tmp_path, rows))

    assert error.column == "income"
    assert "column 'income': not a number in 2 rows; first data rows: 4, 9" in str(error)


@pytest.mark.parametrize("blank", ["", "NaN", "nan", "NA", "null"])
def test_nan_or_empty_cell_is_reported_as_missing_value(tmp_path: Path, blank: str) -> None:
    rows = with_cell(valid_rows(), 7, "total_debt_outstanding", blank)

    error = rejection(write_book(tmp_path, rows))

    assert error.column == "total_debt_outstanding"
    assert "missing value (empty or NaN) in 1 row; first data row: 7" in str(error)


def test_infinite_value_is_rejected(tmp_path: Path) -> None:
    rows = with_cell(valid_rows(), 2, "income", "inf")
    error = rejection(write_book(tmp_path, rows))
    assert error.column == "income"
    assert "infinite value" in str(error)


@pytest.mark.parametrize(
    "column",
    [
        "loan_amt_outstanding",
        "total_debt_outstanding",
        "credit_lines_outstanding",
        "years_employed",
    ],
)
def test_negative_amounts_and_counts_are_rejected(tmp_path: Path, column: str) -> None:
    rows = with_cell(valid_rows(), 12, column, "-1")

    error = rejection(write_book(tmp_path, rows))

    assert error.column == column
    assert "negative value (must be >= 0) in 1 row; first data row: 12" in str(error)


@pytest.mark.parametrize("income", ["-1", "0"])
def test_income_must_be_more_than_zero(tmp_path: Path, income: str) -> None:
    rows = with_cell(valid_rows(), 12, "income", income)

    error = rejection(write_book(tmp_path, rows))

    assert error.column == "income"
    assert "zero or negative value (must be > 0) in 1 row; first data row: 12" in str(error)


@pytest.mark.parametrize("score", ["299", "851", "0", "9000"])
def test_fico_outside_300_to_850_is_rejected(tmp_path: Path, score: str) -> None:
    rows = with_cell(valid_rows(), 5, "fico_score", score)

    error = rejection(write_book(tmp_path, rows))

    assert error.column == "fico_score"
    assert "FICO score outside 300..850 in 1 row; first data row: 5" in str(error)


@pytest.mark.parametrize("score", ["300", "850"])
def test_fico_range_bounds_are_inclusive(tmp_path: Path, score: str) -> None:
    rows = with_cell(valid_rows(), 5, "fico_score", score)
    assert load_loan_book(write_book(tmp_path, rows)).rows == 30


@pytest.mark.parametrize("only", ["0", "1"])
def test_one_class_only_is_rejected(tmp_path: Path, only: str) -> None:
    rows = [[*row[:-1], only] for row in valid_rows()]

    error = rejection(write_book(tmp_path, rows))

    assert error.column == TARGET
    assert f"only one class present (every row is {only})" in str(error)


def test_too_few_rows_of_a_class_for_stratified_cv_is_rejected(tmp_path: Path) -> None:
    rows = [[*row[:-1], "1" if index < 3 else "0"] for index, row in enumerate(valid_rows())]
    error = rejection(write_book(tmp_path, rows))
    assert error.column == TARGET
    assert "only 3 rows of class 1" in str(error)


def test_target_other_than_0_or_1_is_rejected(tmp_path: Path) -> None:
    rows = with_cell(valid_rows(), 3, TARGET, "2")
    error = rejection(write_book(tmp_path, rows))
    assert error.column == TARGET
    assert "target must be 0 or 1 in 1 row; first data row: 3" in str(error)


def test_constant_feature_is_rejected_because_its_std_would_be_zero(tmp_path: Path) -> None:
    rows = [with_cell([row], 1, "years_employed", "4")[0] for row in valid_rows()]

    error = rejection(write_book(tmp_path, rows))

    assert error.column == "years_employed"
    assert "constant column (every row is 4)" in str(error)
    assert "standard deviation is 0" in str(error)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "the file is empty" in str(rejection(path))


def test_header_without_rows_is_rejected(tmp_path: Path) -> None:
    assert "header but no rows" in str(rejection(write_book(tmp_path, [])))


def test_binary_garbage_is_rejected_as_unreadable_csv(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    path.write_bytes(bytes(range(256)) * 8)
    assert "not a readable CSV file" in str(rejection(path))


def test_ragged_csv_is_rejected_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    path.write_text(HEADER + "\n1,2,3\n" + "1,2,3,4,5,6,7,8,9,10,11\n")
    assert "not a readable CSV file" in str(rejection(path))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    assert "file not found" in str(rejection(tmp_path / "nowhere.csv"))


def test_many_offending_rows_show_the_first_five_and_how_many_more(tmp_path: Path) -> None:
    rows = valid_rows()
    for data_row in (3, 6, 9, 12, 15, 18, 21):
        rows = with_cell(rows, data_row, "loan_amt_outstanding", "-5")

    message = str(rejection(write_book(tmp_path, rows)))

    assert "in 7 rows; first data rows: 3, 6, 9, 12, 15 (and 2 more)" in message


def test_every_broken_column_is_listed_not_only_the_first(tmp_path: Path) -> None:
    rows = with_cell(valid_rows(), 2, "income", "abc")
    rows = with_cell(rows, 8, "fico_score", "")

    error = rejection(write_book(tmp_path, rows))

    assert [issue.column for issue in error.issues] == ["income", "fico_score"]
    assert "2 problems" in str(error)
