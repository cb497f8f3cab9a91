"""Why a loan scored as it did: reason codes, the choice of reasons per row, their wording.

Reasons are counterfactual: for each feature, how much the applicant's log-odds of default would
fall if that feature alone moved to its training mean (the others unchanged); the scoring core
computes those impacts in its one model call (``scoring.LoanScorer``). Features whose move would
lower the log-odds by at least 0.1 (odds 10 % lower) are reasons, largest first, at most three.
Each has a stable adverse-action code for machines (``REASON_CODES``) and a sentence for people
(``REASON_TEXT``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np

from loan_service.schemas import FEATURES

REASON_MIN_LOG_ODDS: Final = 0.1
MAX_REASONS: Final = 3
NO_REASON: Final = -1  # padding in ``ScoredBlock.reasons`` (fewer reasons than slots)
# Stable adverse-action code of each feature, sent instead of words wherever a machine reads them.
REASON_CODES: Final[dict[str, str]] = {
    "credit_lines_outstanding": "CL",
    "loan_amt_outstanding": "LA",
    "total_debt_outstanding": "TD",
    "income": "IN",
    "years_employed": "YE",
    "fico_score": "FI",
}


def _money(value: float) -> str:
    return f"${value:,.0f}"


def _count(value: float, singular: str, plural: str) -> str:
    whole = round(value)
    return f"{whole} {singular if whole == 1 else plural}"


def _credit_lines(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"{_count(value, 'credit line', 'credit lines')} outstanding (typical: {round(typical)})"


def _loan_amount(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"Loan balance of {_money(value)} (typical: {_money(typical)})"


# Past this share of yearly income a percentage says nothing more (and an income of 1e-320, which
# is > 0 and so valid, would make it "inf%"): the text says "over 100 times" instead.
_MAX_DEBT_SHARE: Final = 100.0


def _share_of_income(debt: float, income: float) -> str:
    share = debt / income if income > 0 else math.inf
    if not share <= _MAX_DEBT_SHARE:  # also inf and NaN: no text ever shows them
        return f"over {_MAX_DEBT_SHARE:.0f} times yearly income"
    return f"{share:.0%} of yearly income"


def _total_debt(value: float, typical: float, loan: Sequence[float]) -> str:
    income = loan[FEATURES.index("income")]
    return (
        f"Total debt of {_money(value)}, {_share_of_income(value, income)} "
        f"(typical: {_money(typical)})"
    )


def _income(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"Yearly income of {_money(value)} (typical: {_money(typical)})"


def _years_employed(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"{_count(value, 'year', 'years')} with the current employer (typical: {round(typical)})"


def _fico(value: float, typical: float, _loan: Sequence[float]) -> str:
    return f"FICO score of {round(value)} (typical: {round(typical)})"


ReasonWriter = Callable[[float, float, Sequence[float]], str]
REASON_TEXT: Final[dict[str, ReasonWriter]] = {
    "credit_lines_outstanding": _credit_lines,
    "loan_amt_outstanding": _loan_amount,
    "total_debt_outstanding": _total_debt,
    "income": _income,
    "years_employed": _years_employed,
    "fico_score": _fico,
}


def top_reasons(
    impact: np.ndarray, max_reasons: int = MAX_REASONS
) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) impacts -> the ``max_reasons`` largest at or above ``REASON_MIN_LOG_ODDS`` per row.

    A stable sort on the negated impacts keeps ties in feature order, as Python's
    ``sorted(reverse=True)`` does. Returns (feature indices with -1 padding, impacts with NaN).
    """
    n_rows, n_features = impact.shape
    slots = min(max_reasons, n_features)
    order = np.argsort(-impact, axis=1, kind="stable")[:, :slots]
    chosen = np.take_along_axis(impact, order, axis=1)
    keep = chosen >= REASON_MIN_LOG_ODDS
    reasons = np.full((n_rows, max_reasons), NO_REASON, dtype=np.int16)
    values = np.full((n_rows, max_reasons), np.nan, dtype=np.float64)
    reasons[:, :slots] = np.where(keep, order, NO_REASON)
    values[:, :slots] = np.where(keep, chosen, np.nan)
    return reasons, values
