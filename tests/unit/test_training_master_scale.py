"""The master scale: about ten grades, strictly increasing PD bounds, every grade populated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from loan_service.stability import MasterScale
from training.master_scale import GRADES, candidate_bounds, derive_master_scale


def _book(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    log_odds = rng.normal(-3.0, 2.0, rows)
    probability = 1.0 / (1.0 + np.exp(-log_odds))
    return probability, (rng.random(rows) < probability).astype(np.int64)


def test_a_typical_book_gets_ten_populated_monotone_grades() -> None:
    probability, target = _book(np.random.default_rng(1), 20_000)
    block = derive_master_scale(probability, target)
    bounds = block["upper_bounds"]
    assert len(block["scale"]) == GRADES
    assert all(low < high for low, high in itertools.pairwise(bounds))
    scale = block["scale"]
    assert [grade["grade"] for grade in scale] == list(range(1, GRADES + 1))
    assert all(grade["train_loans"] > 0 for grade in scale)
    assert sum(grade["train_loans"] for grade in scale) == probability.size
    means = [grade["mean_pd"] for grade in scale]
    assert means == sorted(means)
    assert all(g["pd_from"] <= g["mean_pd"] < g["pd_to"] for g in scale)
    # Each grade's training loans are exactly those the serving lookup puts there.
    lookup = MasterScale.from_manifest(block).grade(probability)
    assert np.bincount(lookup)[1:].tolist() == [g["train_loans"] for g in scale]


def test_bounds_read_like_a_master_scale() -> None:
    probability, _ = _book(np.random.default_rng(2), 5_000)
    for bound in candidate_bounds(probability):
        shown = bound if bound <= 0.5 else 1.0 - bound
        assert float(f"{shown:.2g}") == pytest.approx(shown, rel=1e-12)


def test_a_saturated_book_merges_grades_until_each_is_populated() -> None:
    rng = np.random.default_rng(3)
    # Three loans in four at a PD below 1e-6, one in eight at 1.0, a thin middle (like this model).
    probability = np.concatenate(
        [rng.uniform(1e-12, 1e-7, 7_500), rng.uniform(0.001, 0.9, 40), np.ones(1_250)]
    )
    target = (probability > 0.5).astype(np.int64)
    block = derive_master_scale(probability, target)
    scale = block["scale"]
    minimum = max(10, int(np.ceil(0.002 * probability.size)))
    assert 2 <= len(scale) < GRADES
    assert all(grade["train_loans"] >= minimum for grade in scale)
    assert scale[0]["pd_from"] == 0.0
    assert scale[-1]["pd_to"] == 1.0
    assert scale[-1]["train_default_rate"] == 1.0


def test_the_serving_lookup_puts_a_bound_in_the_riskier_grade() -> None:
    scale = MasterScale.from_manifest({"upper_bounds": [0.01, 0.1], "scale": [{}, {}, {}]})
    grades = scale.grade(np.array([0.0, 0.0099, 0.01, 0.05, 0.1, 1.0]))
    assert grades.tolist() == [1, 1, 2, 2, 3, 3]
