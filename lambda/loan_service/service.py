"""The prediction service: the verified model, its scorer, and what each prediction records.

Built once per process by ``create_app``; routes reach it through ``api.deps``.

Single-loan requests that are ready in the same event-loop turn share ONE model call
(``predict_one`` through ``PredictionCoalescer``). Under load a uvicorn worker reads several
requests per turn; an ONNX Runtime call there cost ~40 us of CPU, not the ~11 us of a warm loop,
because the rest of the request evicts its code and data from the caches between calls - sharing
it is the cheapest prediction. A request coming alone waits one loop turn (a few us) and is
answered alone. Each request is still answered, timed, counted and logged as itself. A Lambda
invocation is one request per run of its event loop: it is scored at once, never queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loan_service.artifacts import ArtifactBundle
from loan_service.observability import Observability
from loan_service.prediction_log import PredictionLog, PredictionRecord
from loan_service.schemas import (
    HealthPublic,
    LoanInput,
    ModelInfoPublic,
    PredictionAnswer,
    RequestModels,
    RiskBandsPublic,
    build_request_models,
    example_loan,
)
from loan_service.scoring import MEDIUM_RISK_FROM, BlockAnswers, LoanAssessor, loans_to_matrix
from loan_service.shadow import ShadowScorer


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

    loans: Sequence[LoanInput]
    endpoint: str
    context: RequestContext

    def matrix(self) -> np.ndarray:
        return loans_to_matrix(self.loans)


Answers = list[list[PredictionAnswer]]  # per request, its answers in order


class SharedModelCallError(RuntimeError):
    """The model call a request shared with others failed (the cause is chained)."""


class PredictionCoalescer:
    """Requests submitted in the same event-loop turn are scored together, in one model call.

    The first request of a turn schedules the call with ``call_soon``; requests whose tasks run
    before it (uvicorn starts one task per request it read in that turn) join.
    """

    def __init__(self, predict_together: Callable[[Sequence[PredictionRequest]], Answers]) -> None:
        self._predict_together = predict_together
        self._waiting: list[tuple[PredictionRequest, asyncio.Future[list[PredictionAnswer]]]] = []

    async def predict(self, request: PredictionRequest) -> list[PredictionAnswer]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[PredictionAnswer]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._answer_waiting)
        self._waiting.append((request, answer))
        return await answer

    def _answer_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            answers = self._predict_together([request for request, _ in waiting])
        except Exception as exc:  # every request of the call fails, each with its own error
            for _, answer in waiting:
                if not answer.done():
                    error = SharedModelCallError("the shared model call failed")
                    error.__cause__ = exc
                    answer.set_exception(error)
            return
        for (_, answer), items in zip(waiting, answers, strict=True):
            if not answer.done():  # a cancelled request is simply not answered
                answer.set_result(items)


@dataclass(slots=True)
class PredictionService:
    bundle: ArtifactBundle
    assessor: LoanAssessor
    observability: Observability
    prediction_log: PredictionLog
    shadow: ShadowScorer | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    model_info: ModelInfoPublic = field(init=False)
    coalescer: PredictionCoalescer = field(init=False)
    request_models: RequestModels = field(init=False)

    def __post_init__(self) -> None:
        self.coalescer = PredictionCoalescer(self.predict_together)
        manifest = self.bundle.manifest
        self.request_models = build_request_models(
            manifest.book, example_loan(manifest.book, self.bundle.stats.median.tolist())
        )
        self.model_info = ModelInfoPublic(
            model_version=manifest.model_version,
            model_name=manifest.model.name,
            model_params=dict(manifest.model.params),
            calibration=dict(manifest.model.calibration),
            selection_reason=manifest.model.selection_reason,
            created_at=manifest.created_at,
            features=list(manifest.features),
            schema=manifest.book.to_manifest(),
            example=dict(self.request_models.example),
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

    async def predict_one(
        self, loan: LoanInput, endpoint: str, context: RequestContext, *, alone: bool = False
    ) -> PredictionAnswer:
        """One applicant, scored together with the other single-loan requests of this turn.

        ``alone``: nothing can join this request (a Lambda invocation runs its own event loop for
        one event), so it is scored at once: waiting a loop turn for company that cannot come
        cost a Lambda invocation a sixteenth of its instructions (callgrind)."""
        if alone:
            return self.predict_together([PredictionRequest((loan,), endpoint, context)])[0][0]
        return (await self.coalescer.predict(PredictionRequest((loan,), endpoint, context)))[0]

    def predict(
        self, loans: Sequence[LoanInput], endpoint: str, context: RequestContext
    ) -> list[PredictionAnswer]:
        """Score, then record (counters + one enqueue); never waits on anything but the model."""
        return self.predict_together([PredictionRequest(loans, endpoint, context)])[0]

    def predict_rows_json(self, rows: np.ndarray, endpoint: str, context: RequestContext) -> bytes:
        """``to_json`` of ``predict``'s answers for loans already read into (n, k) rows
        (``RequestModels.batch_rows``), the same bytes and records, from the scorer's columns: no
        answer dict is built unless the prediction log or the shadow challenger reads one."""
        answers = self.assessor.block_answers(rows, context.request_id)
        latency_ns = time.perf_counter_ns() - context.started_ns
        self._record(endpoint, rows, answers, context, latency_ns)
        return answers.to_json()

    def predict_together(self, requests: Sequence[PredictionRequest]) -> Answers:
        """Several requests in one model call; each is answered and recorded as if alone."""
        raws = [request.matrix() for request in requests]
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
        answers: list[PredictionAnswer] | BlockAnswers,
        context: RequestContext,
        latency_ns: int,
    ) -> None:
        defaults = 0
        probability_sum = 0.0
        if isinstance(answers, BlockAnswers):  # read from its columns, no dict built
            probabilities = answers.probabilities
            defaults = answers.defaults
            for probability in probabilities:  # in order, as the answers' loop adds them
                probability_sum += probability
            self.observability.record_bin_probabilities(raw, probabilities)
        else:
            for answer in answers:
                defaults += answer["prediction"]
                probability_sum += answer["probability"]
            self.observability.record_bins(raw, answers)
        self.observability.counters.record(
            len(answers), defaults, latency_ns / 1e6, probability_sum
        )
        self.prediction_log.record(
            PredictionRecord(
                context.started_wall_ns, latency_ns, context.request_id, endpoint, raw, answers
            )
        )
        if self.shadow is not None:  # after the answers exist; they are only read from here on
            shown = answers.answers() if isinstance(answers, BlockAnswers) else answers
            self.shadow.offer(context.request_id, endpoint, raw, shown)

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
