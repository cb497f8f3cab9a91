"""Probability calibration, fitted on out-of-fold predictions of the training rows only.

Balanced class weights buy recall on the 18 % default class but inflate P(default); expected-loss
figures multiply that probability by money, so it has to mean what it says. Platt scaling
(``sigmoid``) is monotone - it keeps the ranking, hence ROC AUC - and it is smooth, so the ONNX
export reproduces it to ~1e-7 (isotonic steps would amplify float rounding at every step).

The calibrated model is exactly what ``CalibratedClassifierCV(estimator, method="sigmoid",
cv=<the cross-fit's folds>, ensemble=False).fit(train_features, train_target)`` produces: a
sigmoid fitted on the out-of-fold responses of a stratified k-fold over the training rows, on top
of ONE base model fitted on all training rows - small and fast to serve. It is built here from
the cross-fit (:mod:`training.cross_fit`) instead of by ``fit``, because ``fit`` would refit the
k fold models the cross-validation scores already needed. scikit-learn has no public way to give
``CalibratedClassifierCV`` out-of-fold predictions (``FrozenEstimator`` calibrates on the
predictions of the frozen model, i.e. in-sample), so :func:`calibrate_on_out_of_fold` assembles
the fitted object from the two classes ``fit`` itself uses. The result is a genuine
``CalibratedClassifierCV``: skl2onnx converts it, skops (MLflow) loads it, and a unit test pins it
to ``fit``'s own output, bit for bit, so a scikit-learn upgrade that changed either class fails
there rather than in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.cross_fit import FOLDS

CALIBRATION_METHOD = "sigmoid"


def calibrate_on_out_of_fold(
    final_model: Any,
    out_of_fold_response: npt.NDArray[np.float64],
    train_target: npt.NDArray[np.int64],
    *,
    unfitted: Any,
    splitter: Any,
) -> Any:
    """The fitted ``CalibratedClassifierCV(ensemble=False)`` around ``final_model``.

    ``out_of_fold_response`` holds, for every training row, the response (decision function, or
    P(class 1)) of the fold model that did not see the row; the Platt sigmoid is fitted on it and
    on nothing else. ``unfitted`` and ``splitter`` are recorded as the estimator's parameters
    (``estimator``, ``cv``), as ``fit`` would have received them.
    """
    from sklearn.calibration import (
        CalibratedClassifierCV,
        _CalibratedClassifier,
        _SigmoidCalibration,
    )
    from sklearn.preprocessing import LabelEncoder

    classes = LabelEncoder().fit(train_target).classes_
    if classes.shape[0] != 2 or list(final_model.classes_) != list(classes):
        raise ValueError(f"a binary classifier is expected, got classes {classes.tolist()}")
    if out_of_fold_response.shape != train_target.shape:
        raise ValueError("one out-of-fold response per training row is expected")
    sigmoid = _SigmoidCalibration().fit(
        out_of_fold_response, (train_target == classes[1]).astype(np.int64)
    )
    calibrated = CalibratedClassifierCV(
        unfitted, method=CALIBRATION_METHOD, cv=splitter, ensemble=False
    )
    # The attributes fit sets, in fit's order (so even the pickled bytes come out the same).
    calibrated.calibrated_classifiers_ = [
        _CalibratedClassifier(final_model, [sigmoid], classes=classes, method=CALIBRATION_METHOD)
    ]
    calibrated.classes_ = classes
    calibrated.n_features_in_ = final_model.n_features_in_
    return calibrated


def base_estimator(calibrated: Any) -> Any:
    """The base model fitted on all training rows inside the calibrated wrapper."""
    return calibrated.calibrated_classifiers_[0].estimator


def calibration_summary(brier_uncalibrated: float, brier_calibrated: float) -> dict[str, Any]:
    """How calibration was done and what it bought (for the manifest and the report)."""
    return {
        "method": CALIBRATION_METHOD,
        "cv_folds": FOLDS,
        "ensemble": False,
        "fitted_on": "out-of-fold predictions on the training split",
        "brier_uncalibrated": brier_uncalibrated,
        "brier_calibrated": brier_calibrated,
    }


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per non-empty probability bin: mean predicted P(default), observed rate, loan count."""

    predicted: npt.NDArray[np.float64]
    observed: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]


def reliability_curve(
    target: npt.NDArray[np.int64], probability: npt.NDArray[np.float64], bins: int = 10
) -> ReliabilityCurve:
    """The reliability diagram's points, with counts: a near-separable loan book leaves the
    middle bins almost empty, and a reader must see how little evidence such a point carries."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    predicted = np.bincount(which, weights=probability, minlength=bins)[filled] / counts[filled]
    observed = np.bincount(which, weights=target, minlength=bins)[filled] / counts[filled]
    return ReliabilityCurve(
        predicted=predicted.astype(np.float64),
        observed=observed.astype(np.float64),
        counts=counts[filled].astype(np.int64),
    )
