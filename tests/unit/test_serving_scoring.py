"""Pure scoring rules: risk-band cut points, log-odds from both columns, reason wording."""

from __future__ import annotations

import numpy as np
import pytest

from loan_service.predictor import log_odds
from loan_service.schemas import FEATURES, LoanApplication
from loan_service.scoring import MEDIUM_RISK_FROM, REASON_TEXT, loans_to_matrix, risk_band
from tests.serving_fixtures import RISKY_LOAN, TYPICAL_LOAN


@pytest.mark.parametrize(
    ("probability", "band"),
    [
        (0.0, "low"),
        (0.1999, "low"),
        (0.2, "medium"),
        (0.4999, "medium"),
        (0.5, "high"),
        (1.0, "high"),
    ],
)
def test_risk_bands_cut_at_020_and_at_the_threshold(probability: float, band: str) -> None:
    assert MEDIUM_RISK_FROM == 0.20
    assert risk_band(probability, threshold=0.5) == band


def test_high_always_coincides_with_the_decision_even_for_a_low_threshold() -> None:
    assert risk_band(0.15, threshold=0.1) == "high"
    assert risk_band(0.05, threshold=0.1) == "low"


def test_log_odds_keep_precision_in_both_tails() -> None:
    """1 - p would round both extreme rows to log-odds of +-inf or 0 information."""
    probabilities = np.array([[1.0, 2.2358e-30], [8.95e-12, 1.0], [0.5, 0.5], [0.0, 1.0]])
    odds = log_odds(probabilities)
    assert odds[0] == pytest.approx(np.log(2.2358e-30))
    assert odds[1] == pytest.approx(-np.log(8.95e-12))
    assert odds[2] == 0.0
    assert np.isfinite(odds[3])
    assert odds[3] > 80


def test_loans_become_rows_in_feature_order() -> None:
    matrix = loans_to_matrix([LoanApplication(**TYPICAL_LOAN), LoanApplication(**RISKY_LOAN)])
    assert matrix.dtype == np.float64
    assert matrix.shape == (2, 6)
    assert matrix[1].tolist() == [float(RISKY_LOAN[name]) for name in FEATURES]


def test_every_feature_has_a_reason_writer() -> None:
    assert set(REASON_TEXT) == set(FEATURES)


@pytest.mark.parametrize(
    ("feature", "value", "typical", "text"),
    [
        ("credit_lines_outstanding", 5.0, 1.46, "5 credit lines outstanding (typical: 1)"),
        ("credit_lines_outstanding", 1.0, 0.4, "1 credit line outstanding (typical: 0)"),
        ("loan_amt_outstanding", 8250.4, 4152.9, "Loan balance of $8,250 (typical: $4,153)"),
        ("income", 40000.0, 70124.2, "Yearly income of $40,000 (typical: $70,124)"),
        ("years_employed", 1.0, 4.6, "1 year with the current employer (typical: 5)"),
        ("years_employed", 0.0, 4.6, "0 years with the current employer (typical: 5)"),
        ("fico_score", 560.0, 637.6, "FICO score of 560 (typical: 638)"),
    ],
)
def test_reason_texts_are_plain_language_with_the_typical_value(
    feature: str, value: float, typical: float, text: str
) -> None:
    loan = [float(TYPICAL_LOAN[name]) for name in FEATURES]
    assert REASON_TEXT[feature](value, typical, loan) == text


def test_the_debt_reason_states_debt_to_income() -> None:
    loan = [float(RISKY_LOAN[name]) for name in FEATURES]
    text = REASON_TEXT["total_debt_outstanding"](25000.0, 8743.4, loan)
    assert text == "Total debt of $25,000, 62% of yearly income (typical: $8,743)"
