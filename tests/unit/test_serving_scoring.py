"""Pure scoring rules: risk-band cut points, log-odds from both columns, reason wording."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loan_service.predictor import explain_block
from loan_service.reasons import REASON_TEXT
from loan_service.schemas import FEATURES, LoanApplication
from loan_service.scoring import (
    MEDIUM_RISK_FROM,
    MESSAGE_BY_BAND,
    loans_to_matrix,
    risk_band,
)
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
    """1 - p would round both extreme applicants to a PD of exactly 0 or 1 and lose the ranking;
    taking each class's own probability keeps it."""
    safe = [[1.0, 2.2358e-30], [1.0, 2.2358e-28], [1.0, 2.2358e-31]]
    probability, impacts = explain_block(safe)
    assert probability == 2.2358e-30
    assert impacts == pytest.approx([-math.log(100), math.log(10)])
    risky = [[8.95e-12, 1.0], [8.95e-10, 1.0], [8.95e-13, 1.0]]
    probability, impacts = explain_block(risky)
    assert probability == 1.0
    assert impacts == pytest.approx([math.log(100), -math.log(10)])


def test_log_odds_of_an_exact_zero_are_clipped_not_infinite() -> None:
    probability, impacts = explain_block([[0.0, 1.0], [1e-20, 1.0]])
    assert probability == 1.0
    assert math.isfinite(impacts[0])
    assert impacts[0] > 0


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5])
def test_a_probability_outside_zero_to_one_is_an_error(bad: float) -> None:
    with pytest.raises(FloatingPointError):
        explain_block([[0.5, bad], [0.5, 0.5]])


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


def test_each_risk_band_has_its_own_message_so_message_never_contradicts_the_band() -> None:
    assert set(MESSAGE_BY_BAND) == {"low", "medium", "high"}
    assert len(set(MESSAGE_BY_BAND.values())) == 3
    assert MESSAGE_BY_BAND["high"] == "High risk of default"  # the original system's wording
    assert MESSAGE_BY_BAND["low"] == "Low risk of default"
