"""``POST /predict`` and ``POST /predict/batch``: one model call per request.

The routes return dicts; ``response_model`` makes FastAPI validate and serialize them once, in
pydantic-core, and documents the shape in the OpenAPI schema. They take the ``Request`` rather
than dependencies (see ``api.deps`` for the measured reason).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from loan_service.api.deps import request_context_of, service_of
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
async def predict(loan: LoanApplication, request: Request) -> dict[str, Any]:
    """PD, decision at the threshold, risk band, up to three reasons and the expected loss."""
    context = request_context_of(request)
    return service_of(request).predict((loan,), "/predict", context)[0]


@router.post(
    "/predict/batch",
    response_model=BatchPredictionPublic,
    responses=ERROR_RESPONSES,
    summary="Probabilities of default for up to 1000 applicants",
)
async def predict_batch(batch: LoanBatch, request: Request) -> dict[str, Any]:
    """Same answer per loan as ``/predict``, in the input order, from ONE model call."""
    service = service_of(request)
    context = request_context_of(request)
    return {
        "predictions": service.predict(batch.loans, "/predict/batch", context),
        "model_version": service.model_version,
        "request_id": context.request_id,
    }
