"""Request and response models of the HTTP API; the request models are built per loan book.

The features are the trained model's schema (``manifest.json``): ``build_request_models`` makes
``LoanApplication`` and ``LoanBatch`` from it at start-up, so no feature is named in the code.
Inputs are strict: ``true`` or ``"5"`` is not a number, NaN/Infinity are refused, unknown fields
are refused. Counts are whole numbers: ``5`` and ``5.0`` are accepted (JSON does not tell them
apart), ``5.5`` is not. Bounds are the schema's (inclusive ``min``/``max``, exclusive
``greater_than``), a category takes exactly one of its ``values``.

The service builds its answers as ``TypedDict``s (``PredictionAnswer`` ...) with exactly the fields
of the ``*Public`` models, which document them in the OpenAPI schema: pydantic-core serializes a
dict in one call, and building model instances per answer would cost more than the model call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, ge, gt, itemgetter, le
from typing import Annotated, Any, Final, Literal, TypedDict

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import SchemaValidator, core_schema

from loan_service.book import BookSchema, FeatureSpec

MAX_BATCH_LOANS: Final = 1000

_STRICT_INPUT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
_OUTPUT = ConfigDict(extra="forbid", allow_inf_nan=False)


def _integral_float_to_int(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees), 5.5 is not. Only a
    float with no fractional part is converted; booleans, strings, NaN and fractions still meet
    the strict int check and are refused."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# After the Field: in this order pydantic keeps minimum/maximum in the published JSON schema.
_WHOLE_NUMBER = BeforeValidator(_integral_float_to_int)


class LoanInput(BaseModel):
    """Base of every book's request model; ``model_input`` is its row of the model input."""

    model_config = _STRICT_INPUT

    def model_input(self) -> tuple[Any, ...]:
        """The features in the model's order, a category as its value's index."""
        raise NotImplementedError  # replaced per book by ``build_request_models``


class LoanBatchInput(BaseModel):
    """Base of every book's batch model (``loans`` is narrowed to the book's application)."""

    model_config = _STRICT_INPUT

    loans: list[LoanInput]


BatchRows = Callable[[bytes], "np.ndarray | None"]


@dataclass(frozen=True)
class RequestModels:
    """The request models of one loan book, built from its schema at start-up.

    ``batch_rows`` (None where it cannot vouch for the book) reads a batch body that ``batch``
    accepts straight into its (n, k) float64 rows; it answers None for any other body, which then
    goes to ``batch`` for the errors."""

    application: type[LoanInput]
    batch: type[LoanBatchInput]
    example: dict[str, Any]
    features: tuple[str, ...]
    batch_rows: BatchRows | None = None


def _feature_field(feature: FeatureSpec) -> Any:
    """The annotated type of one feature: strict number/integer with bounds, or its values."""
    bounds: dict[str, Any] = {}
    if feature.min is not None:
        bounds["ge"] = feature.min
    if feature.greater_than is not None:
        bounds["gt"] = feature.greater_than
    if feature.max is not None:
        bounds["le"] = feature.max
    description = feature.description or feature.title
    if feature.is_category:
        values = tuple(feature.values or ())
        choice: Any = Literal[values]
        return Annotated[choice, Field(description=description)]
    if feature.type == "integer":
        return Annotated[int, Field(description=description, **bounds), _WHOLE_NUMBER]
    return Annotated[float, Field(description=description, **bounds)]


def _row_getter(book: BookSchema) -> Any:
    """``model_input`` for the book: attrgetter (C speed), categories mapped to their index."""
    names = book.feature_names
    values_of = attrgetter(*names) if len(names) > 1 else (lambda loan: (getattr(loan, names[0]),))
    if not book.categories:

        def model_input(self: LoanInput) -> tuple[Any, ...]:
            row: tuple[Any, ...] = values_of(self)
            return row

        return model_input
    codes = [
        {value: index for index, value in enumerate(feature.values or ())}
        if feature.is_category
        else None
        for feature in book.features
    ]

    def model_input_with_codes(self: LoanInput) -> tuple[Any, ...]:
        return tuple(
            value if code is None else code[value]
            for value, code in zip(values_of(self), codes, strict=True)
        )

    return model_input_with_codes


def build_request_models(book: BookSchema, example: dict[str, Any]) -> RequestModels:
    """``LoanApplication`` and ``LoanBatch`` for ``book``: one field per feature, in order.

    Inputs are strict as described in the module docstring; a category accepts exactly the
    strings of its ``values``. ``example`` is the loan the OpenAPI document shows.
    """
    fields = {feature.name: (_feature_field(feature), ...) for feature in book.features}
    application = create_model(  # type: ignore[call-overload]
        "LoanApplication",
        __base__=LoanInput,
        __doc__=f"One applicant of the {book.name}: the model's features, in its feature order.",
        **fields,
    )
    application.model_config["json_schema_extra"] = {"examples": [dict(example)]}
    application.model_input = _row_getter(book)
    application.model_rebuild(force=True)
    loans: Any = Annotated[
        list[application],  # type: ignore[valid-type]
        Field(min_length=1, max_length=MAX_BATCH_LOANS, description="1 to 1000 applicants."),
    ]
    batch = create_model(
        "LoanBatch",
        __base__=LoanBatchInput,
        __doc__="Up to 1000 applicants scored in one call; answers keep the input order.",
        loans=(loans, ...),
    )
    return RequestModels(
        application=application,
        batch=batch,
        example=dict(example),
        features=book.feature_names,
        batch_rows=build_batch_rows(book),
    )


_EXACT_INTEGERS_BELOW: Final = 2.0**53


def build_batch_rows(book: BookSchema) -> BatchRows | None:
    """A second reader of ``/predict/batch`` bodies for a book of numbers: pydantic-core's JSON
    mode into plain dicts of strict floats (no model instances, no Python validator per count,
    no field-by-field typed dict: a third less than one), then the rows in one array, where the
    fields and bounds are checked column by column. A 1,000-loan body costs about a quarter of
    the ``LoanBatch`` validation and ``model_input`` rows.

    It accepts no body ``LoanBatch`` refuses: the same strictness (no text, booleans, NaN,
    Infinity, unknown or missing fields: each loan has exactly the book's names; 1 to 1000
    loans), the same bounds, and counts that are whole numbers below 2**53 (where a float and the
    integer compare alike); anything else is None and goes to ``LoanBatch``. A count's ``-0.0``
    is row ``0.0``, as ``LoanBatch`` reads it. Books with categories (and bounds that are not
    exact floats) keep ``LoanBatch`` alone."""
    checks: list[tuple[int, Callable[[Any, float], Any], float]] = []  # (column, test, bound)
    for column, feature in enumerate(book.features):
        bounds = (feature.min, feature.greater_than, feature.max)
        if feature.is_category or any(b is not None and float(b) != b for b in bounds):
            return None
        for test, bound in zip((ge, gt, le), bounds, strict=True):
            if bound is not None:
                checks.append((column, test, float(bound)))
    number = core_schema.float_schema(strict=True, allow_inf_nan=False)
    loan = core_schema.dict_schema(core_schema.str_schema(strict=True), number, strict=True)
    loans = core_schema.list_schema(loan, min_length=1, max_length=MAX_BATCH_LOANS, strict=True)
    body = core_schema.typed_dict_schema(
        {"loans": core_schema.typed_dict_field(loans, required=True)},
        extra_behavior="forbid",
        strict=True,
        total=True,
    )
    validator = SchemaValidator(body)
    names = book.feature_names
    width = len(names)
    row_of = itemgetter(*names) if width > 1 else None
    counts = [index for index, feature in enumerate(book.features) if feature.type == "integer"]

    def batch_rows(raw_body: bytes) -> np.ndarray | None:
        try:
            loans = validator.validate_json(raw_body)["loans"]
            # Every name present (a missing one is a KeyError) and no other (the sizes add up).
            if sum(map(len, loans)) != width * len(loans):
                return None
            if row_of is None:
                rows = np.array([[loan[names[0]]] for loan in loans], dtype=np.float64)
            else:
                # One pass of C iterators into the array: a third less than a list of tuples.
                rows = np.fromiter(
                    chain.from_iterable(map(row_of, loans)), np.float64, len(loans) * width
                ).reshape(len(loans), width)
        except (ValueError, KeyError):  # ValidationError, not even text, a field missing
            return None
        for column, test, bound in checks:
            if not test(rows[:, column], bound).all():
                return None
        if counts:
            whole = rows[:, counts]
            if not (
                np.all(np.floor(whole) == whole) and np.all(np.abs(whole) < _EXACT_INTEGERS_BELOW)
            ):
                return None
            rows[:, counts] = whole + 0.0  # -0.0 -> 0.0, as int(-0.0)
        return rows

    return batch_rows


def example_loan(book: BookSchema, stats_median: Sequence[float]) -> dict[str, Any]:
    """The schema's ``example`` per feature, else the training median (a category's mode)."""
    example: dict[str, Any] = {}
    for feature, median in zip(book.features, stats_median, strict=True):
        given = getattr(feature, "example", None)
        if given is not None:
            example[feature.name] = given
        elif feature.is_category:
            example[feature.name] = (feature.values or ())[int(median)]
        elif feature.type == "integer":
            example[feature.name] = round(median)
        else:
            example[feature.name] = round(median, 2)
    return example


RiskBand = Literal["low", "medium", "high"]


class ReasonAnswer(TypedDict):
    """``ReasonPublic`` as the service builds it."""

    code: str
    feature: str
    impact: float
    text: str


class PredictionAnswer(TypedDict):
    """``PredictionPublic`` as the service builds it (one applicant)."""

    probability: float
    prediction: Literal[0, 1]
    threshold: float
    message: str
    risk_band: RiskBand
    grade: int | None
    reasons: list[ReasonAnswer]
    expected_loss: float | None
    model_version: str
    request_id: str


class BatchPredictionAnswer(TypedDict):
    """``BatchPredictionPublic`` as the service builds it."""

    predictions: list[PredictionAnswer]
    model_version: str
    request_id: str


class ReasonPublic(BaseModel):
    """A principal reason for declining: a feature that raised this applicant's risk."""

    model_config = _OUTPUT

    code: str = Field(description="The reason's stable code (the schema's reason_code).")
    feature: str = Field(description="The feature's name, as in the request.")
    impact: float = Field(
        description="Log-odds of default this feature adds over its training average (> 0); "
        "exp(impact) is the factor by which it multiplies the odds of default."
    )
    text: str = Field(description="The adverse-action wording of the reason (the schema's).")


class PredictionPublic(BaseModel):
    """The answer for one applicant (the original system's first four fields come first)."""

    model_config = _OUTPUT

    probability: float = Field(ge=0.0, le=1.0, description="Probability of default (PD).")
    prediction: Literal[0, 1] = Field(description="1 when probability >= threshold.")
    threshold: float = Field(description="Decision threshold on the probability.")
    message: str = Field(description="The decision in words.")
    risk_band: RiskBand = Field(
        description="low: PD < 0.20; medium: 0.20 <= PD < threshold; high: PD >= threshold."
    )
    grade: int | None = Field(
        ge=1,
        description="Rating grade on the model's master scale (GET /model: grades), 1 = lowest "
        "risk; null only for a model trained before grades existed.",
    )
    reasons: list[ReasonPublic] = Field(
        max_length=4,
        description="Declined applicants only: up to four principal reasons, the one that "
        "raised the risk most first. Approved applicants get none.",
    )
    expected_loss: float | None = Field(
        ge=0.0,
        description="PD x (1 - recovery rate) x the exposure feature of the book's schema; "
        "null for a book that names no exposure.",
    )
    model_version: str
    request_id: str


class BatchPredictionPublic(BaseModel):
    """Answers for a batch, in the same order as ``loans``."""

    model_config = _OUTPUT

    predictions: list[PredictionPublic]
    model_version: str
    request_id: str


class ErrorDetailPublic(BaseModel):
    """One invalid field and why."""

    model_config = _OUTPUT

    loc: list[str | int] = Field(description="Where in the request, e.g. ['body', 'fico_score'].")
    field: str = Field(description="Dotted field path, e.g. 'fico_score' or 'loans[3].income'.")
    msg: str
    type: str


class ErrorPublic(BaseModel):
    """Every non-2xx answer. ``detail`` and ``detail_total`` are present on 422 only."""

    model_config = _OUTPUT

    error: str = Field(description="Machine-readable code, e.g. 'validation_error'.")
    message: str
    request_id: str
    detail: list[ErrorDetailPublic] | None = None
    detail_total: int | None = None


class ValidationErrorPublic(ErrorPublic):
    """A 422: the first 20 invalid fields with their reasons, and how many errors there were."""

    detail: list[ErrorDetailPublic] = Field(max_length=20, description="At most 20 errors.")
    detail_total: int = Field(ge=1, description="How many errors the request had in all.")


class PredictionLogStatus(BaseModel):
    """The background MLflow logger's counters (drops are never silent)."""

    model_config = _OUTPUT

    enabled: bool
    state: str = Field(description="disabled, starting, ok, backoff or stopped.")
    queued: int
    exported: int
    dropped: int = Field(description="Records dropped because the queue was full.")
    failed: int = Field(description="Records lost because an export to MLflow failed.")


class HealthPublic(BaseModel):
    """Liveness plus the loaded model and the logger's state."""

    model_config = _OUTPUT

    status: Literal["ok"]
    model_version: str
    runtime: str = Field(description="onnx or sklearn.")
    uptime_seconds: float
    predictions_served: int
    prediction_log: PredictionLogStatus


class RiskBandsPublic(BaseModel):
    model_config = _OUTPUT

    medium_from: float
    high_from: float


class ModelInfoPublic(BaseModel):
    """The manifest's public part: what model this is and how well it scored on held-out data."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=True, populate_by_name=True, serialize_by_alias=True
    )

    model_version: str
    model_name: str
    model_params: dict[str, object]
    calibration: dict[str, object]
    selection_reason: str
    created_at: str
    features: list[str]
    schema_: dict[str, object] = Field(
        alias="schema",
        description="The loan book's schema: each feature's type, bounds or values, label, unit, "
        "description, hint and reason code (the page builds its form from it).",
    )
    example: dict[str, object] = Field(
        description="A valid applicant (the schema's examples, else the training medians and "
        "most frequent values): what the page prefills and the OpenAPI document shows."
    )
    threshold: float
    risk_bands: RiskBandsPublic
    grades: dict[str, object] | None = Field(
        default=None, description="The master scale: PD bounds and training figures per grade."
    )
    recovery_rate: float
    metrics: dict[str, dict[str, object]]
    data: dict[str, object]
    training_versions: dict[str, object]
    mlflow_run_id: str | None
    registered_model: dict[str, object] | None
    runtime: str
