"""THE scoring core: a block of loans in, every answer field out, as arrays (no per-row Python).

``LoanScorer.score(raw)`` takes an (n, k) float64 matrix of raw features in the model's feature
order and returns a ``ScoredBlock`` of numpy arrays: probability, log-odds, decision, risk band,
expected loss and reason codes. The HTTP API (``LoanAssessor``, which words the answers for people)
and the batch scorer (``loan_default/score.py``, locally and on Spark) both call it, so a loan gets
the same answer whichever way it is scored.

Cut points (documented in ``docs/`` and in ``GET /model``):

* ``high``   PD >= threshold (0.50 in the manifest), so "high" always coincides with prediction 1;
* ``medium`` 0.20 <= PD < threshold: above the loan book's average default rate (about 18.5 %);
* ``low``    PD < 0.20.

Reasons are counterfactual: for each feature, how much the applicant's log-odds of default would
fall if that feature alone moved to its training mean (the others unchanged). For a logistic model
this is exactly the feature's scorecard points, w * (x - mean). Features whose move would lower the
log-odds by at least 0.1 (odds 10 % lower) are reasons, largest first, at most three: they RAISED
this applicant's risk. All of it costs one batched model call (the applicant plus k counterfactual
rows each). Why log-odds and not PD points: this model puts three applicants in four at a PD below
1e-6 and one in eight at exactly 1.0 in float32, where every PD difference is zero. Reasons are
feature indices in the arrays and stable codes in files; their codes, their choice per row and
their wording for people (done only where a person reads it, the API) live in ``reasons``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final, Literal

import numpy as np

from loan_service.artifacts import FeatureStats
from loan_service.predictor import DefaultRiskModel, explain
from loan_service.reasons import MAX_REASONS, NO_REASON, REASON_CODES, REASON_TEXT, top_reasons
from loan_service.schemas import FEATURES, LoanApplication, PredictionAnswer, RiskBand
from loan_service.stability import MasterScale

MEDIUM_RISK_FROM: Final = 0.20
# ``ScoredBlock.band`` index -> name, ordered by risk: ``band >= 1`` is "medium or worse".
RISK_BANDS: Final[tuple[RiskBand, ...]] = ("low", "medium", "high")
EXPOSURE_FEATURE: Final = "loan_amt_outstanding"  # exposure at default for expected loss
# The original system's ``message``, worded per risk band so it never contradicts ``risk_band``
# (a medium-band applicant is below the threshold, hence approved, but not "low risk").
MESSAGE_BY_BAND: Final[dict[RiskBand, str]] = {
    "high": "High risk of default",
    "medium": "Moderate risk of default",
    "low": "Low risk of default",
}

_feature_values = attrgetter(*FEATURES)


PredictionItem = PredictionAnswer  # one answer in the PredictionPublic shape


def risk_band(probability: float, threshold: float) -> RiskBand:
    """The band of one PD (``band_indices`` is the same rule over an array)."""
    return RISK_BANDS[int(band_indices(np.asarray([probability]), threshold)[0])]


def band_indices(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Index into ``RISK_BANDS`` of each PD: high from the threshold, else medium from 0.20."""
    return np.where(probability >= threshold, 2, probability >= MEDIUM_RISK_FROM).astype(np.int8)


def loans_to_matrix(loans: Sequence[LoanApplication]) -> np.ndarray:
    """(n, 6) float64 in feature order; attrgetter keeps this a C-speed loop."""
    return np.array([_feature_values(loan) for loan in loans], dtype=np.float64)


Explain = Literal["all", "declined", "none"]


@dataclass(frozen=True, slots=True)
class ScoredBlock:
    """Every answer field for n loans, as arrays aligned with the input rows.

    ``reasons[i]`` holds feature indices (into the model's feature order), largest impact first,
    ``NO_REASON`` (-1) in unused slots; ``reason_impact`` the matching log-odds (NaN where unused).
    ``expected_loss`` is None for a book without an exposure feature.
    """

    probability: np.ndarray  # (n,) float64, PD in [0, 1]
    log_odds: np.ndarray  # (n,) float64, from both class probabilities (finite when saturated)
    prediction: np.ndarray  # (n,) int8, 1 when probability >= threshold
    band: np.ndarray  # (n,) int8, index into RISK_BANDS
    expected_loss: np.ndarray | None  # (n,) float64, PD x (1 - recovery rate) x exposure
    reasons: np.ndarray  # (n, MAX_REASONS) int16
    reason_impact: np.ndarray  # (n, MAX_REASONS) float64
    grade: np.ndarray | None = None  # (n,) int64 master-scale grade, 1 = lowest risk

    def __len__(self) -> int:
        return int(self.probability.shape[0])

    def slice(self, start: int, end: int) -> ScoredBlock:
        """Rows ``start:end`` (views, no copy): one request's part of a shared model call."""
        return ScoredBlock(
            probability=self.probability[start:end],
            log_odds=self.log_odds[start:end],
            prediction=self.prediction[start:end],
            band=self.band[start:end],
            expected_loss=None if self.expected_loss is None else self.expected_loss[start:end],
            reasons=self.reasons[start:end],
            reason_impact=self.reason_impact[start:end],
            grade=None if self.grade is None else self.grade[start:end],
        )


class LoanScorer:
    """The vectorized core: raw feature rows -> ``ScoredBlock``. One per model, thread-compatible.

    ``explain`` chooses which rows get reasons: ``"all"`` (one model call of n*(k+1) rows, the
    API's rule today), ``"declined"`` (one call for the PDs, one for the declined rows'
    counterfactuals) or ``"none"``.
    """

    def __init__(
        self,
        model: DefaultRiskModel,
        threshold: float,
        recovery_rate: float,
        features: Sequence[str] = FEATURES,
        exposure_feature: str | None = EXPOSURE_FEATURE,
        *,
        master_scale: MasterScale | None = None,
    ) -> None:
        self.model = model
        self.master_scale = master_scale
        self.threshold = threshold
        self.recovery_rate = recovery_rate
        self.loss_given_default = 1.0 - recovery_rate
        self.features = tuple(features)
        self.reason_codes = tuple(REASON_CODES[name] for name in self.features)
        self._exposure_column = (
            self.features.index(exposure_feature) if exposure_feature in self.features else None
        )

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def score(self, raw: np.ndarray, explain_rows: Explain = "all") -> ScoredBlock:
        """Every answer field for ``raw`` (n, k) float64, validated rows in feature order."""
        n_rows = raw.shape[0]
        reasons = np.full((n_rows, MAX_REASONS), NO_REASON, dtype=np.int16)
        reason_impact = np.full((n_rows, MAX_REASONS), np.nan, dtype=np.float64)
        if explain_rows == "all":
            probability, odds, impact = explain(self.model.blocks(raw))
            reasons, reason_impact = top_reasons(impact)
        else:
            pairs = self.model.pairs(raw)[:, None, :]
            probability, odds, _ = explain(pairs)
            if explain_rows == "declined":
                declined = np.flatnonzero(probability >= self.threshold)
                if declined.size:
                    _, _, impact = explain(self.model.blocks(raw[declined]))
                    reasons[declined], reason_impact[declined] = top_reasons(impact)
        expected_loss = None
        if self._exposure_column is not None:
            expected_loss = probability * self.loss_given_default * raw[:, self._exposure_column]
        return ScoredBlock(
            probability=probability,
            log_odds=odds,
            prediction=(probability >= self.threshold).astype(np.int8),
            band=band_indices(probability, self.threshold),
            expected_loss=expected_loss,
            reasons=reasons,
            reason_impact=reason_impact,
            grade=None if self.master_scale is None else self.master_scale.grade(probability),
        )

    def reason_code_columns(self, scored: ScoredBlock) -> list[np.ndarray]:
        """One object array of codes per reason slot (None where unused): a lookup, no loop."""
        lookup = np.array([*self.reason_codes, None], dtype=object)  # index -1 -> None
        return [lookup[scored.reasons[:, slot]] for slot in range(scored.reasons.shape[1])]


class LoanAssessor:
    """The API's answers: the core's arrays, worded for people (message, reason text)."""

    def __init__(
        self,
        model: DefaultRiskModel,
        stats: FeatureStats,
        threshold: float,
        recovery_rate: float,
        model_version: str,
        *,
        master_scale: MasterScale | None = None,
    ) -> None:
        self.scorer = LoanScorer(model, threshold, recovery_rate, master_scale=master_scale)
        self.model = model
        self.threshold = threshold
        self.recovery_rate = recovery_rate
        self.model_version = model_version
        self._typical = [float(v) for v in stats.mean]
        self._writers = [REASON_TEXT[name] for name in FEATURES]

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def assess_matrix(self, raw: np.ndarray, request_id: str) -> list[PredictionItem]:
        """One request's rows: one model call (n x 7 rows including the counterfactuals)."""
        return self.answers(raw, self.scorer.score(raw), request_id)

    def assess_together(
        self, raws: Sequence[np.ndarray], request_ids: Sequence[str]
    ) -> list[list[PredictionItem]]:
        """Several requests' rows in ONE model call, each request answered as if it came alone.

        The model scores every row on its own, so sharing a call changes no answer (the property
        tests require a batch to equal the same loans sent one by one, exactly).
        """
        if len(raws) == 1:
            return [self.assess_matrix(raws[0], request_ids[0])]
        scored = self.scorer.score(np.concatenate(raws))
        answers = []
        start = 0
        for raw, request_id in zip(raws, request_ids, strict=True):
            end = start + raw.shape[0]
            answers.append(self.answers(raw, scored.slice(start, end), request_id))
            start = end
        return answers

    def answers(
        self, raw: np.ndarray, scored: ScoredBlock, request_id: str
    ) -> list[PredictionItem]:
        """The public answers for ``raw`` from its ``ScoredBlock``.

        Answers are ``PredictionAnswer`` dicts (the ``PredictionPublic`` shape), serialized by the
        routes in pydantic-core, once. Building model instances here would cost more than the
        model call. The only per-row work left is what JSON needs anyway: one dict per answer,
        and the reason wording.
        """
        threshold = self.threshold
        model_version = self.model_version
        typical = self._typical
        writers = self._writers
        expected_loss = scored.expected_loss
        assert expected_loss is not None  # the default book always has its exposure feature
        answers: list[PredictionItem] = []
        grades = [None] * len(scored) if scored.grade is None else scored.grade.tolist()
        for values, probability, prediction, band, loss, reasons, impacts, grade in zip(
            raw.tolist(),
            scored.probability.tolist(),
            scored.prediction.tolist(),
            scored.band.tolist(),
            expected_loss.tolist(),
            scored.reasons.tolist(),
            scored.reason_impact.tolist(),
            grades,
            strict=True,
        ):
            band_name = RISK_BANDS[band]
            answers.append(
                {
                    "probability": round(probability, 6),
                    "prediction": prediction,
                    "threshold": threshold,
                    "message": MESSAGE_BY_BAND[band_name],
                    "risk_band": band_name,
                    "grade": grade,
                    "reasons": [
                        {
                            "feature": FEATURES[column],
                            "impact": round(impact, 3),
                            "text": writers[column](values[column], typical[column], values),
                        }
                        for column, impact in zip(reasons, impacts, strict=True)
                        if column != NO_REASON
                    ],
                    "expected_loss": round(loss, 2),
                    "model_version": model_version,
                    "request_id": request_id,
                }
            )
        return answers

    def assess(self, loans: Sequence[LoanApplication], request_id: str) -> list[PredictionItem]:
        return self.assess_matrix(loans_to_matrix(loans), request_id)
