"""``POST /predict`` and ``POST /predict/batch``: one model call per request.

The routes return dicts; ``response_model`` makes FastAPI validate and serialize them once, in
pydantic-core, and documents the shape in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from loan_service.api.deps import RequestContextDep, ServiceDep
from loan_service.schemas import (
    BatchPredictionPublic,
    ErrorPublic,
    LoanApplication,
    LoanBatch,
    PredictionPublic,
    ValidationErrorPublic,
)

router = APIRouter(tags=["predictions"])

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorPublic, "description": "Body over 1 MiB, or more than 1000 loans."},
    415: {"model": ErrorPublic, "description": "The body is not JSON."},
    422: {"model": ValidationErrorPublic, "description": "Each invalid field and why."},
    500: {"model": ErrorPublic, "description": "Internal error (no details are exposed)."},
}


@router.post(
    "/predict",
    response_model=PredictionPublic,
    responses=ERROR_RESPONSES,
    summary="Probability of default for one applicant",
)
async def predict(
    loan: LoanApplication, service: ServiceDep, context: RequestContextDep
) -> dict[str, Any]:
    """PD, decision at the threshold, risk band, up to three reasons and the expected loss."""
    return service.predict((loan,), "/predict", context)[0]


@router.post(
    "/predict/batch",
    response_model=BatchPredictionPublic,
    responses=ERROR_RESPONSES,
    summary="Probabilities of default for up to 1000 applicants",
)
async def predict_batch(
    batch: LoanBatch, service: ServiceDep, context: RequestContextDep
) -> dict[str, Any]:
    """Same answer per loan as ``/predict``, in the input order, from ONE model call."""
    return {
        "predictions": service.predict(batch.loans, "/predict/batch", context),
        "model_version": service.model_version,
        "request_id": context.request_id,
    }
