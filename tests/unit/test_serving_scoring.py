"""Pure scoring rules: risk-band cut points, log-odds, reasons (codes, wording, who gets them)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loan_service.predictor import explain_block
from loan_service.reasons import (
    MAX_REASONS,
    NO_REASON,
    ReasonCatalogue,
    row_reasons,
    top_reasons,
)
from loan_service.scoring import (
    MEDIUM_RISK_FROM,
    MESSAGE_BY_BAND,
    loans_to_matrix,
    risk_band,
    rounded,
)
from tests.support.default_book import FEATURES, LoanApplication
from tests.support.loans import RISKY_LOAN, TYPICAL_LOAN
from training.schema import DEFAULT_BOOK


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


def test_the_models_own_log_odds_win_over_saturated_probabilities() -> None:
    """Both probabilities saturate (P(default) exactly 1.0, P(no default) exactly 0.0): only the
    model's float64 log-odds column still tells the counterfactuals apart."""
    saturated = [[0.0, 1.0, 41.5], [0.0, 1.0, 30.0], [0.0, 1.0, 39.0]]
    probability, impacts = explain_block(saturated)
    assert probability == 1.0
    assert impacts == pytest.approx([11.5, 2.5])


def test_a_log_odds_that_is_not_finite_is_an_error() -> None:
    with pytest.raises(FloatingPointError):
        explain_block([[0.0, 1.0, float("inf")], [0.0, 1.0, 3.0]])


def test_every_feature_has_a_code_and_adverse_action_wording_from_the_schema() -> None:
    catalogue = ReasonCatalogue.of(DEFAULT_BOOK)
    assert catalogue.features == FEATURES
    assert len(set(catalogue.codes)) == len(FEATURES)
    assert catalogue.text_of_code("FI") == "Credit score"
    columns = catalogue.code_columns(np.array([[5, 0, NO_REASON, NO_REASON]], dtype=np.int16))
    assert [column[0] for column in columns] == ["FI", "CL", None, None]


def test_top_reasons_keep_four_at_most_largest_first_and_only_above_the_cut() -> None:
    impact = np.array([[0.5, 3.0, 0.05, 2.0, 1.0, 0.2], [-1.0, 0.0, 0.09, -2.0, 0.0, 0.0]])
    reasons, values = top_reasons(impact)
    assert MAX_REASONS == 4
    assert reasons.tolist() == [[1, 3, 4, 0], [NO_REASON] * 4]
    assert values[0].tolist() == [3.0, 2.0, 1.0, 0.5]
    assert np.isnan(values[1]).all()


def test_one_rows_reasons_in_floats_are_the_array_rule_exactly() -> None:
    """``row_reasons`` (the API's single applicant) against ``top_reasons`` on rows built to
    tie, to sit on the 0.1 cut, to be signed zeros, and on random rows of 1 to 9 features."""
    generator = np.random.default_rng(11)
    rows = [
        [0.5, 3.0, 0.05, 2.0, 1.0, 0.2],
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
        [0.1, 0.1, 0.09999999999999999, 0.2, 0.1, -0.0],
        [-0.0, 0.0, -1.0, 0.0, -0.0, 0.1],
        [2.0, 2.0, 1.0, 2.0, 1.0, 2.0],
    ]
    for _ in range(3000):
        k = int(generator.integers(1, 10))
        values = np.round(generator.normal(0.1, 0.5, k), int(generator.integers(1, 4)))
        rows.append(values.tolist())
    for row in rows:
        reasons, values = top_reasons(np.array([row]))
        used = [i for i, column in enumerate(reasons[0].tolist()) if column != NO_REASON]
        columns, impacts = row_reasons(row)
        assert columns == reasons[0, used].tolist()
        assert impacts == values[0, used].tolist()
        assert used == list(range(len(used)))  # a prefix of the slots


def test_each_risk_band_has_its_own_message_so_message_never_contradicts_the_band() -> None:
    assert set(MESSAGE_BY_BAND) == {"low", "medium", "high"}
    assert len(set(MESSAGE_BY_BAND.values())) == 3
    assert MESSAGE_BY_BAND["high"] == "High risk of default"  # the original system's wording
    assert MESSAGE_BY_BAND["low"] == "Low risk of default"


@pytest.mark.parametrize("digits", [2, 3, 6])
def test_array_rounding_gives_exactly_pythons_round(digits: int) -> None:
    generator = np.random.default_rng(7)
    scale = 10.0**digits
    halves = (np.arange(-2000, 2000) + 0.5) / scale  # the nearest doubles to exact ties
    values = np.concatenate(
        [
            generator.random(20_000),  # PDs
            generator.random(20_000) * 10.0 ** generator.integers(-12, 13, 20_000),
            -generator.random(2_000),
            halves,
            np.nextafter(halves, np.inf),
            np.nextafter(halves, -np.inf),
            [0.0, -0.0, 1.0, 5e-324, 1e300, -1e300, np.inf, -np.inf, np.nan],
        ]
    )
    expected = [round(value, digits) for value in values.tolist()]
    got = rounded(values, digits)
    assert [v.hex() for v in got] == [v.hex() for v in expected]
