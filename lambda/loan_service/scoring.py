"""From probabilities to the answer a lender uses: decision, risk band, reasons, expected loss.

Cut points (documented in the README and in ``GET /model``):

* ``high``   PD >= threshold (0.50 in the manifest), so "high" always coincides with prediction 1;
* ``medium`` 0.20 <= PD < threshold: above the loan book's average default rate (about 18.5 %);
* ``low``    PD < 0.20.

Reasons are counterfactual: for each feature, how much the applicant's log-odds of default would
fall if that feature alone moved to its training mean (the others unchanged). For a logistic model
this is exactly the feature's scorecard points, w * (x - mean). Features whose move would lower the
log-odds by at least 0.1 (odds 10 % lower) are reasons, largest first, at most three: they RAISED
this applicant's risk. All of it costs one batched model call (the applicant plus six counterfactual
rows each). Why log-odds and not PD points: this model puts three applicants in four at a PD below
1e-6 and one in eight at exactly 1.0 in float32, where every PD difference is zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Final

import numpy as np

from loan_service.artifacts import FeatureStats
from loan_service.predictor import DefaultRiskModel, explain_block
from loan_service.schemas import FEATURES, LoanApplication, RiskBand

MEDIUM_RISK_FROM: Final = 0.20
REASON_MIN_LOG_ODDS: Final = 0.1
MAX_REASONS: Final = 3
# The original system's ``message``, worded per risk band so it never contradicts ``risk_band``
# (a medium-band applicant is below the threshold, hence approved, but not "low risk").
MESSAGE_BY_BAND: Final[dict[RiskBand, str]] = {
    "high": "High risk of default",
    "medium": "Moderate risk of default",
    "low": "Low risk of default",
}

_feature_values = attrgetter(*FEATURES)


def _money(value: float) -> str:
    return f"${value:,.0f}"


def _count(value: float, singular: str, plural: str) -> str:
    whole = round(value)
    return f"{whole} {singular if whole == 1 else plural}"


def _credit_lines(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"{_count(value, 'credit line', 'credit lines')} outstanding (typical: {round(typical)})"


def _loan_amount(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"Loan balance of {_money(value)} (typical: {_money(typical)})"


def _total_debt(value: float, typical: float, loan: Sequence[float]) -> str:
    income = loan[FEATURES.index("income")]
    return (
        f"Total debt of {_money(value)}, {value / income:.0%} of yearly income "
        f"(typical: {_money(typical)})"
    )


def _income(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"Yearly income of {_money(value)} (typical: {_money(typical)})"


def _years_employed(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"{_count(value, 'year', 'years')} with the current employer (typical: {round(typical)})"


def _fico(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"FICO score of {round(value)} (typical: {round(typical)})"


ReasonWriter = Callable[[float, float, Sequence[float]], str]
PredictionItem = dict[str, Any]  # one answer in the PredictionPublic shape
REASON_TEXT: Final[dict[str, ReasonWriter]] = {
    "credit_lines_outstanding": _credit_lines,
    "loan_amt_outstanding": _loan_amount,
    "total_debt_outstanding": _total_debt,
    "income": _income,
    "years_employed": _years_employed,
    "fico_score": _fico,
}


def risk_band(probability: float, threshold: float) -> RiskBand:
    if probability >= threshold:
        return "high"
    if probability >= MEDIUM_RISK_FROM:
        return "medium"
    return "low"


def loans_to_matrix(loans: Sequence[LoanApplication]) -> np.ndarray:
    """(n, 6) float64 in feature order; attrgetter keeps this a C-speed loop."""
    return np.array([_feature_values(loan) for loan in loans], dtype=np.float64)


class LoanAssessor:
    """Scores validated applications and builds the public answers."""

    def __init__(
        self,
        model: DefaultRiskModel,
        stats: FeatureStats,
        threshold: float,
        recovery_rate: float,
        model_version: str,
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.recovery_rate = recovery_rate
        self.loss_given_default = 1.0 - recovery_rate
        self.model_version = model_version
        self._typical = [float(v) for v in stats.mean]
        self._writers = [REASON_TEXT[name] for name in FEATURES]
        self._loan_amount_column = FEATURES.index("loan_amt_outstanding")
        self._columns = range(len(FEATURES))

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def assess_matrix(self, raw: np.ndarray, request_id: str) -> list[PredictionItem]:
        """One request's rows: one model call (n x 7 rows including the counterfactuals)."""
        return self.answers(raw, self.model.blocks(raw), request_id)

    def assess_together(
        self, raws: Sequence[np.ndarray], request_ids: Sequence[str]
    ) -> list[list[PredictionItem]]:
        """Several requests' rows in ONE model call, each request answered as if it came alone.

        The model scores every row on its own, so sharing a call changes no answer (the property
        tests require a batch to equal the same loans sent one by one, exactly).
        """
        if len(raws) == 1:
            return [self.assess_matrix(raws[0], request_ids[0])]
        blocks = self.model.blocks(np.concatenate(raws))
        answers = []
        start = 0
        for raw, request_id in zip(raws, request_ids, strict=True):
            end = start + raw.shape[0]
            answers.append(self.answers(raw, blocks[start:end], request_id))
            start = end
        return answers

    def answers(
        self, raw: np.ndarray, blocks: Sequence[list[list[float]]], request_id: str
    ) -> list[PredictionItem]:
        """The public answers for ``raw`` from its model outputs (``DefaultRiskModel.blocks``).

        Answers are plain dicts in the ``PredictionPublic`` shape: FastAPI validates and
        serializes them through the response model in pydantic-core, once. Building model
        instances here as well would cost more than the model call.
        """
        answers: list[PredictionItem] = []
        threshold = self.threshold
        loss_given_default = self.loss_given_default
        loan_amount_column = self._loan_amount_column
        model_version = self.model_version
        typical = self._typical
        writers = self._writers
        columns = self._columns
        for values, block in zip(raw.tolist(), blocks, strict=True):
            probability, impacts = explain_block(block)
            reasons = []
            for column in sorted(columns, key=impacts.__getitem__, reverse=True)[:MAX_REASONS]:
                impact = impacts[column]
                if impact < REASON_MIN_LOG_ODDS:
                    break
                reasons.append(
                    {
                        "feature": FEATURES[column],
                        "impact": round(impact, 3),
                        "text": writers[column](values[column], typical[column], values),
                    }
                )
            is_default = probability >= threshold
            band = risk_band(probability, threshold)
            answers.append(
                {
                    "probability": round(probability, 6),
                    "prediction": 1 if is_default else 0,
                    "threshold": threshold,
                    "message": MESSAGE_BY_BAND[band],
                    "risk_band": band,
                    "reasons": reasons,
                    "expected_loss": round(
                        probability * loss_given_default * values[loan_amount_column], 2
                    ),
                    "model_version": model_version,
                    "request_id": request_id,
                }
            )
        return answers

    def assess(self, loans: Sequence[LoanApplication], request_id: str) -> list[PredictionItem]:
        return self.assess_matrix(loans_to_matrix(loans), request_id)
