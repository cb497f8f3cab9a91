"""Load a loan-book CSV and refuse it, with a precise message, when it breaks SPEC §3.

A model trained on a silently coerced file is worse than no model, so every column is read as
text and checked explicitly: the error names the column, what is wrong and the first offending
data rows (1-based, the header is not a row; file line = row + 1), so the user can fix the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.schema import (
    FEATURES,
    FICO_COLUMN,
    FICO_RANGE,
    NON_NEGATIVE_COLUMNS,
    REQUIRED_COLUMNS,
    TARGET,
)

ROWS_SHOWN = 5
"""How many offending row numbers a message lists; enough to find the pattern, short to read."""

MIN_ROWS_PER_CLASS = 10
"""Stratified hold-out plus 5-fold cross-validation on the rest need a few rows of each class."""

_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})


@dataclass(frozen=True)
class DataIssue:
    """One broken rule: which column, what is wrong, and where (1-based data rows)."""

    column: str | None
    problem: str
    rows: tuple[int, ...] = ()
    count: int = 0

    def describe(self) -> str:
        """One line a person can act on."""
        where = f"column '{self.column}': " if self.column else ""
        if not self.rows:
            return f"{where}{self.problem}"
        shown = ", ".join(str(row) for row in self.rows[:ROWS_SHOWN])
        more = f" (and {self.count - ROWS_SHOWN} more)" if self.count > ROWS_SHOWN else ""
        noun = "row" if self.count == 1 else "rows"
        return f"{where}{self.problem} in {self.count} {noun}; first data {noun}: {shown}{more}"


class DataValidationError(ValueError):
    """The loan book cannot be trained on; ``issues`` lists every broken rule found."""

    def __init__(self, path: Path, issues: list[DataIssue]) -> None:
        self.path = path
        self.issues = issues
        lines = "\n".join(f"  - {issue.describe()}" for issue in issues)
        super().__init__(
            f"{path}: the loan book is not valid ({len(issues)} problem"
            f"{'s' if len(issues) != 1 else ''}; data row 1 is the line after the header):\n{lines}"
        )

    @property
    def column(self) -> str | None:
        """The column of the first problem (what a caller usually reports)."""
        return self.issues[0].column


@dataclass(frozen=True)
class LoanBook:
    """A validated loan book: the six features as float64, the 0/1 target, and the file's hash."""

    features: npt.NDArray[np.float64]
    target: npt.NDArray[np.int64]
    sha256: str
    path: Path

    @property
    def rows(self) -> int:
        """Number of loans."""
        return int(self.target.shape[0])

    @property
    def default_rate(self) -> float:
        """Share of loans that defaulted."""
        return float(self.target.mean())


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed so a large loan book costs no memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_loan_book(path: Path) -> LoanBook:
    """Read ``path`` and return it validated, or raise :class:`DataValidationError`."""
    frame = _read_csv_as_text(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        found = ", ".join(str(column) for column in frame.columns) or "(none)"
        raise DataValidationError(
            path,
            [
                DataIssue(column, f"required column is missing (columns found: {found})")
                for column in missing
            ],
        )
    if frame.empty:
        raise DataValidationError(path, [DataIssue(None, "the file has a header but no rows")])

    issues: list[DataIssue] = []
    numeric: dict[str, pd.Series] = {}
    for column in REQUIRED_COLUMNS:
        values, column_issues = _parse_numeric(frame[column], column)
        numeric[column] = values
        issues.extend(column_issues)
    if not issues:
        issues.extend(_check_ranges(numeric))
    if not issues:
        issues.extend(_check_target(numeric[TARGET]))
    if not issues:
        issues.extend(_check_constant_features(numeric))
    if issues:
        raise DataValidationError(path, issues)

    features = np.column_stack([numeric[column].to_numpy(np.float64) for column in FEATURES])
    target = numeric[TARGET].to_numpy(np.float64).astype(np.int64)
    return LoanBook(features=features, target=target, sha256=sha256_of_file(path), path=path)


def _read_csv_as_text(path: Path) -> pd.DataFrame:
    """Every cell as a string, so nothing is coerced before it has been checked."""
    if not path.is_file():
        raise DataValidationError(path, [DataIssue(None, "file not found")])
    if path.stat().st_size == 0:
        raise DataValidationError(path, [DataIssue(None, "the file is empty")])
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataValidationError(path, [DataIssue(None, "the file is empty")]) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataValidationError(
            path, [DataIssue(None, f"not a readable CSV file ({reason})")]
        ) from None
    frame.columns = [str(column).strip() for column in frame.columns]
    return frame


def _rows_where(mask: pd.Series) -> tuple[tuple[int, ...], int]:
    """1-based data-row numbers where ``mask`` holds (the first few) and how many there are."""
    positions = np.flatnonzero(mask.to_numpy(bool))
    return tuple(int(position) + 1 for position in positions[:ROWS_SHOWN]), int(positions.size)


def _issue(column: str, problem: str, mask: pd.Series) -> DataIssue:
    rows, count = _rows_where(mask)
    return DataIssue(column, problem, rows, count)


def _parse_numeric(text: pd.Series, column: str) -> tuple[pd.Series, list[DataIssue]]:
    """Parse a text column as numbers; report empty/NaN cells and non-numbers separately."""
    stripped = text.str.strip()
    is_missing = stripped.str.lower().isin(_MISSING_TOKENS)
    values = pd.to_numeric(stripped.where(~is_missing), errors="coerce").astype(np.float64)
    is_non_numeric = ~is_missing & values.isna()
    is_infinite = pd.Series(np.isinf(values.to_numpy()), index=values.index)
    issues = []
    if is_missing.any():
        issues.append(_issue(column, "missing value (empty or NaN)", is_missing))
    if is_non_numeric.any():
        issues.append(_issue(column, "not a number", is_non_numeric))
    if is_infinite.any():
        issues.append(_issue(column, "infinite value", is_infinite))
    return values, issues


def _check_ranges(numeric: dict[str, pd.Series]) -> list[DataIssue]:
    issues = []
    for column in NON_NEGATIVE_COLUMNS:
        negative = numeric[column] < 0
        if negative.any():
            issues.append(_issue(column, "negative value (must be >= 0)", negative))
    low, high = FICO_RANGE
    fico = numeric[FICO_COLUMN]
    outside = (fico < low) | (fico > high)
    if outside.any():
        issues.append(_issue(FICO_COLUMN, f"FICO score outside {low:.0f}..{high:.0f}", outside))
    return issues


def _check_target(target: pd.Series) -> list[DataIssue]:
    not_binary = ~target.isin([0.0, 1.0])
    if not_binary.any():
        return [_issue(TARGET, "target must be 0 or 1", not_binary)]
    classes, counts = np.unique(target.to_numpy(), return_counts=True)
    if classes.size < 2:
        only = int(target.iloc[0])
        return [
            DataIssue(
                TARGET,
                f"only one class present (every row is {only}); a classifier needs both 0 and 1",
            )
        ]
    rarest_class, rarest_count = int(classes[counts.argmin()]), int(counts.min())
    if rarest_count < MIN_ROWS_PER_CLASS:
        return [
            DataIssue(
                TARGET,
                f"only {rarest_count} rows of class {rarest_class}; at least "
                f"{MIN_ROWS_PER_CLASS} are needed for a stratified split and "
                "5-fold cross-validation",
            )
        ]
    return []


def _check_constant_features(numeric: dict[str, pd.Series]) -> list[DataIssue]:
    """A constant feature has standard deviation 0: normalization would divide by zero."""
    issues = []
    for column in FEATURES:
        values = numeric[column]
        if values.nunique() == 1:
            issues.append(
                DataIssue(
                    column,
                    f"constant column (every row is {values.iloc[0]:g}); its standard deviation "
                    "is 0, so it cannot be normalized and carries no information",
                )
            )
    return issues
