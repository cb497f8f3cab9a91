"""Load a loan-book CSV and refuse it, with a precise message, when it breaks the data rules.

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

from loan_service.book import BookSchema, FeatureSpec
from training.book_file import line_of  # noqa: F401  (re-exported for callers' messages)
from training.schema import DEFAULT_BOOK

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
    """A validated loan book: the features as float64 in schema order (a category as the index of
    its value in the schema's ``values``), the 0/1 target (1 = defaulted), the file's hash, and
    the schema completed with the category values found in the file where it listed none."""

    features: npt.NDArray[np.float64]
    target: npt.NDArray[np.int64]
    sha256: str
    path: Path
    schema: BookSchema = DEFAULT_BOOK

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


def load_loan_book(path: Path, schema: BookSchema = DEFAULT_BOOK) -> LoanBook:
    """Read ``path`` and return it validated against ``schema``, or raise
    :class:`DataValidationError`."""
    frame = _read_csv_as_text(path)
    target_column = schema.target.column
    required = (*schema.feature_names, target_column)
    missing = [column for column in required if column not in frame.columns]
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

    numeric, text, target, issues = _parse_columns(frame, schema)
    if not issues:
        for feature in schema.features:
            if feature.is_category:
                issues.extend(_check_category(text[feature.name], feature))
            else:
                issues.extend(_check_range(numeric[feature.name], feature))
    if not issues:
        defaulted, target_issues = _check_target(target, schema)
        issues.extend(target_issues)
    if not issues:
        issues.extend(_check_constant_features(schema, numeric, text))
    if issues:
        raise DataValidationError(path, issues)

    found_values = {
        feature.name: sorted(text[feature.name].unique())
        for feature in schema.categories
        if feature.values is None
    }
    schema = _with_found_values(path, schema, found_values)
    columns = []
    for feature in schema.features:
        if feature.is_category:
            codes = {value: index for index, value in enumerate(feature.values or ())}
            columns.append(text[feature.name].map(codes).to_numpy(np.float64))
        else:
            columns.append(numeric[feature.name].to_numpy(np.float64))
    return LoanBook(
        features=np.column_stack(columns),
        target=defaulted,
        sha256=sha256_of_file(path),
        path=path,
        schema=schema,
    )


def _parse_columns(
    frame: pd.DataFrame, schema: BookSchema
) -> tuple[dict[str, pd.Series], dict[str, pd.Series], pd.Series, list[DataIssue]]:
    """Numbers parsed, categories (and a text target) stripped; the cells that fail, reported."""
    issues: list[DataIssue] = []
    numeric: dict[str, pd.Series] = {}
    text: dict[str, pd.Series] = {}
    for feature in schema.features:
        if feature.is_category:
            text[feature.name], column_issues = _parse_text(frame[feature.name], feature.name)
        else:
            numeric[feature.name], column_issues = _parse_numeric(frame[feature.name], feature.name)
        issues.extend(column_issues)
    column = schema.target.column
    if isinstance(schema.target.default_value, str):
        target, target_issues = _parse_text(frame[column], column)
    else:
        target, target_issues = _parse_numeric(frame[column], column)
    issues.extend(target_issues)
    return numeric, text, target, issues


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


_MISSING_TEXT = frozenset({"", "nan", "null"})
"""For a category, "none" or "na" can be a real value (no guarantor, not applicable)."""


def _parse_text(text: pd.Series, column: str) -> tuple[pd.Series, list[DataIssue]]:
    """A category (or text target) column: stripped text; empty/NaN cells are reported."""
    stripped = text.str.strip()
    is_missing = stripped.str.lower().isin(_MISSING_TEXT)
    issues = []
    if is_missing.any():
        issues.append(_issue(column, "missing value (empty or NaN)", is_missing))
    return stripped, issues


def _bound(value: float) -> str:
    """300 -> '300', 1e9 -> '1,000,000,000', 0.5 -> '0.5'."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _with_found_values(path: Path, schema: BookSchema, found: dict[str, list[str]]) -> BookSchema:
    """The schema completed with the category values found, whose examples must be among them."""
    if not found:
        return schema
    unseen_examples = [
        DataIssue(name, f"the schema's example {example!r} is not a value found in the file")
        for name, values in found.items()
        if (example := schema.feature(name).example) is not None and example not in values
    ]
    if unseen_examples:
        raise DataValidationError(path, unseen_examples)
    return schema.with_values(found)


def _check_range(values: pd.Series, feature: FeatureSpec) -> list[DataIssue]:
    """The schema's bounds and, for integers, whole numbers; each rule named in its message."""
    column = feature.name
    issues = []
    low, high = feature.min, feature.max
    if feature.greater_than is not None:
        at_or_below = values <= feature.greater_than
        if at_or_below.any():
            problem = (
                "zero or negative value (must be > 0)"
                if feature.greater_than == 0.0
                else f"value at or below {_bound(feature.greater_than)} (must be more)"
            )
            issues.append(_issue(column, problem, at_or_below))
    elif low == 0.0 and (values < 0).any():
        issues.append(_issue(column, "negative value (must be >= 0)", values < 0))
    elif low is not None and high is not None:
        outside = (values < low) | (values > high)
        if outside.any():
            issues.append(
                _issue(column, f"{feature.title} outside {_bound(low)}..{_bound(high)}", outside)
            )
        return issues
    elif low is not None and (values < low).any():
        issues.append(_issue(column, f"value below {_bound(low)} (the minimum)", values < low))
    if high is not None and (values > high).any():
        issues.append(_issue(column, f"value above {_bound(high)} (the maximum)", values > high))
    if feature.type == "integer":
        fractional = values != np.floor(values)
        if fractional.any():
            issues.append(_issue(column, "not a whole number", fractional))
    return issues


def _check_category(values: pd.Series, feature: FeatureSpec) -> list[DataIssue]:
    if feature.values is None:
        return []
    not_allowed = ~values.isin(feature.values)
    if not not_allowed.any():
        return []
    seen = ", ".join(sorted(values[not_allowed].unique())[:ROWS_SHOWN])
    return [
        _issue(
            feature.name,
            f"value not allowed ({seen}; allowed: {', '.join(feature.values)})",
            not_allowed,
        )
    ]


def _show(value: object) -> str:
    return _bound(float(value)) if isinstance(value, int | float) else str(value)


def _check_target(
    target: pd.Series, schema: BookSchema
) -> tuple[npt.NDArray[np.int64], list[DataIssue]]:
    """1 where the row is the schema's default value; the other value must be the only other."""
    column = schema.target.column
    spec = schema.target
    value = spec.default_value
    default: object = value if isinstance(value, str) else float(value)
    is_default = target == default
    others = target[~is_default]
    if spec.repaid_value is not None:
        given = spec.repaid_value
        repaid: object = given if isinstance(given, str) else float(given)
        neither = ~is_default & (target != repaid)
        if neither.any():
            problem = f"target must be {_show(repaid)} or {_show(default)}"
            return np.empty(0, np.int64), [_issue(column, problem, neither)]
    else:
        counts = others.value_counts()
        if counts.size > 1:
            repaid = counts.index[0]
            neither = ~is_default & (target != repaid)
            problem = (
                f"target must be {_show(default)} (default) or one other value (repaid); "
                f"found also {', '.join(_show(v) for v in counts.index[1 : ROWS_SHOWN + 1])}"
            )
            return np.empty(0, np.int64), [_issue(column, problem, neither)]
        repaid = counts.index[0] if counts.size else None
    defaulted = is_default.to_numpy(bool).astype(np.int64)
    rows_default = int(defaulted.sum())
    rows_repaid = int(defaulted.size - rows_default)
    if rows_default == 0 or rows_repaid == 0:
        other = _show(repaid) if repaid is not None else "a repaid value"
        return np.empty(0, np.int64), [
            DataIssue(
                column,
                f"only one class present (every row is {_show(target.iloc[0])}); a classifier "
                f"needs both {other} and {_show(default)}",
            )
        ]
    rarest_count = min(rows_default, rows_repaid)
    rarest_class = default if rows_default <= rows_repaid else repaid
    if rarest_count < MIN_ROWS_PER_CLASS:
        return np.empty(0, np.int64), [
            DataIssue(
                column,
                f"only {rarest_count} rows of class {_show(rarest_class)}; at least "
                f"{MIN_ROWS_PER_CLASS} are needed for a stratified split and "
                "5-fold cross-validation",
            )
        ]
    return defaulted, []


def _check_constant_features(
    schema: BookSchema, numeric: dict[str, pd.Series], text: dict[str, pd.Series]
) -> list[DataIssue]:
    """A constant feature has standard deviation 0: normalization would divide by zero."""
    issues = []
    for feature in schema.features:
        column = feature.name
        values = text[column] if feature.is_category else numeric[column]
        if values.nunique() == 1:
            shown = values.iloc[0] if feature.is_category else f"{values.iloc[0]:g}"
            issues.append(
                DataIssue(
                    column,
                    f"constant column (every row is {shown}); its standard deviation "
                    "is 0, so it cannot be normalized and carries no information"
                    if not feature.is_category
                    else f"constant column (every row is {shown}); it carries no information",
                )
            )
    return issues
