"""Request and response models of the HTTP API, and the typed answers the service builds.

Inputs are strict: ``true`` or ``"5"`` is not a number, NaN/Infinity are refused, unknown fields
are refused. Counts are whole numbers: ``5`` and ``5.0`` are accepted (JSON does not tell them
apart), ``5.5`` is not. The upper bounds beyond SPEC's ranges are sanity caps that keep the
arithmetic finite (a billion dollars of income is a typo, not an applicant).

The service builds its answers as ``TypedDict``s (``PredictionAnswer`` ...) with exactly the fields
of the ``*Public`` models, which document them in the OpenAPI schema: pydantic-core serializes a
dict in one call, and building model instances per answer would cost more than the model call.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypedDict

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_BATCH_LOANS: Final = 1000
MAX_AMOUNT: Final = 1e9
MAX_CREDIT_LINES: Final = 1000
MAX_YEARS_EMPLOYED: Final = 100
FICO_MIN: Final = 300
FICO_MAX: Final = 850

_STRICT_INPUT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
_OUTPUT = ConfigDict(extra="forbid", allow_inf_nan=False)

EXAMPLE_LOAN: Final[dict[str, Any]] = {
    "credit_lines_outstanding": 1,
    "loan_amt_outstanding": 4500.0,
    "total_debt_outstanding": 7800.0,
    "income": 72000.0,
    "years_employed": 5,
    "fico_score": 640,
}


def _integral_float_to_int(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees), 5.5 is not. Only a
    float with no fractional part is converted; booleans, strings, NaN and fractions still meet
    the strict int check and are refused."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# After the Field: in this order pydantic keeps minimum/maximum in the published JSON schema.
_WHOLE_NUMBER = BeforeValidator(_integral_float_to_int)


class LoanApplication(BaseModel):
    """One applicant: the six model features, in the model's feature order."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [dict(EXAMPLE_LOAN)]},
    )

    credit_lines_outstanding: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_CREDIT_LINES,
            description="Open credit lines besides this loan (whole number, 0 or more).",
        ),
        _WHOLE_NUMBER,
    ]
    loan_amt_outstanding: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_AMOUNT,
            description="Principal still owed on this loan, in dollars (the exposure at default).",
        ),
    ]
    total_debt_outstanding: Annotated[
        float,
        Field(ge=0, le=MAX_AMOUNT, description="All debt the borrower owes, in dollars."),
    ]
    income: Annotated[
        float,
        Field(gt=0, le=MAX_AMOUNT, description="Yearly income in dollars (more than 0)."),
    ]
    years_employed: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_YEARS_EMPLOYED,
            description="Years with the current employer (whole number, 0 or more).",
        ),
        _WHOLE_NUMBER,
    ]
    fico_score: Annotated[
        int,
        Field(ge=FICO_MIN, le=FICO_MAX, description="FICO credit score, 300 to 850."),
        _WHOLE_NUMBER,
    ]


FEATURES: Final[tuple[str, ...]] = tuple(LoanApplication.model_fields)


class LoanBatch(BaseModel):
    """Up to 1000 applicants scored in one call; answers keep the input order."""

    model_config = _STRICT_INPUT

    loans: Annotated[
        list[LoanApplication],
        Field(min_length=1, max_length=MAX_BATCH_LOANS, description="1 to 1000 applicants."),
    ]


RiskBand = Literal["low", "medium", "high"]


class ReasonAnswer(TypedDict):
    """``ReasonPublic`` as the service builds it."""

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
    expected_loss: float
    model_version: str
    request_id: str


class BatchPredictionAnswer(TypedDict):
    """``BatchPredictionPublic`` as the service builds it."""

    predictions: list[PredictionAnswer]
    model_version: str
    request_id: str


class ReasonPublic(BaseModel):
    """A principal factor that raised this applicant's probability of default."""

    model_config = _OUTPUT

    feature: str = Field(description="The feature's name, as in the request.")
    impact: float = Field(
        description="Log-odds of default this feature adds over its training average (> 0); "
        "exp(impact) is the factor by which it multiplies the odds of default."
    )
    text: str = Field(description="The reason in plain words, for the applicant.")


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
        max_length=3, description="Up to three factors that raised the PD, largest first."
    )
    expected_loss: float = Field(
        ge=0.0, description="PD x (1 - recovery rate) x loan_amt_outstanding, in dollars."
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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    model_version: str
    model_name: str
    model_params: dict[str, object]
    calibration: dict[str, object]
    selection_reason: str
    created_at: str
    features: list[str]
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
