"""stats.json's statistics, the normalization formula, and the split they are computed on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from training.normalization import (
    STAT_KEYS,
    ConstantFeatureError,
    compute_stats,
    normalize,
    stats_to_json,
)
from training.schema import FEATURES
from training.split import TEST_FRACTION, stratified_split


def sample_features(rows: int = 200, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(
        loc=[1, 4000, 8000, 70000, 4.5, 640], scale=[1, 1400, 6600, 20000, 1.5, 60], size=(rows, 6)
    )


def test_stats_are_keyed_in_feature_order_with_population_std_like_standard_scaler() -> None:
    features = sample_features()
    stats = compute_stats(features)
    scaler = StandardScaler().fit(features)

    assert list(stats) == list(FEATURES)
    assert all(list(entry) == list(STAT_KEYS) for entry in stats.values())
    np.testing.assert_allclose([stats[name]["mean"] for name in FEATURES], scaler.mean_)
    np.testing.assert_allclose([stats[name]["std"] for name in FEATURES], scaler.scale_)
    assert stats["income"]["q50"] == pytest.approx(float(np.median(features[:, 3])))


def test_normalize_is_x_minus_mean_over_std_and_matches_standard_scaler() -> None:
    features = sample_features()
    stats = compute_stats(features)
    np.testing.assert_allclose(
        normalize(features, stats), StandardScaler().fit_transform(features), atol=1e-12
    )


def test_a_feature_constant_on_the_training_rows_cannot_be_normalized() -> None:
    features = sample_features()
    features[:, 4] = 5.0
    with pytest.raises(ConstantFeatureError, match="'years_employed'"):
        compute_stats(features)


def test_stats_json_text_is_stable_and_round_trips() -> None:
    stats = compute_stats(sample_features())
    text = stats_to_json(stats)
    assert text == stats_to_json(compute_stats(sample_features()))
    assert json.loads(text) == stats
    assert text.endswith("\n")


def test_split_is_disjoint_complete_deterministic_and_keeps_the_default_rate() -> None:
    target = np.array([1] * 185 + [0] * 815, dtype=np.int64)
    np.random.default_rng(0).shuffle(target)

    split = stratified_split(target, seed=42)
    again = stratified_split(target, seed=42)

    assert np.array_equal(split.train, again.train)
    assert np.intersect1d(split.train, split.test).size == 0
    assert np.array_equal(np.sort(np.concatenate([split.train, split.test])), np.arange(1000))
    assert split.test.size == int(1000 * TEST_FRACTION)
    assert target[split.train].mean() == pytest.approx(0.185, abs=0.002)
    assert target[split.test].mean() == pytest.approx(0.185, abs=0.002)


def test_another_seed_gives_another_split() -> None:
    target = np.array([1, 0, 0, 0, 0] * 200, dtype=np.int64)
    assert not np.array_equal(
        stratified_split(target, seed=1).test, stratified_split(target, seed=2).test
    )
