"""The prediction service: the verified model, its scorer, and what each prediction records.

Built once per process by ``create_app``; routes reach it through ``api.deps.ServiceDep``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loan_service.artifacts import ArtifactBundle
from loan_service.observability import Observability
from loan_service.prediction_log import PredictionLog
from loan_service.schemas import (
    HealthPublic,
    LoanApplication,
    ModelInfoPublic,
    RiskBandsPublic,
)
from loan_service.scoring import MEDIUM_RISK_FROM, LoanAssessor, PredictionItem, loans_to_matrix


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the request middleware stamped on the scope."""

    request_id: str
    started_ns: int
    started_wall_ns: int

    @classmethod
    def of_scope(cls, scope: Mapping[str, Any]) -> RequestContext:
        """Read from the ASGI scope; empty values only for an app built without the middleware."""
        state: dict[str, Any] = scope.get("state") or {}
        return cls(
            request_id=state.get("request_id", ""),
            started_ns=state.get("started_ns", 0),
            started_wall_ns=state.get("started_wall_ns", 0),
        )


@dataclass(frozen=True, slots=True)
class PredictionRequest:
    """One request's loans, where it came in, and its context."""

    loans: Sequence[LoanApplication]
    endpoint: str
    context: RequestContext


@dataclass(slots=True)
class PredictionService:
    bundle: ArtifactBundle
    assessor: LoanAssessor
    observability: Observability
    prediction_log: PredictionLog
    started_monotonic: float = field(default_factory=time.monotonic)
    model_info: ModelInfoPublic = field(init=False)

    def __post_init__(self) -> None:
        manifest = self.bundle.manifest
        self.model_info = ModelInfoPublic(
            model_version=manifest.model_version,
            model_name=manifest.model.name,
            model_params=dict(manifest.model.params),
            calibration=dict(manifest.model.calibration),
            selection_reason=manifest.model.selection_reason,
            created_at=manifest.created_at,
            features=list(manifest.features),
            threshold=manifest.threshold,
            risk_bands=RiskBandsPublic(medium_from=MEDIUM_RISK_FROM, high_from=manifest.threshold),
            grades=dict(manifest.grades) if manifest.grades else None,
            recovery_rate=self.assessor.recovery_rate,
            metrics={name: dict(values) for name, values in manifest.metrics.items()},
            data=dict(manifest.data),
            training_versions=dict(manifest.versions),
            mlflow_run_id=manifest.mlflow_run_id,
            registered_model=manifest.mlflow.registered_model if manifest.mlflow else None,
            runtime=self.assessor.runtime,
        )

    @property
    def model_version(self) -> str:
        return self.assessor.model_version

    def predict(
        self, loans: Sequence[LoanApplication], endpoint: str, context: RequestContext
    ) -> list[PredictionItem]:
        """Score, then record (counters + one enqueue); never waits on anything but the model."""
        return self.predict_together([PredictionRequest(loans, endpoint, context)])[0]

    def predict_together(self, requests: Sequence[PredictionRequest]) -> list[list[PredictionItem]]:
        """Several requests in one model call; each is answered and recorded as if alone."""
        raws = [loans_to_matrix(request.loans) for request in requests]
        answers = self.assessor.assess_together(
            raws, [request.context.request_id for request in requests]
        )
        finished_ns = time.perf_counter_ns()
        for request, raw, items in zip(requests, raws, answers, strict=True):
            latency_ns = finished_ns - request.context.started_ns
            self._record(request.endpoint, raw, items, request.context, latency_ns)
        return answers

    def _record(
        self,
        endpoint: str,
        raw: np.ndarray,
        answers: list[PredictionItem],
        context: RequestContext,
        latency_ns: int,
    ) -> None:
        defaults = 0
        probability_sum = 0.0
        for answer in answers:
            defaults += answer["prediction"]
            probability_sum += answer["probability"]
        self.observability.counters.record(
            len(answers), defaults, latency_ns / 1e6, probability_sum
        )
        self.prediction_log.record(
            (context.started_wall_ns, latency_ns, context.request_id, endpoint, raw, answers)
        )

    def health(self) -> HealthPublic:
        return HealthPublic(
            status="ok",
            model_version=self.model_version,
            runtime=self.assessor.runtime,
            uptime_seconds=round(time.monotonic() - self.started_monotonic, 3),
            predictions_served=self.observability.counters.total_predictions,
            prediction_log=self.prediction_log.status(),
        )

    def warm_up(self) -> None:
        """One prediction at startup so the first request does not pay for first-call setup."""
        self.assessor.assess_matrix(self.bundle.stats.mean[None, :].copy(), "warm-up")
