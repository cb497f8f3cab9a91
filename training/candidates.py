"""The model candidates: how each is built, and how simple it is (the tie-breaker).

Adding a candidate means adding one :class:`Candidate` to :data:`CANDIDATES`; selection, export,
the manifest, MLflow and the report iterate over this tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

LOGISTIC_REGRESSION = "logistic_regression"
RANDOM_FOREST = "random_forest"


@dataclass(frozen=True)
class Candidate:
    """A named model family; lower ``complexity`` wins a tie on F1 (the simpler model)."""

    name: str
    complexity: int
    summary: str
    build: Callable[[int], Any]
    threaded_fit: bool = False
    """The model may fit with ``n_jobs`` threads and still come out bit-for-bit the same.

    True for the forest: each tree's seed is drawn before the threads start and the trees are
    kept in order. Only fitting is threaded; the model is handed back with its own ``n_jobs``
    (None), because a threaded *prediction* sums the trees' votes in finishing order.
    """


def build_logistic_regression(seed: int) -> Any:
    """Elastic-net logistic regression, spelled the scikit-learn 1.8+ way.

    ``penalty=`` is deprecated since 1.8: ``l1_ratio`` strictly between 0 and 1 *is* the
    elastic net. ``saga`` is the solver that supports it; on normalized features it stops after
    about 200 epochs whatever the row count (measured: 191 on the 8,000 training rows of the
    reference data, 239 on 160,000, 183 on 800,000), and max_iter leaves ample room so no
    ConvergenceWarning is ever raised. Balanced class weights make the 18 % default class count
    as much as the rest.

    ``tol=1e-4`` (scikit-learn's default) sets how many epochs a fit takes, and it stays:
    at 160,000 rows ``tol=1e-3`` took 109 epochs instead of 239 but stopped ~5 % short of the
    optimum (largest coefficient 25.5 vs 26.7, 26.9 at ``tol=1e-6``; held-out log loss 4 %
    worse) - a cheaper model, not a faster fit of the same one.
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=1.0,
        l1_ratio=0.5,
        solver="saga",
        class_weight="balanced",
        max_iter=20_000,
        tol=1e-4,
        random_state=seed,
    )


def build_random_forest(seed: int) -> Any:
    """100 trees of depth <= 10: flexible enough for interactions, shallow enough to serve fast.

    ``n_jobs=None``: the fitted forest predicts single-threaded (in training and in serving's
    scikit-learn fallback), so its probabilities are bit-for-bit reproducible; a threaded
    prediction adds the trees' votes in whatever order the threads finish. Fitting may still use
    threads (``threaded_fit``, see :mod:`training.cross_fit`).
    """
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=100,
        max_depth=10,
        min_samples_split=5,
        random_state=seed,
        n_jobs=None,
    )


CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        name=LOGISTIC_REGRESSION,
        complexity=1,
        summary="elastic-net logistic regression (saga, balanced class weights)",
        build=build_logistic_regression,
    ),
    Candidate(
        name=RANDOM_FOREST,
        complexity=2,
        summary="random forest (100 trees, max depth 10, min samples split 5)",
        build=build_random_forest,
        threaded_fit=True,
    ),
)


def candidate_named(name: str) -> Candidate:
    """Look a candidate up by its manifest name."""
    for candidate in CANDIDATES:
        if candidate.name == name:
            return candidate
    known = ", ".join(candidate.name for candidate in CANDIDATES)
    raise KeyError(f"unknown candidate '{name}' (known: {known})")


def json_safe_params(estimator: Any) -> dict[str, Any]:
    """The estimator's own hyper-parameters as JSON values (for the manifest and MLflow)."""
    params: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params(deep=False).items()):
        if isinstance(value, str) and value == "deprecated":
            continue  # scikit-learn's placeholder for a parameter being removed (penalty=)
        if value is None or isinstance(value, bool | int | float | str):
            params[key] = value
        else:
            params[key] = repr(value)
    return params


def feature_weights(estimator: Any) -> npt.NDArray[np.float64]:
    """Coefficients (logistic regression) or impurity importances (forest), one per feature."""
    if hasattr(estimator, "coef_"):
        return np.asarray(estimator.coef_, dtype=np.float64).ravel()
    return np.asarray(estimator.feature_importances_, dtype=np.float64)
