"""A loan book described as data: its features, target, ids and reason codes (the schema).

One typed model, used by both sides:

* training reads it from a TOML file (``training.book_file``), completes it (the category values
  seen in the data when the file lists none) and writes it into ``manifest.json`` as ``schema``;
* serving rebuilds it from the manifest at start-up and derives everything that depends on the
  features from it: request models, the page's form, reasons, expected loss.

The model input (what ``model.onnx`` and ``best_model.pkl`` take) is ONE float tensor ``[n, k]``
with the book's features in schema order: a number normalized as ``(x - mean) / std`` with the
training statistics, a category as the index of its value in the feature's ``values``. The one-hot
encoding of categories happens inside the exported model, so every runtime (ONNX, the pickle, an
MLflow pyfunc, a batch scorer) shares this one input. :class:`ModelInput` turns raw columns -
numbers, and strings for categories - into it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FeatureType = Literal["integer", "number", "category"]
NUMERIC_TYPES: Final = frozenset({"integer", "number"})
TargetValue = int | float | str


class SchemaKeyError(ValueError):
    """A rule across keys is broken; ``key`` is the dotted key to fix (relative to the table
    being validated), so the schema file's loader can point at its line."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class FeatureSpec(BaseModel):
    """One feature: its type, valid values, the words people see, and its adverse-action reason."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    type: FeatureType
    min: int | float | None = None
    """Inclusive lower bound (numbers); a value below is a data error and a 422."""
    max: int | float | None = None
    """Inclusive upper bound (numbers)."""
    greater_than: int | float | None = None
    """Exclusive lower bound (numbers), e.g. an income that must be more than 0."""
    values: tuple[str, ...] | None = None
    """Categories: the allowed values, in encoding order (index = the model input)."""
    label: str = ""
    unit: str = ""
    description: str = ""
    hint: str = ""
    """A short example shown in the page's empty field."""
    example: int | float | str | None = None
    """A valid value: what the page prefills and the OpenAPI document shows (else the training
    median, or a category's most frequent value)."""
    reason_code: str = Field(min_length=1)
    reason: str = Field(min_length=1)

    @field_validator("min", "max", "greater_than")
    @classmethod
    def _finite(cls, value: int | float | None) -> int | float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        self._check_example()
        if self.type == "category":
            if any(bound is not None for bound in (self.min, self.max, self.greater_than)):
                raise SchemaKeyError("type", "a category has 'values', not min/max/greater_than")
            if self.values is not None:
                if not self.values:
                    raise SchemaKeyError("values", "'values' must list at least one value")
                if len(set(self.values)) != len(self.values):
                    raise SchemaKeyError("values", "'values' lists a value twice")
        else:
            if self.values is not None:
                raise SchemaKeyError(
                    "values", f"'values' is for categories, not type '{self.type}'"
                )
            if self.min is not None and self.greater_than is not None:
                raise SchemaKeyError("greater_than", "give 'min' or 'greater_than', not both")
            low = self.min if self.min is not None else self.greater_than
            if low is not None and self.max is not None and low > self.max:
                raise SchemaKeyError("max", "the lower bound is above 'max'")
        return self

    def _check_example(self) -> None:
        example = self.example
        if example is None:
            return
        if self.type == "category":
            if not isinstance(example, str):
                raise SchemaKeyError(
                    "example", "a category's example must be one of its values (text)"
                )
            if self.values is not None and example not in self.values:
                raise SchemaKeyError("example", f"'{example}' is not one of 'values'")
            return
        if isinstance(example, str) or not math.isfinite(example):
            raise SchemaKeyError("example", "must be a number")
        if self.type == "integer" and not float(example).is_integer():
            raise SchemaKeyError("example", "must be a whole number")
        too_low = (self.min is not None and example < self.min) or (
            self.greater_than is not None and example <= self.greater_than
        )
        if too_low or (self.max is not None and example > self.max):
            raise SchemaKeyError("example", "is outside the feature's bounds")

    @property
    def is_category(self) -> bool:
        return self.type == "category"

    @property
    def title(self) -> str:
        """The label, or the column name when the schema gives none."""
        return self.label or self.name


class TargetSpec(BaseModel):
    """The outcome column and which of its two values means "defaulted"."""

    model_config = ConfigDict(extra="allow", frozen=True)

    column: str = Field(min_length=1)
    default_value: TargetValue
    repaid_value: TargetValue | None = None
    """The other value; when absent, the one other value found in the training data."""


class IdSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    columns: tuple[str, ...] = ()


class LossSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    exposure: str | None = None
    """The feature that is the exposure at default (expected loss = PD x LGD x exposure)."""


class BookSchema(BaseModel):
    """A whole loan book. ``features`` is ordered: the model input's column order."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "loan book"
    target: TargetSpec
    id: IdSpec = IdSpec()
    features: tuple[FeatureSpec, ...] = Field(min_length=1)
    loss: LossSpec = LossSpec()

    @model_validator(mode="after")
    def _consistent(self) -> BookSchema:
        names = [feature.name for feature in self.features]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise SchemaKeyError(
                f"features.{twice[0]}", f"feature listed twice: {', '.join(twice)}"
            )
        codes = [feature.reason_code for feature in self.features]
        repeated = sorted({code for code in codes if codes.count(code) > 1})
        if repeated:
            second = [f.name for f in self.features if f.reason_code == repeated[0]][1]
            raise SchemaKeyError(
                f"features.{second}.reason_code",
                f"reason_code used by two features: {', '.join(repeated)}",
            )
        if self.target.column in names:
            raise SchemaKeyError(
                "target.column", f"the target '{self.target.column}' cannot also be a feature"
            )
        shared = sorted(set(self.id.columns) & set(names))
        if shared:
            raise SchemaKeyError(
                "id.columns", f"id column cannot also be a feature: {', '.join(shared)}"
            )
        exposure = self.loss.exposure
        if exposure is not None:
            if exposure not in names:
                raise SchemaKeyError("loss.exposure", f"'{exposure}' is not a feature")
            if self.feature(exposure).is_category:
                raise SchemaKeyError(
                    "loss.exposure", f"'{exposure}' must be a number, not a category"
                )
        if self.target.repaid_value is not None and _same_value(
            self.target.repaid_value, self.target.default_value
        ):
            raise SchemaKeyError("target.repaid_value", "equals target.default_value")
        return self

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> BookSchema:
        """From the TOML shape, where ``features`` is a table of tables keyed by name."""
        data = dict(table)
        features = data.get("features")
        if isinstance(features, Mapping):
            data["features"] = [
                {"name": name, **spec} if isinstance(spec, Mapping) else spec
                for name, spec in features.items()
            ]
        return cls.model_validate(data)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    @property
    def categories(self) -> tuple[FeatureSpec, ...]:
        return tuple(feature for feature in self.features if feature.is_category)

    @property
    def is_complete(self) -> bool:
        """Every category lists its values (what a trained model's schema always is)."""
        return all(feature.values for feature in self.categories)

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def with_values(self, values: Mapping[str, Sequence[str]]) -> BookSchema:
        """The same book with the given categories' value lists filled in."""
        features = tuple(
            feature.model_copy(update={"values": tuple(values[feature.name])})
            if feature.name in values
            else feature
            for feature in self.features
        )
        return self.model_copy(update={"features": features})

    def to_manifest(self) -> dict[str, Any]:
        """JSON for ``manifest.json["schema"]`` (features as an ordered list)."""
        return self.model_dump(mode="json", exclude_none=True)


def _same_value(left: TargetValue, right: TargetValue) -> bool:
    if isinstance(left, str) or isinstance(right, str):
        return str(left) == str(right)
    return float(left) == float(right)


class UnknownCategoryError(ValueError):
    """A category value the model was not trained on (``rows`` are 0-based positions)."""

    def __init__(self, feature: str, rows: Sequence[int], allowed: Sequence[str]) -> None:
        self.feature = feature
        self.rows = tuple(rows)
        shown = ", ".join(str(row) for row in self.rows[:5])
        super().__init__(
            f"column '{feature}': value not allowed in {len(self.rows)} row(s), first at "
            f"position {shown} (allowed: {', '.join(allowed)})"
        )


class ModelInput:
    """Raw columns -> the model input: numbers normalized, categories as value indices.

    ``mean`` and ``std`` are per feature in schema order (a category's are 0 and 1, so
    normalization leaves its index unchanged). ``reference`` is each feature's reference point
    in model-input space, the one reasons are measured against: a number's training mean (0 once
    normalized), a category's most frequent training value (its index).
    """

    def __init__(
        self,
        book: BookSchema,
        mean: Sequence[float],
        std: Sequence[float],
        reference: Sequence[float],
    ) -> None:
        if not book.is_complete:
            raise ValueError("every category of the book must list its values")
        self.book = book
        self.names = book.feature_names
        self.mean = np.asarray(mean, dtype=np.float64)
        self.inverse_std = 1.0 / np.asarray(std, dtype=np.float64)
        self.reference = np.asarray(reference, dtype=np.float64)
        self._codes = {
            feature.name: {value: float(index) for index, value in enumerate(feature.values or ())}
            for feature in book.categories
        }

    def category_codes(self, name: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Indices of ``values`` in the feature's value list; -1 for a value not in it."""
        codes = self._codes[name]
        return np.fromiter((codes.get(str(value), -1.0) for value in values), dtype=np.float64)

    def raw_matrix(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """``(n, k)`` float64 in schema order, categories as indices (not yet normalized).

        Raises :class:`UnknownCategoryError` for a category value outside the book's list and
        ``KeyError`` for a missing column; numbers must already be valid (validated upstream).
        """
        matrix = np.empty((_length(columns, self.names), len(self.names)), dtype=np.float64)
        for index, feature in enumerate(self.book.features):
            column = columns[feature.name]
            if feature.is_category:
                codes = self.category_codes(feature.name, column)
                unknown = np.flatnonzero(codes < 0)
                if unknown.size:
                    raise UnknownCategoryError(feature.name, unknown.tolist(), feature.values or ())
                matrix[:, index] = codes
            else:
                matrix[:, index] = np.asarray(column, dtype=np.float64)
        return matrix

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """``(raw - mean) / std`` column by column (categories unchanged)."""
        return (raw - self.mean) * self.inverse_std

    def encode(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """Raw named columns -> the float32 tensor ``model.onnx`` takes."""
        return self.normalize(self.raw_matrix(columns)).astype(np.float32)


def _length(columns: Mapping[str, Sequence[Any] | np.ndarray], names: Sequence[str]) -> int:
    lengths = {len(columns[name]) for name in names}
    if len(lengths) != 1:
        raise ValueError("every column must have the same number of rows")
    return lengths.pop()
