"""``GET /health`` and ``GET /model``: liveness, counters, and what model is serving."""

from __future__ import annotations

from fastapi import APIRouter

from loan_service.api.deps import ServiceDep
from loan_service.schemas import HealthPublic, ModelInfoPublic

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthPublic, summary="Liveness and counters")
async def health(service: ServiceDep) -> HealthPublic:
    """200 once the verified model is loaded (the process does not start otherwise)."""
    return service.health()


@router.get("/model", response_model=ModelInfoPublic, summary="The serving model")
async def model_info(service: ServiceDep) -> ModelInfoPublic:
    """The manifest's public part: version, features, threshold, held-out metrics."""
    return service.model_info
