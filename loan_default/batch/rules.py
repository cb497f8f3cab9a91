"""The checks on each input value, read from the model's book schema, applied to whole columns.

A value the API would refuse is refused here, for the same reason: the rules (integer or number,
bounds, allowed categories) come from the manifest's schema, the same ``FeatureSpec`` the API's
request models are built from, never typed twice. Each column of a record batch is checked with
array operations; only the bad values (rare) are turned into words, one reject per bad value:
``row`` (1-based data row), ``column``, ``reason``. A category is matched on its trimmed text
(as training reads it) and goes to the model as its value's index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
from pyarrow import _compute  # the compute functions' core, what ``pyarrow.compute`` wraps

from loan_service.book import BookSchema, FeatureSpec

REJECT_SCHEMA: Final = pa.schema(
    [("row", pa.int64()), ("column", pa.string()), ("reason", pa.string())]
)
EMPTY_REJECTS: Final = pa.Table.from_arrays(
    [pa.nulls(0, f.type) for f in REJECT_SCHEMA], schema=REJECT_SCHEMA
)  # (``Schema.empty_table`` goes through pyarrow's pandas shim)
MISSING_CATEGORY_TEXT: Final = ("nan", "null")
"""Besides an empty field, the texts training reads as a missing category (case-insensitive)."""


class InputError(ValueError):
    """The input as a whole cannot be scored (a missing or unusable column)."""


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """What the API accepts for one feature."""

    name: str
    integer: bool
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    categories: tuple[str, ...] | None = None  # a category feature: index-encoded for the model

    @classmethod
    def of(cls, feature: FeatureSpec) -> ColumnRule:
        """The rule of one feature of a trained model's schema (its categories listed)."""
        if feature.is_category:
            if not feature.values:
                raise ValueError(f"feature {feature.name}: a category without its values")
            return cls(feature.name, integer=False, categories=tuple(feature.values))

        def bound(value: float | None) -> float | None:
            return None if value is None else float(value)

        return cls(
            feature.name,
            integer=feature.type == "integer",
            minimum=bound(feature.min),
            maximum=bound(feature.max),
            exclusive_minimum=bound(feature.greater_than),
        )


def rules_of(book: BookSchema) -> tuple[ColumnRule, ...]:
    """The rule of each feature, in the model's feature order, from the book's schema."""
    return tuple(ColumnRule.of(feature) for feature in book.features)


def _format(value: Any) -> str:
    value = float(value)
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


@dataclass(slots=True)
class CheckedColumns:
    """A batch's features as float64 model inputs plus what was wrong with the bad rows."""

    raw: np.ndarray  # (n, k) float64; rows with a bad value hold NaN there
    bad: np.ndarray  # (n,) bool: the row has at least one bad value
    rejects: pa.Table  # REJECT_SCHEMA, one line per bad value


def _pc() -> Any:
    """``pyarrow.compute``, imported where text is checked: its import writes the docstring of
    every compute function (~70 ms of CPU), which a book of numbers in Parquet never needs; the
    number columns' cast calls the same function through ``pyarrow._compute``."""
    import pyarrow.compute

    return pyarrow.compute


def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Trimmed text with empty strings as nulls (a CSV's empty field is a missing value)."""
    pc = _pc()
    text = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)


def _numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values float64 with NaN, missing mask, non-numeric mask) of one column."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = _as_text(column)
        missing = text.is_null().to_numpy(zero_copy_only=False)
        try:
            values = _pc().cast(text, pa.float64()).to_numpy(zero_copy_only=False)
            return values, missing, np.zeros(len(column), dtype=bool)
        except pa.ArrowInvalid:  # some value is not a number: find which, value by value
            import pandas as pd

            series = pd.to_numeric(pd.Series(text.to_pandas()), errors="coerce")
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            return values, missing, np.isnan(values) & ~missing & ~_nan_text(text)
    if pa.types.is_null(column.type):
        n = len(column)
        return np.full(n, np.nan), np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    numbers = _compute.call_function("cast", [column], _compute.CastOptions.safe(pa.float64()))
    missing = null_mask(numbers)
    values = primitive_values(numbers, np.float64)
    if missing.any():
        values = np.where(missing, np.nan, values)
    return values, missing, np.zeros(len(column), dtype=bool)


# pyarrow's numpy conversions (``Array.to_numpy``, ``pa.array``) import pandas on their first use,
# 0.6 s of CPU here that a Parquet book never needs: its numbers are read from the Arrow buffers.
def primitive_values(array: pa.Array, dtype: type[np.number[Any]]) -> np.ndarray:
    """The values buffer of a fixed-width Arrow array as numpy, no copy (read-only; the slots of
    nulls hold whatever the buffer holds)."""
    width = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * width
    )


def null_mask(array: pa.Array) -> np.ndarray:
    """(n,) bool, True where the Arrow array holds a null."""
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    if pa.types.is_null(array.type):
        return np.ones(len(array), dtype=bool)
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    valid = np.unpackbits(bits, count=array.offset + len(array), bitorder="little")
    return valid[array.offset :] == 0


def _nan_text(text: pa.Array) -> np.ndarray:
    """Spelled-out NaN ("nan", "NaN"): a number, but not a finite one."""
    pc = _pc()
    lowered = pc.utf8_lower(text)
    return pc.fill_null(pc.equal(lowered, "nan"), False).to_numpy(zero_copy_only=False)


def usable_type(data_type: pa.DataType) -> bool:
    """Column types a feature may arrive in: numbers, text (CSV) or all-null."""
    return (
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
        or pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_dictionary(data_type)
        or pa.types.is_null(data_type)
    )


def check_schema(schema: pa.Schema, rules: Sequence[ColumnRule]) -> None:
    """Raise ``InputError`` when a feature column is absent or of a type no value could pass."""
    missing = [rule.name for rule in rules if rule.name not in schema.names]
    if missing:
        raise InputError(f"input has no column {', '.join(missing)} (a feature of the model)")
    for rule in rules:
        data_type = schema.field(rule.name).type
        if not usable_type(data_type):
            raise InputError(f"column {rule.name} has type {data_type}, not numbers or text")


def check_columns(
    batch: pa.RecordBatch | pa.Table, rules: Sequence[ColumnRule], row_numbers: np.ndarray
) -> CheckedColumns:
    """Model inputs of a batch and its rejects; ``row_numbers`` are the rows' 1-based numbers."""
    n_rows = batch.num_rows
    raw = np.empty((n_rows, len(rules)), dtype=np.float64)
    bad = np.zeros(n_rows, dtype=bool)
    reject_rows: list[np.ndarray] = []
    reject_columns: list[str] = []
    reject_reasons: list[str] = []
    for j, rule in enumerate(rules):
        column = batch.column(rule.name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        reasons = _check(rule, column, raw[:, j])
        for reason, mask in reasons:
            where = np.flatnonzero(mask)
            if where.size == 0:
                continue
            bad[where] = True
            for i in where.tolist():
                reject_rows.append(row_numbers[i : i + 1])
                reject_columns.append(rule.name)
                reject_reasons.append(reason(i))
    if not reject_rows:  # the common case: no value of the batch is bad
        return CheckedColumns(raw=raw, bad=bad, rejects=EMPTY_REJECTS)
    rows = np.concatenate(reject_rows)
    order = np.argsort(rows, kind="stable")  # by row, then in feature order
    rejects = pa.table(
        {
            "row": pa.array(rows[order], pa.int64()),
            "column": pa.array([reject_columns[i] for i in order], pa.string()),
            "reason": pa.array([reject_reasons[i] for i in order], pa.string()),
        },
        schema=REJECT_SCHEMA,
    )
    return CheckedColumns(raw=raw, bad=bad, rejects=rejects)


def _check(rule: ColumnRule, column: pa.Array, out: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Fill ``out`` with the model input and return (reason for row i, mask) pairs, first match
    wins so a value is rejected once."""
    if rule.categories is not None:
        return _check_category(rule, column, out)
    values, missing, not_numeric = _numbers(column)
    out[:] = values
    if not missing.any() and not not_numeric.any() and _clean(rule, values, column.type):
        return []  # the common case, from a few reductions: no value of the column is bad
    text = None if not not_numeric.any() else column

    def quoted(i: int) -> str:
        assert text is not None
        return repr(str(text[i].as_py()).strip())

    checks: list[tuple[Any, np.ndarray]] = [
        (lambda _i: "missing", missing),
        (lambda i: f"not a number: {quoted(i)}", not_numeric),
    ]
    taken = missing | not_numeric
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        checks.append((lambda i: f"not a finite number: {values[i]}", ~finite & ~taken))
        taken = taken | ~finite
        if rule.integer:
            fraction = finite & (values != np.floor(values))
            checks.append(
                (lambda i: f"not a whole number: {_format(values[i])}", fraction & ~taken)
            )
            taken = taken | fraction
        limits = [
            (rule.minimum, np.less, "below the minimum"),
            (rule.exclusive_minimum, np.less_equal, "must be more than"),
            (rule.maximum, np.greater, "above the maximum"),
            (rule.exclusive_maximum, np.greater_equal, "must be less than"),
        ]
        for limit, outside, words in limits:
            if limit is None:
                continue
            mask = outside(values, limit) & ~taken
            checks.append(
                (
                    lambda i, words=words, limit=limit: (
                        f"{words} {_format(limit)}: {_format(values[i])}"
                    ),
                    mask,
                )
            )
            taken = taken | mask
    return checks


def _clean(rule: ColumnRule, values: np.ndarray, data_type: pa.DataType) -> bool:
    """True when ``_check`` would find no bad number in ``values`` (NaN marks missing ones too):
    the lowest and the highest value are finite and within the bounds, and a whole-number
    feature given as floats has no fraction. An integer column is whole by its type."""
    if not values.size:
        return True
    lowest, highest = float(values.min()), float(values.max())  # NaN if any value is NaN
    within = (
        math.isfinite(lowest)
        and math.isfinite(highest)
        and (rule.minimum is None or lowest >= rule.minimum)
        and (rule.exclusive_minimum is None or lowest > rule.exclusive_minimum)
        and (rule.maximum is None or highest <= rule.maximum)
        and (rule.exclusive_maximum is None or highest < rule.exclusive_maximum)
    )
    if within and rule.integer and not pa.types.is_integer(data_type):
        return bool(np.array_equal(np.floor(values), values))
    return within


def _check_category(
    rule: ColumnRule, column: pa.Array, out: np.ndarray
) -> list[tuple[Any, np.ndarray]]:
    assert rule.categories is not None
    pc = _pc()
    text = _as_text(pc.cast(column, pa.string()))
    lowered = pc.utf8_lower(text)
    spelled_missing = pc.is_in(lowered, value_set=pa.array(MISSING_CATEGORY_TEXT, pa.string()))
    missing = pc.or_(text.is_null(), pc.fill_null(spelled_missing, False))
    missing = missing.to_numpy(zero_copy_only=False)
    index = pc.index_in(text, value_set=pa.array(rule.categories, pa.string()))
    codes = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
    unknown = (codes < 0) & ~missing
    out[:] = np.where(codes >= 0, codes, np.nan)
    return [
        (lambda _i: "missing", missing & (codes < 0)),
        (lambda i: f"unknown category: {text[i].as_py()!r}", unknown),
    ]
