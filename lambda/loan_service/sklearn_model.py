"""The scikit-learn side of the model input: one-hot inside the fitted model, and its log-odds.

Imported by training and by the ``MODEL_RUNTIME=sklearn`` fallback only (it imports
scikit-learn); the ONNX serving path never loads it.

* :func:`with_one_hot` wraps a fitted calibrated model for a book with categories in a
  ``Pipeline`` whose first step one-hot encodes the category indices of the model input. Only
  scikit-learn's own classes are used, so ``best_model.pkl`` stays loadable by joblib and by
  skops' list of trusted types. The ONNX export (``training.onnx_export``) reproduces the same
  column order: one-hot blocks of the categories in schema order, then the numbers in schema
  order (``ColumnTransformer``'s order with ``remainder="passthrough"``).
* :func:`calibrated_log_odds` is the calibrated log-odds of default, ``-(a * f(x) + b)`` of the
  Platt sigmoid, computed in float64 before the sigmoid: it never saturates where the
  probability does (a float64 probability is exactly 1.0 beyond about 37 log-odds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loan_service.book import BookSchema


def one_hot_step(book: BookSchema) -> Any:
    """The unfitted-but-ready encoder: model input -> design matrix the estimators see."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    positions = [index for index, feature in enumerate(book.features) if feature.is_category]
    categories = [
        np.arange(len(book.features[index].values or ()), dtype=np.float64) for index in positions
    ]
    encoder = OneHotEncoder(
        categories=categories, handle_unknown="ignore", sparse_output=False, dtype=np.float64
    )
    return ColumnTransformer(
        [("categories", encoder, positions)], remainder="passthrough", sparse_threshold=0.0
    )


def design_matrix(book: BookSchema, model_input: np.ndarray) -> tuple[Any, np.ndarray]:
    """The fitted encoder and ``model_input`` encoded by it (identity for a book without
    categories: the encoder is None and the rows are returned as they are)."""
    if not book.categories:
        return None, model_input
    encoder = one_hot_step(book)
    return encoder, np.asarray(encoder.fit_transform(model_input), dtype=np.float64)


def design_names(book: BookSchema) -> list[str]:
    """A name per design-matrix column: ``feature=value`` per one-hot column, then the numbers."""
    names = [
        f"{feature.name}={value}" for feature in book.categories for value in feature.values or ()
    ]
    return names + [feature.name for feature in book.features if not feature.is_category]


def with_one_hot(encoder: Any, calibrated: Any) -> Any:
    """The exported model: ``calibrated`` alone, or behind the fitted one-hot encoder."""
    if encoder is None:
        return calibrated
    from sklearn.pipeline import Pipeline

    return Pipeline([("one_hot", encoder), ("model", calibrated)])


def calibrated_log_odds(model: Any, model_input: np.ndarray) -> np.ndarray:
    """``(n,)`` float64 log-odds of default of the exported model (see the module docstring)."""
    rows = np.asarray(model_input, dtype=np.float64)
    if hasattr(model, "steps"):
        rows = np.asarray(model[:-1].transform(rows), dtype=np.float64)
        model = model.steps[-1][1]
    calibrated = model.calibrated_classifiers_[0]
    estimator = calibrated.estimator
    (sigmoid,) = calibrated.calibrators
    if hasattr(estimator, "decision_function"):
        response = np.asarray(estimator.decision_function(rows), dtype=np.float64)
    else:
        response = np.asarray(estimator.predict_proba(rows), dtype=np.float64)[:, 1]
    return -(float(sigmoid.a_) * response + float(sigmoid.b_))
