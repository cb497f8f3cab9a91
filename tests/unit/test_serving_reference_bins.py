"""Per-prediction reference bins: the same bins ``loan-default monitor`` uses, counted cheaply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loan_service.book import BookSchema
from loan_service.reference_bins import (
    FEATURE_BINS_FIELD,
    PENDING_ROWS,
    SCORE_BINS_FIELD,
    VECTORIZED_FROM,
    ReferenceBinCounter,
    insights_field,
)
from loan_service.stability import Reference
from tests.support.monitoring_fixtures import PURPOSES, synthetic_book, synthetic_reference


@pytest.fixture(scope="module")
def book() -> BookSchema:
    return synthetic_book()


@pytest.fixture(scope="module")
def reference() -> Reference:
    return synthetic_reference()


def rows(n: int, seed: int, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    """n raw rows (income, purpose code, FICO) including edge values, NaN and unknown codes."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(11, 0.6, n)
    income[: min(n, 3)] = reference.features["income"].cuts[: min(n, 3)]  # exactly on an edge
    if n > 5:
        income[4] = np.nan
    codes = rng.integers(-1, len(PURPOSES) + 1, n).astype(float)  # -1 and 3 are not values
    fico = rng.integers(250, 900, n).astype(float)
    probability = np.round(rng.beta(1, 5, n), 6)
    probability[: min(n, 2)] = reference.score.cuts[: min(n, 2)]
    return np.column_stack([income, codes, fico]), probability


def expected_counts(
    reference: Reference, raw: np.ndarray, probability: np.ndarray
) -> dict[str, dict[str, int]]:
    """Independently: the monitor's own rules (``FeatureReference``), one value at a time."""
    score: dict[str, int] = {}
    features: dict[str, int] = {}
    for b in reference.score.bin_of_numbers(probability).tolist():
        score[str(b)] = score.get(str(b), 0) + 1
    for column, name in enumerate(("income", "purpose", "fico_score")):
        ref = reference.features[name]
        for number in raw[:, column].tolist():
            value: Any = number
            if name == "purpose":
                code = int(number)
                value = PURPOSES[code] if 0 <= code < len(PURPOSES) else None
            key = f"{name}.{ref.bin_of_value(value)}"
            features[key] = features.get(key, 0) + 1
    return {SCORE_BINS_FIELD: score, FEATURE_BINS_FIELD: features}


def answers_of(probability: np.ndarray) -> list[dict[str, Any]]:
    return [{"probability": p} for p in probability.tolist()]


@pytest.mark.parametrize("n", [1, 3, VECTORIZED_FROM, 500])
def test_counts_match_the_monitor_bins_one_by_one_and_in_a_block(
    book: BookSchema, reference: Reference, n: int
) -> None:
    counter = ReferenceBinCounter(reference, book)
    raw, probability = rows(n, seed=n, reference=reference)
    counter.record(raw, answers_of(probability))
    assert counter.take() == expected_counts(reference, raw, probability)


def test_the_vectorized_and_the_row_paths_give_the_same_bins(
    book: BookSchema, reference: Reference
) -> None:
    counter = ReferenceBinCounter(reference, book)
    raw, probability = rows(300, seed=1, reference=reference)
    block = counter.bin_indices(raw, probability)
    pairs = zip(raw.tolist(), probability.tolist(), strict=True)
    one_by_one = [counter.row_bins(row, p) for row, p in pairs]
    assert block.tolist() == one_by_one


def test_take_sums_requests_resets_and_is_none_when_nothing_was_counted(
    book: BookSchema, reference: Reference
) -> None:
    counter = ReferenceBinCounter(reference, book)
    assert counter.take() is None
    raw, probability = rows(40, seed=3, reference=reference)
    for start in range(0, 40, 8):  # five requests of 8 rows: the window's sum
        counter.record(raw[start : start + 8], answers_of(probability[start : start + 8]))
    taken = counter.take()
    assert taken == expected_counts(reference, raw, probability)
    assert sum(taken[SCORE_BINS_FIELD].values()) == 40
    assert counter.take() is None


@pytest.mark.parametrize("requests", [1, VECTORIZED_FROM - 1, VECTORIZED_FROM, PENDING_ROWS + 7])
def test_single_loan_requests_binned_later_count_exactly_as_at_once(
    book: BookSchema, reference: Reference, requests: int
) -> None:
    """One-row requests wait to be binned together (past ``PENDING_ROWS``, or at ``take``):
    the window's counts are the monitor's rules applied one loan at a time."""
    counter = ReferenceBinCounter(reference, book)
    raw, probability = rows(requests, seed=5, reference=reference)
    for index in range(requests):
        counter.record(raw[index : index + 1], answers_of(probability[index : index + 1]))
    assert counter.take() == expected_counts(reference, raw, probability)
    assert counter.take() is None


@pytest.mark.parametrize("size", [1, VECTORIZED_FROM - 1, VECTORIZED_FROM, 1_000])
def test_probabilities_kept_as_a_column_count_as_the_answers_would(
    book: BookSchema, reference: Reference, size: int
) -> None:
    """A batch request's PDs come as a list (its answers kept as columns): the same counts."""
    raw, probability = rows(size, seed=7, reference=reference)
    from_answers, from_column = (
        ReferenceBinCounter(reference, book),
        ReferenceBinCounter(reference, book),
    )
    from_answers.record(raw, answers_of(probability))
    from_column.record_probabilities(raw, probability.tolist())
    assert from_column.take() == from_answers.take() == expected_counts(reference, raw, probability)


def test_the_fields_hold_bin_indices_only_never_an_applicant_value(
    book: BookSchema, reference: Reference
) -> None:
    counter = ReferenceBinCounter(reference, book)
    raw = np.asarray([[54321.5, 2.0, 777.0]])
    counter.record(raw, [{"probability": 0.4321}])
    taken = counter.take()
    assert taken is not None
    text = repr(taken)
    for value in ("54321", "777", "0.4321", "home"):
        assert value not in text
    assert set(taken[FEATURE_BINS_FIELD]) == {
        f"income.{reference.features['income'].bin_of_value(54321.5)}",
        f"purpose.{reference.features['purpose'].bin_of_value('home')}",
        f"fico_score.{reference.features['fico_score'].bin_of_value(777.0)}",
    }
    assert insights_field("fico_score", 4) == "feature_bins.fico_score.4"
    assert insights_field(None, 4) == "score_bins.4"


def test_a_book_feature_missing_from_the_reference_is_refused(reference: Reference) -> None:
    book = BookSchema.from_table(
        {
            "target": {"column": "default", "default_value": 1},
            "features": {"age": {"type": "number", "reason_code": "AG", "reason": "Age"}},
        }
    )
    with pytest.raises(ValueError, match=r"reference\.json has no bins for feature"):
        ReferenceBinCounter(reference, book)
