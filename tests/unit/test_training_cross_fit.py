"""Cross-fitting: one set of fold models feeds the CV scores and the calibrator.

The structure these tests pin down (training/cross_fit.py, evaluate.py, calibration.py):
* every out-of-fold prediction comes from the fold model that did not see the row;
* the folds are the stratified k-fold that ``cross_validate`` and ``CalibratedClassifierCV`` used;
* the CV scores equal ``cross_validate``'s on those folds;
* the calibrated model equals ``CalibratedClassifierCV(ensemble=False).fit``'s, bit for bit, and
  its calibrator has seen out-of-fold predictions only;
* the thread count and the queue order change nothing.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_validate

from training.calibration import base_estimator, calibrate_on_out_of_fold
from training.candidates import (
    CANDIDATES,
    LOGISTIC_REGRESSION,
    RANDOM_FOREST,
    Candidate,
    candidate_named,
)
from training.cross_fit import (
    FOLDS,
    CrossFit,
    FitDone,
    cross_fit,
    fit_order,
    fold_splitter,
    stratified_folds,
)
from training.data import LoanBook
from training.evaluate import cross_validation_scores
from training.normalization import compute_stats, normalize
from training.pipeline import PreparedData, evaluate_candidate, prepare_data
from training.schema import FEATURES, TARGET
from training.synthesize import generate_loans

SEED = 11


class RowMemorizer(ClassifierMixin, BaseEstimator):
    """Knows the label of every row it was fitted on, and nothing about any other row.

    Rows are recognised by feature 0 (a unique row id). A seen row answers with its label
    (response +1 or -1, probability 1 or 0); an unseen row answers noise in (-1, 1) that does not
    depend on its label. In-sample predictions of such a model look perfect; out-of-fold ones
    are worthless - the calibrator must learn the second.
    """

    def fit(self, features: npt.NDArray[Any], target: npt.NDArray[Any]) -> RowMemorizer:
        self.memory_ = dict(zip(features[:, 0].tolist(), target.tolist(), strict=True))
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = features.shape[1]
        return self

    def seen(self, features: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        return np.array([row_id in self.memory_ for row_id in features[:, 0].tolist()])

    def decision_function(self, features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        ids = features[:, 0]
        remembered = np.array([2.0 * self.memory_.get(row_id, 0.5) - 1.0 for row_id in ids])
        return np.where(self.seen(features), remembered, np.sin(1e4 * ids))

    def predict_proba(self, features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        positive = (self.decision_function(features) + 1.0) / 2.0
        return np.column_stack([1.0 - positive, positive])

    def predict(self, features: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        return (self.decision_function(features) > 0).astype(np.int64)


MEMORIZER = Candidate(
    name="row_memorizer", complexity=9, summary="test double", build=lambda seed: RowMemorizer()
)


def synthetic_book(rows: int, seed: int, *, row_ids: bool = False) -> LoanBook:
    """A synthetic loan book; with ``row_ids`` its first feature is a unique row id instead."""
    loans = generate_loans(rows, seed)
    features = loans[list(FEATURES)].to_numpy(np.float64)
    if row_ids:
        features[:, 0] = np.arange(rows, dtype=np.float64)
    target = loans[TARGET].to_numpy(np.int64)
    return LoanBook(features=features, target=target, sha256="0" * 64, path=Path("loans.csv"))


@pytest.fixture(scope="module")
def training_rows() -> tuple[np.ndarray, np.ndarray]:
    loans = generate_loans(1200, 4)
    features = loans[list(FEATURES)].to_numpy(np.float64)
    return normalize(features, compute_stats(features)), loans[TARGET].to_numpy(np.int64)


@pytest.fixture(scope="module")
def cross_fitted(training_rows: tuple[np.ndarray, np.ndarray]) -> dict[str, CrossFit]:
    features, target = training_rows
    return {fit.candidate.name: fit for fit in cross_fit(CANDIDATES, features, target, SEED)}


def test_each_out_of_fold_prediction_comes_from_the_fold_model_that_never_saw_the_row() -> None:
    book = synthetic_book(600, 2, row_ids=True)
    features, target = book.features, book.target

    (fitted,) = cross_fit([MEMORIZER], features, target, SEED)

    # A seen row answers exactly +1 or -1; an unseen one, noise strictly inside (-1, 1).
    assert np.all(np.abs(fitted.out_of_fold.response) < 1.0)
    assert np.all(np.isin(fitted.final_model.decision_function(features), [-1.0, 1.0]))


def test_the_folds_are_the_stratified_k_fold_cross_validate_and_calibration_used(
    training_rows: tuple[np.ndarray, np.ndarray], cross_fitted: dict[str, CrossFit]
) -> None:
    features, target = training_rows
    reference = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED).split(features, target)

    folds = stratified_folds(target, SEED)

    assert len(folds) == FOLDS == 5
    for (fit_rows, held_out), (expected_fit, expected_held_out) in zip(
        folds, reference, strict=True
    ):
        np.testing.assert_array_equal(fit_rows, expected_fit)
        np.testing.assert_array_equal(held_out, expected_held_out)
    for fitted in cross_fitted.values():
        for fold, (_, held_out) in enumerate(folds):
            np.testing.assert_array_equal(fitted.out_of_fold.rows_of_fold(fold), held_out)


@pytest.mark.parametrize("name", [candidate.name for candidate in CANDIDATES])
def test_cv_scores_from_the_out_of_fold_predictions_equal_cross_validate_on_the_same_folds(
    name: str, training_rows: tuple[np.ndarray, np.ndarray], cross_fitted: dict[str, CrossFit]
) -> None:
    features, target = training_rows
    scored = cross_validate(
        candidate_named(name).build(SEED),
        features,
        target,
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED),
        scoring={"f1": "f1", "roc_auc": "roc_auc", "brier": "neg_brier_score"},
    )

    scores = cross_validation_scores(cross_fitted[name].out_of_fold, target)

    assert scores["folds"] == 5
    for key, values in (
        ("f1", scored["test_f1"]),
        ("roc_auc", scored["test_roc_auc"]),
        ("brier", -scored["test_brier"]),
    ):
        assert scores[f"{key}_mean"] == float(np.mean(values)), key
        assert scores[f"{key}_std"] == float(np.std(values)), key
    assert 0.9 < scores["roc_auc_mean"] <= 1.0
    assert 0.0 <= scores["brier_mean"] < 0.1


@pytest.mark.parametrize("name", [candidate.name for candidate in CANDIDATES])
def test_calibrated_model_is_bit_for_bit_calibrated_classifier_cv_without_ensemble(
    name: str, training_rows: tuple[np.ndarray, np.ndarray], cross_fitted: dict[str, CrossFit]
) -> None:
    """GIVEN the cross-fit of a candidate
    WHEN its calibrated model is assembled from the out-of-fold responses
    THEN it is exactly what CalibratedClassifierCV(ensemble=False).fit makes on the same folds
    (same sigmoid, same base model, same pickled bytes): one base model on all training rows,
    a sigmoid fitted on cross_val_predict's out-of-fold responses."""
    features, target = training_rows
    candidate = candidate_named(name)
    fitted = cross_fitted[name]
    public = CalibratedClassifierCV(
        candidate.build(SEED),
        method="sigmoid",
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED),
        ensemble=False,
    ).fit(features, target)

    assembled = calibrate_on_out_of_fold(
        fitted.final_model,
        fitted.out_of_fold.response,
        target,
        unfitted=candidate.build(SEED),
        splitter=fold_splitter(SEED),
    )

    ours = assembled.calibrated_classifiers_[0].calibrators[0]
    theirs = public.calibrated_classifiers_[0].calibrators[0]
    assert (ours.a_, ours.b_) == (theirs.a_, theirs.b_)
    np.testing.assert_array_equal(assembled.predict_proba(features), public.predict_proba(features))
    assert pickle.dumps(assembled) == pickle.dumps(public)
    assert base_estimator(assembled) is fitted.final_model


def test_calibrator_ignores_in_sample_predictions_a_memorizing_model_is_not_trusted() -> None:
    """GIVEN a model that is perfect on the rows it was fitted on and blind on any other row
    WHEN the pipeline calibrates it
    THEN P(default) of a training defaulter stays near the base rate: the sigmoid was fitted on
    out-of-fold responses (worthless), not on in-sample ones (perfect), which would give ~1."""
    data = prepare_data(synthetic_book(1000, 6, row_ids=True), SEED)
    (fitted,) = cross_fit([MEMORIZER], data.train_features, data.train_target, SEED)

    result = evaluate_candidate(fitted, data, SEED)

    defaulters = data.train_features[data.train_target == 1]
    calibrated = result.calibrated_model.predict_proba(defaulters)[:, 1]
    base_rate = float(data.train_target.mean())
    assert np.all(np.abs(calibrated - base_rate) < 0.05)
    in_sample = calibrate_on_out_of_fold(
        fitted.final_model,
        fitted.final_model.decision_function(data.train_features),
        data.train_target,
        unfitted=RowMemorizer(),
        splitter=fold_splitter(SEED),
    )
    assert np.all(in_sample.predict_proba(defaulters)[:, 1] > 0.9)  # what the test guards against


def test_pipeline_candidate_metrics_use_the_cross_fit_for_cv_and_the_test_rows_for_the_rest() -> (
    None
):
    data: PreparedData = prepare_data(synthetic_book(1500, 8), SEED)
    candidate = candidate_named(LOGISTIC_REGRESSION)
    (fitted,) = cross_fit([candidate], data.train_features, data.train_target, SEED)

    result = evaluate_candidate(fitted, data, SEED)

    assert result.metrics["cv"] == cross_validation_scores(fitted.out_of_fold, data.train_target)
    (tn, fp), (fn, tp) = result.metrics["confusion_matrix"]
    assert tn + fp + fn + tp == data.split.test.size
    np.testing.assert_array_equal(
        result.test_probability, result.calibrated_model.predict_proba(data.test_features)[:, 1]
    )
    assert result.fit_seconds == pytest.approx(fitted.fit_seconds)


def test_one_thread_or_two_give_identical_predictions_and_models(
    training_rows: tuple[np.ndarray, np.ndarray], cross_fitted: dict[str, CrossFit]
) -> None:
    features, target = training_rows
    heard: list[FitDone] = []

    single = cross_fit(CANDIDATES, features, target, SEED, threads=1, on_fit=heard.append)

    assert len(heard) == len(CANDIDATES) * (FOLDS + 1)
    assert {done.task.describe() for done in heard} >= {
        "logistic_regression final model",
        "random_forest fold 5/5",
    }
    for fitted in single:
        parallel = cross_fitted[fitted.candidate.name]
        for field in ("fold", "response", "probability", "label"):
            np.testing.assert_array_equal(
                getattr(fitted.out_of_fold, field), getattr(parallel.out_of_fold, field)
            )
        assert pickle.dumps(fitted.final_model) == pickle.dumps(parallel.final_model)


def test_single_threaded_candidates_are_queued_first_each_with_its_final_fit_first() -> None:
    forest, linear = candidate_named(RANDOM_FOREST), candidate_named(LOGISTIC_REGRESSION)

    queue = [task.describe() for task in fit_order([forest, linear])]

    assert queue == [
        "logistic_regression final model",
        *(f"logistic_regression fold {fold}/5" for fold in range(1, 6)),
        "random_forest final model",
        *(f"random_forest fold {fold}/5" for fold in range(1, 6)),
    ]


def test_a_forest_fitted_with_threads_is_handed_back_to_predict_single_threaded(
    cross_fitted: dict[str, CrossFit],
) -> None:
    assert candidate_named(RANDOM_FOREST).threaded_fit
    assert not candidate_named(LOGISTIC_REGRESSION).threaded_fit
    assert cross_fitted[RANDOM_FOREST].final_model.get_params()["n_jobs"] is None


def test_a_failing_fit_surfaces_its_error_in_the_caller(
    training_rows: tuple[np.ndarray, np.ndarray],
) -> None:
    def broken(seed: int) -> Any:
        raise RuntimeError(f"cannot build (seed {seed})")

    features, target = training_rows
    candidate = Candidate(name="broken", complexity=1, summary="", build=broken)

    with pytest.raises(RuntimeError, match="cannot build"):
        cross_fit([candidate], features, target, SEED)
