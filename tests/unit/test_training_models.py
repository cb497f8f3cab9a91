"""Candidates, held-out metrics and the reliability curve, on small in-memory data (no files).

Cross-validation scores and calibration: test_training_cross_fit.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from training.calibration import reliability_curve
from training.candidates import (
    LOGISTIC_REGRESSION,
    RANDOM_FOREST,
    build_logistic_regression,
    build_random_forest,
    candidate_named,
    feature_weights,
    json_safe_params,
)
from training.evaluate import held_out_metrics
from training.normalization import compute_stats, normalize
from training.schema import FEATURES, TARGET
from training.synthesize import generate_loans


@pytest.fixture(scope="module")
def small_book() -> tuple[np.ndarray, np.ndarray]:
    loans = generate_loans(1500, 5)
    features = loans[list(FEATURES)].to_numpy(np.float64)
    return normalize(features, compute_stats(features)), loans[TARGET].to_numpy(np.int64)


def test_logistic_regression_is_elastic_net_saga_balanced_without_deprecated_penalty() -> None:
    model = build_logistic_regression(seed=1)
    params = json_safe_params(model)

    assert params["solver"] == "saga"
    assert params["class_weight"] == "balanced"
    assert 0.0 < params["l1_ratio"] < 1.0
    assert "penalty" not in params


def test_random_forest_has_the_issue_hyper_parameters() -> None:
    params = json_safe_params(build_random_forest(seed=9))
    assert (params["n_estimators"], params["max_depth"], params["min_samples_split"]) == (
        100,
        10,
        5,
    )
    assert params["random_state"] == 9


@pytest.mark.filterwarnings("error")
def test_logistic_regression_fits_without_any_warning(
    small_book: tuple[np.ndarray, np.ndarray],
) -> None:
    features, target = small_book
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_logistic_regression(seed=1).fit(features, target)
    assert model.n_iter_[0] < model.max_iter


def test_feature_weights_are_coefficients_or_importances_one_per_feature(
    small_book: tuple[np.ndarray, np.ndarray],
) -> None:
    features, target = small_book
    linear = build_logistic_regression(seed=1).fit(features, target)
    forest = build_random_forest(seed=1).set_params(n_estimators=10).fit(features, target)
    assert feature_weights(linear).shape == (len(FEATURES),)
    assert feature_weights(forest).sum() == pytest.approx(1.0)


def test_held_out_metrics_orient_the_confusion_matrix_as_tn_fp_fn_tp() -> None:
    target = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    probability = np.array([0.1, 0.2, 0.7, 0.9, 0.8, 0.3, 0.6, 0.4])

    metrics = held_out_metrics(target, probability, threshold=0.5)

    assert metrics["confusion_matrix"] == [[3, 1], [1, 3]]
    assert metrics["precision"] == pytest.approx(0.75)
    assert metrics["recall"] == pytest.approx(0.75)
    assert metrics["f1"] == pytest.approx(0.75)
    assert metrics["brier"] == pytest.approx(np.mean((probability - target) ** 2))
    assert metrics["roc_auc"] == pytest.approx(13 / 16)  # 13 of 16 (default, repaid) pairs ordered


def test_threshold_is_inclusive_a_probability_of_exactly_half_is_a_default() -> None:
    metrics = held_out_metrics(np.array([0, 1]), np.array([0.2, 0.5]))
    assert metrics["confusion_matrix"] == [[1, 0], [0, 1]]


def test_reliability_curve_counts_every_loan_once() -> None:
    target = np.array([0, 0, 1, 1, 1])
    probability = np.array([0.05, 0.08, 0.55, 0.95, 1.0])
    curve = reliability_curve(target, probability, bins=10)
    assert curve.counts.sum() == 5
    assert curve.observed.tolist() == [0.0, 1.0, 1.0]


def test_candidates_are_found_by_manifest_name() -> None:
    assert candidate_named(RANDOM_FOREST).name == RANDOM_FOREST
    assert candidate_named(LOGISTIC_REGRESSION).complexity == 1
    with pytest.raises(KeyError, match="unknown candidate"):
        candidate_named("xgboost")
