"""PSI / CSI against an independent computation on synthetic data with known shifts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loan_service.stability import (
    SHARE_FLOOR,
    FeatureReference,
    Reference,
    ReferenceError,
    psi,
    verdict,
)
from training.reference import build_reference, category_reference, numeric_reference


def independent_psi(reference: np.ndarray, window: np.ndarray) -> float:
    """PSI the textbook way: decile edges of the reference, a loop over bins, pure Python."""
    edges = sorted(set(np.quantile(reference, [i / 10 for i in range(1, 10)]).tolist()))
    edges = [edge for edge in edges if edge > reference.min()]

    def shares(values: np.ndarray) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for value in values.tolist():
            counts[sum(1 for edge in edges if value >= edge)] += 1
        return [count / len(values) for count in counts]

    total = 0.0
    for expected, actual in zip(shares(reference), shares(window), strict=True):
        r, o = max(expected, SHARE_FLOOR), max(actual, SHARE_FLOOR)
        total += (o - r) * math.log(o / r)
    return total


def _reference(values: np.ndarray) -> FeatureReference:
    return FeatureReference.from_json("x", numeric_reference(values))


def _csi(reference: FeatureReference, window: np.ndarray) -> float:
    counts = np.bincount(reference.bin_of_numbers(window), minlength=reference.bins)
    return psi(reference.shares, counts)


def test_an_unshifted_feature_is_stable_and_a_shifted_one_significant() -> None:
    rng = np.random.default_rng(11)
    training = rng.normal(650.0, 50.0, 20_000)
    reference = _reference(training)
    same = rng.normal(650.0, 50.0, 5_000)
    shifted = rng.normal(690.0, 50.0, 5_000)  # +0.8 standard deviations
    assert _csi(reference, same) == pytest.approx(independent_psi(training, same), rel=1e-9)
    assert _csi(reference, shifted) == pytest.approx(independent_psi(training, shifted), rel=1e-9)
    assert _csi(reference, same) < 0.10
    assert verdict(_csi(reference, same)) == "stable"
    assert _csi(reference, shifted) >= 0.25
    assert verdict(_csi(reference, shifted)) == "significant"


def test_a_mild_shift_is_investigated() -> None:
    rng = np.random.default_rng(12)
    training = rng.normal(0.0, 1.0, 50_000)
    reference = _reference(training)
    index = _csi(reference, rng.normal(0.4, 1.0, 20_000))
    assert index == pytest.approx(independent_psi(training, rng.normal(0.4, 1.0, 20_000)), abs=0.02)
    assert verdict(index) == "investigate"


def test_verdict_boundaries() -> None:
    assert [verdict(v) for v in (0.0, 0.0999, 0.10, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "investigate",
        "investigate",
        "significant",
        "significant",
    ]


def test_missing_values_have_their_own_bin_and_raise_the_index() -> None:
    rng = np.random.default_rng(13)
    reference = _reference(rng.normal(size=10_000))
    window = rng.normal(size=1_000)
    window[:200] = np.nan
    bins = reference.bin_of_numbers(window)
    assert (bins == reference.extra_bin).sum() == 200
    assert _csi(reference, window) >= 0.25


def test_one_value_at_a_time_agrees_with_the_vectorized_rule() -> None:
    rng = np.random.default_rng(14)
    reference = _reference(rng.integers(0, 6, 5_000).astype(float))
    values = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, -1.0, np.nan])
    assert [reference.bin_of_value(v) for v in values.tolist()] == (
        reference.bin_of_numbers(values).tolist()
    )


def test_categories_get_a_bin_each_plus_one_for_unseen() -> None:
    entry = category_reference(["car", "home", "car", "education"] * 25)
    reference = FeatureReference.from_json("purpose", entry)
    assert reference.values == ("car", "education", "home")
    assert reference.shares.tolist() == [0.5, 0.25, 0.25, 0.0]
    assert [reference.bin_of_value(v) for v in ("home", "boat", None)] == [2, 3, 3]


def test_the_reference_file_round_trips_and_rejects_a_broken_one() -> None:
    rng = np.random.default_rng(15)
    raw = build_reference(
        model_version="v1",
        probability=rng.random(1_000),
        grade_shares=[0.5, 0.5],
        features={"x": numeric_reference(rng.normal(size=1_000))},
    )
    reference = Reference.from_json(raw)
    assert reference.model_version == "v1"
    assert reference.to_json() == raw
    raw["features"]["x"]["shares"] = [1.0]
    with pytest.raises(ReferenceError, match="x needs min, max"):
        Reference.from_json(raw)
